/*
 * What every workload shares: the per-vCPU context, guest-memory loads and stores that mark
 * pages dirty (sim build) or not (payload build), the seeded PRNG (xoshiro256**), a 64-bit mixer
 * for the running checksum, and the output-ring writer.
 *
 * The context lives on the vCPU's stack and is rebuilt from the control page whenever a vCPU
 * (re)starts; everything a workload must remember between steps is in guest memory.
 */
#ifndef UNDERSTUDY_WORKLOADS_COMMON_H
#define UNDERSTUDY_WORKLOADS_COMMON_H

#include <stdint.h>

#include "abi.h"
#include "workloads.h"

struct us_ctx {
  uint8_t *mem;
  uint64_t *dirty;
  void *host;
  struct us_control *ctl;
  struct us_vcpu_state *st;
  uint32_t vcpu;
  uint32_t emits;          /* 1 on vCPU 0: only it writes output records */
  uint64_t region;         /* gpa of this vCPU's partition */
  uint64_t region_size;    /* bytes, whole pages, >= one page */
  uint64_t steps;          /* control->steps */
  uint64_t p[8];           /* control->params, clamped by the workload's prepare function */
};

#define US_K1 0x9E3779B97F4A7C15ull
#define US_K2 0xBF58476D1CE4E5B9ull
#define US_K3 0x94D049BB133111EBull

static inline uint64_t us_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman and Vigna), state in s[4]. */
static inline uint64_t us_next(uint64_t *s) {
  const uint64_t result = us_rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = us_rotl(s[3], 45);
  return result;
}

/* A uniform integer in [0, n) from r (Lemire's multiply-shift; n > 0). */
static inline uint64_t us_below(uint64_t r, uint64_t n) {
  return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

/* Running-checksum step: order-dependent, avalanching. */
static inline uint64_t us_mix(uint64_t h, uint64_t v) {
  h ^= v + US_K1 + (h << 6) + (h >> 2);
  h *= US_K2;
  return h ^ (h >> 31);
}

static inline uint64_t us_clamp(uint64_t v, uint64_t lo, uint64_t hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/* Largest power of two <= v (v >= 1). */
static inline uint64_t us_pow2_floor(uint64_t v) {
  uint64_t p = 1;
  while (p <= v / 2) p <<= 1;
  return p;
}

#ifdef US_PAYLOAD
#define us_mark(c, gpa) ((void)0)
#else
/* Sets the page's bit in the sim's dirty bitmap. The plain load first keeps the common case (bit
 * already set in this epoch) free of atomic read-modify-writes. */
static inline void us_mark(const struct us_ctx *c, uint64_t gpa) {
  uint64_t *d = c->dirty;
  if (!d) return;
  const uint64_t pfn = gpa >> 12;
  uint64_t *w = d + (pfn >> 6);
  const uint64_t bit = 1ull << (pfn & 63);
  if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & bit)) __atomic_fetch_or(w, bit, __ATOMIC_RELAXED);
}
#endif

/* Marks every page of [gpa, gpa + len) (len > 0). */
static inline void us_mark_range(const struct us_ctx *c, uint64_t gpa, uint64_t len) {
#ifdef US_PAYLOAD
  (void)c, (void)gpa, (void)len;
#else
  for (uint64_t p = gpa & ~(uint64_t)(US_PAGE_SIZE - 1); p < gpa + len; p += US_PAGE_SIZE) us_mark(c, p);
#endif
}

/* SAFETY: every gpa a workload passes is inside its partition, the ring or the control page:
 * the workloads derive addresses only from clamped parameters and us_below()/masks. */
static inline uint64_t us_load64(const struct us_ctx *c, uint64_t gpa) {
  return *(const uint64_t *)(c->mem + gpa);
}

static inline void us_store64(const struct us_ctx *c, uint64_t gpa, uint64_t v) {
  *(uint64_t *)(c->mem + gpa) = v;
  us_mark(c, gpa);
}

/* A store whose page the caller marks itself (us_mark_range) before the step ends. */
static inline void us_store64_unmarked(const struct us_ctx *c, uint64_t gpa, uint64_t v) {
  *(uint64_t *)(c->mem + gpa) = v;
}

#ifdef US_PAYLOAD
static inline void us_outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void us_outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
#endif

/* Step boundary: nonzero means stop now. */
static inline int us_yield(const struct us_ctx *c) {
#ifdef US_PAYLOAD
  (void)c;
  return 0;
#else
  return us_host_yield(c->host, c->vcpu);
#endif
}

/*
 * Appends one output record (vCPU 0 only; `words` holds ceil(len/8) little-endian words, len <=
 * 48). Waits for ring space by ringing the doorbell. Returns nonzero if the host asked to stop.
 */
static inline int us_emit(const struct us_ctx *c, const uint64_t *words, uint32_t len) {
  struct us_control *ctl = c->ctl;
  const uint64_t head = ctl->ring_head;
  for (;;) {
    const uint64_t tail = __atomic_load_n(&ctl->ring_tail, __ATOMIC_ACQUIRE);
    if (head - tail < US_RING_RECORDS) break;
#ifdef US_PAYLOAD
    us_outb(US_PORT_DOORBELL, 1);
#else
    if (us_host_doorbell(c->host, c->vcpu)) return 1;
#endif
  }
  const uint64_t gpa = US_RING_GPA + (head % US_RING_RECORDS) * (uint64_t)sizeof(struct us_record);
  us_store64(c, gpa, head);
  us_store64(c, gpa + 8, (uint64_t)len | ((uint64_t)c->vcpu << 32));
  const uint32_t nw = (len + 7) / 8;
  for (uint32_t i = 0; i < US_RECORD_DATA / 8; i++) us_store64(c, gpa + 16 + 8 * i, i < nw ? words[i] : 0);
  __atomic_store_n(&ctl->ring_head, head + 1, __ATOMIC_RELEASE);
  ctl->next_seq = head + 1;
  return 0;
}

/* Per-workload hooks, one pair per workload file. prepare() clamps c->p (from control->params)
 * to valid values; step() runs step number `step` with PRNG state s and running checksum *h and
 * returns 0, a panic code (memcheck) or US_STEP_STOP. */
#define US_STEP_STOP 1ull
void us_prepare_uniform(struct us_ctx *c);
uint64_t us_step_uniform(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h);
void us_prepare_hotset(struct us_ctx *c);
uint64_t us_step_hotset(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h);
void us_prepare_sequential(struct us_ctx *c);
uint64_t us_step_sequential(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h);
void us_prepare_sparse(struct us_ctx *c);
uint64_t us_step_sparse(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h);
void us_prepare_memcheck(struct us_ctx *c);
uint64_t us_step_memcheck(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h);
void us_prepare_kv(struct us_ctx *c);
uint64_t us_step_kv(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h);

/* Working set in bytes: params[0] clamped to [one page, partition], whole pages. */
static inline uint64_t us_working_set(const struct us_ctx *c) {
  uint64_t ws = c->p[0] ? c->p[0] : c->region_size;
  ws = us_clamp(ws, US_PAGE_SIZE, c->region_size);
  return ws & ~(uint64_t)(US_PAGE_SIZE - 1);
}

/* The periodic record of the write-pattern workloads: step, running checksum, a digest word. */
static inline int us_emit_periodic(const struct us_ctx *c, uint64_t step, uint64_t h, uint64_t digest) {
  if (!c->emits) return 0;
  const uint64_t every = c->p[7] ? c->p[7] : 64;
  if ((step + 1) % every != 0 && step + 1 != c->steps) return 0;
  const uint64_t w[3] = {step + 1, h, digest};
  return us_emit(c, w, 24);
}

#endif
