/*
 * memcheck: every page of the region carries a counter and a checksum that the guest keeps
 * consistent, so a torn, stale or lost page in a restored copy is detected (the way QEMU's
 * migration tests check guest memory).
 *
 * Page layout (512 little-endian words):
 *   word 0      counter: how many sweeps have rewritten this page
 *   word 1      checksum: us_memcheck_page_sum() over the gpa and every other word
 *   words 2-511 data (random words rewritten at each sweep)
 *
 * Each step rewrites the next params[1] pages in sweep order (cursor in scratch[0], pass in
 * scratch[1]) and checks one random page. Before it touches a page the guest verifies it: its
 * counter must be the one the sweep position implies (pass + 1 if the page is before the cursor,
 * else pass) and its checksum must match; a page never written (counter 0) must be all zero.
 * A mismatch is a panic: control->status = US_STATUS_PANIC, panic_code = gpa | reason.
 *   params: [0] region bytes, [1] pages per step (default 4), [2] data words per page (default
 *   16).
 */
#include "common.h"

#define MC_WORDS (US_PAGE_SIZE / 8)

uint64_t us_memcheck_page_sum(const uint8_t *page, uint64_t gpa) {
  const uint64_t *w = (const uint64_t *)page;
  /* Four independent lanes, so the multiply chains overlap. Word 1 (the checksum) is skipped. */
  uint64_t a = us_mix(gpa, w[0]), b = us_mix(~gpa, 0), c = us_mix(gpa ^ US_K2, w[2]),
           d = us_mix(gpa ^ US_K3, w[3]);
  for (uint32_t i = 4; i < MC_WORDS; i += 4) {
    a = us_mix(a, w[i]);
    b = us_mix(b, w[i + 1]);
    c = us_mix(c, w[i + 2]);
    d = us_mix(d, w[i + 3]);
  }
  return us_mix(us_mix(us_mix(a, b), c), d);
}

/* 0 if the page at gpa is consistent with counter `expect`, else gpa | reason. */
static uint64_t mc_verify(const uint8_t *mem, uint64_t gpa, uint64_t expect) {
  const uint64_t *w = (const uint64_t *)(mem + gpa);
  if (w[0] != expect) return gpa | US_PANIC_LOST;
  if (expect == 0) {
    uint64_t any = 0;
    for (uint32_t i = 0; i < MC_WORDS; i++) any |= w[i];
    return any ? (gpa | US_PANIC_DIRTY) : 0;
  }
  return w[1] == us_memcheck_page_sum(mem + gpa, gpa) ? 0 : (gpa | US_PANIC_TORN);
}

void us_prepare_memcheck(struct us_ctx *c) {
  c->p[0] = us_working_set(c);
  c->p[1] = us_clamp(c->p[1] ? c->p[1] : 4, 1, 1024);
  c->p[2] = us_clamp(c->p[2] ? c->p[2] : 16, 1, MC_WORDS - 2);
}

uint64_t us_step_memcheck(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h) {
  const uint64_t pages = c->p[0] / US_PAGE_SIZE, base = c->region;
  uint64_t cur = c->st->scratch[0] % pages, pass = c->st->scratch[1];
  uint64_t acc = *h, code;
  for (uint64_t k = 0; k < c->p[1]; k++) {
    const uint64_t gpa = base + cur * US_PAGE_SIZE;
    if ((code = mc_verify(c->mem, gpa, pass)) != 0) return code;
    for (uint64_t j = 0; j < c->p[2]; j++) {
      const uint64_t r = us_next(s);
      us_store64(c, gpa + 8 * (2 + us_below(r, MC_WORDS - 2)), r);
    }
    us_store64(c, gpa, pass + 1);
    const uint64_t sum = us_memcheck_page_sum(c->mem + gpa, gpa);
    us_store64(c, gpa + 8, sum);
    acc = us_mix(acc, sum);
    if (++cur == pages) {
      cur = 0;
      pass++;
    }
  }
  const uint64_t q = us_below(us_next(s), pages);
  const uint64_t qgpa = base + q * US_PAGE_SIZE;
  if ((code = mc_verify(c->mem, qgpa, pass + (q < cur))) != 0) return code;
  acc = us_mix(acc, us_load64(c, qgpa + 8));
  c->st->scratch[0] = cur;
  c->st->scratch[1] = pass;
  *h = acc;
  return us_emit_periodic(c, step, acc, pass << 32 | cur) ? US_STEP_STOP : 0;
}

uint64_t us_memcheck_verify(const uint8_t *mem, uint64_t mem_size) {
  const struct us_control *ctl = (const struct us_control *)(mem + US_CONTROL_GPA);
  const uint32_t n = ctl->vcpus;
  for (uint32_t v = 0; v < n && v < US_MAX_VCPUS; v++) {
    struct us_ctx c;
    if (!us_partition(mem_size, n, v, &c.region, &c.region_size)) return 0;
    for (int i = 0; i < 8; i++) c.p[i] = ctl->params[i];
    us_prepare_memcheck(&c);
    const uint64_t pages = c.p[0] / US_PAGE_SIZE;
    const uint64_t cur = ctl->vcpu[v].scratch[0] % pages, pass = ctl->vcpu[v].scratch[1];
    for (uint64_t q = 0; q < pages; q++) {
      const uint64_t code = mc_verify(mem, c.region + q * US_PAGE_SIZE, pass + (q < cur));
      if (code) return code;
    }
  }
  return 0;
}
