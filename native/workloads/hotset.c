/*
 * hotset: most writes go to a small hot set at the start of the working set, the rest anywhere
 * in it. Models a guest whose epochs re-dirty the same pages: the dirty set stays small and
 * repeats, so deltas against the previous version of each page compress well.
 *   params: [0] working set bytes, [1] writes per step, [2] hot set bytes (default: 1/32 of the
 *   working set, at least one page), [3] percent of writes to the hot set (default 90).
 */
#include "common.h"

void us_prepare_hotset(struct us_ctx *c) {
  c->p[0] = us_working_set(c);
  c->p[1] = us_clamp(c->p[1] ? c->p[1] : 64, 1, 4096);
  uint64_t hot = c->p[2] ? c->p[2] : c->p[0] / 32;
  c->p[2] = us_clamp(hot, 8, c->p[0]) & ~(uint64_t)7;
  c->p[3] = us_clamp(c->p[3] ? c->p[3] : 90, 0, 100);
}

uint64_t us_step_hotset(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h) {
  const uint64_t all = c->p[0] / 8, hot = c->p[2] / 8, pct = c->p[3], base = c->region;
  uint64_t acc = *h, v = 0;
  for (uint64_t i = 0; i < c->p[1]; i++) {
    const uint64_t r = us_next(s);
    /* The low 16 bits decide hot or cold, the high bits pick the word: one PRNG call per write. */
    const uint64_t n = (r & 0xffff) * 100 < (pct << 16) ? hot : all;
    const uint64_t gpa = base + us_below(r, n) * 8;
    v = (us_load64(c, gpa) + r) * US_K1;
    us_store64(c, gpa, v);
    acc = us_mix(acc, v);
  }
  *h = acc;
  return us_emit_periodic(c, step, acc, v) ? US_STEP_STOP : 0;
}
