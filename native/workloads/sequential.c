/*
 * sequential: streams writes through a large buffer, wrapping at its end. Every page of the
 * buffer is rewritten whole, one after another: the worst case for deltas (every word changes)
 * and the best for run-merging dirty pages.
 *   params: [0] buffer bytes, [1] 8-byte words per step (default 512, one page).
 *   scratch[0]: the cursor (word index into the buffer).
 */
#include "common.h"

void us_prepare_sequential(struct us_ctx *c) {
  c->p[0] = us_working_set(c);
  c->p[1] = us_clamp(c->p[1] ? c->p[1] : 512, 1, 1u << 16);
}

uint64_t us_step_sequential(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h) {
  const uint64_t words = c->p[0] / 8, base = c->region;
  uint64_t cur = c->st->scratch[0] % words;
  uint64_t acc = *h;
  const uint64_t r = us_next(s);
  uint64_t v = 0;
  uint64_t run_start = cur;
  for (uint64_t i = 0; i < c->p[1]; i++) {
    const uint64_t gpa = base + cur * 8;
    v = us_load64(c, gpa) + (r ^ (cur * US_K2));
    us_store64_unmarked(c, gpa, v);
    if (++cur == words) {
      us_mark_range(c, base + run_start * 8, (words - run_start) * 8);
      cur = run_start = 0;
    }
  }
  if (cur > run_start) us_mark_range(c, base + run_start * 8, (cur - run_start) * 8);
  acc = us_mix(acc, v);
  c->st->scratch[0] = cur;
  *h = acc;
  return us_emit_periodic(c, step, acc, v) ? US_STEP_STOP : 0;
}
