/*
 * sparse: a few words on each of many random pages. Many dirty pages, each barely changed: the
 * best case for delta compression against the page's previous version.
 *   params: [0] working set bytes, [1] pages touched per step (default 16), [2] words written
 *   per page (default 2).
 */
#include "common.h"

void us_prepare_sparse(struct us_ctx *c) {
  c->p[0] = us_working_set(c);
  c->p[1] = us_clamp(c->p[1] ? c->p[1] : 16, 1, 4096);
  c->p[2] = us_clamp(c->p[2] ? c->p[2] : 2, 1, US_PAGE_SIZE / 8);
}

uint64_t us_step_sparse(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h) {
  const uint64_t pages = c->p[0] / US_PAGE_SIZE, base = c->region;
  uint64_t acc = *h, v = 0;
  for (uint64_t i = 0; i < c->p[1]; i++) {
    const uint64_t page = base + us_below(us_next(s), pages) * US_PAGE_SIZE;
    for (uint64_t k = 0; k < c->p[2]; k++) {
      const uint64_t r = us_next(s);
      const uint64_t gpa = page + us_below(r, US_PAGE_SIZE / 8) * 8;
      v = us_load64(c, gpa) + (r | 1);
      us_store64(c, gpa, v);
    }
    acc = us_mix(acc, v);
  }
  *h = acc;
  return us_emit_periodic(c, step, acc, v) ? US_STEP_STOP : 0;
}
