/*
 * uniform: random 8-byte read-modify-writes spread evenly over a working set. The pattern that
 * dirties the most pages per write: with a working set much larger than an epoch's writes,
 * nearly every write lands on a page of its own.
 *   params: [0] working set bytes (default: the whole partition), [1] writes per step.
 */
#include "common.h"

void us_prepare_uniform(struct us_ctx *c) {
  c->p[0] = us_working_set(c);
  c->p[1] = us_clamp(c->p[1] ? c->p[1] : 64, 1, 4096);
}

uint64_t us_step_uniform(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h) {
  const uint64_t words = c->p[0] / 8, base = c->region;
  uint64_t acc = *h, v = 0;
  for (uint64_t i = 0; i < c->p[1]; i++) {
    const uint64_t r = us_next(s);
    const uint64_t gpa = base + us_below(r, words) * 8;
    v = (us_load64(c, gpa) ^ r) * US_K3 + i;
    us_store64(c, gpa, v);
    acc = us_mix(acc, v);
  }
  *h = acc;
  return us_emit_periodic(c, step, acc, v) ? US_STEP_STOP : 0;
}
