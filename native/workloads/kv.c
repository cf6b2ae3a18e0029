/*
 * kv: a small in-guest key-value store (open addressing, linear probing, backward-shift delete)
 * serving a deterministic stream of get/put/delete requests drawn from the seeded PRNG. Every
 * response on vCPU 0 is an output record: the stand-in for a service whose replies must never
 * be lost. Other vCPUs run their own store in their own partition and only fold their
 * responses into their checksum.
 *
 * Table: 2^k slots of 64 bytes at the start of the partition, slot = 8 words:
 *   w0 key + 1 (0: empty)   w1 value length (8..32 bytes)   w2..w5 value   w6, w7 zero
 * Response record (16 bytes + value bytes for a get that hits):
 *   byte 0 op ('G', 'P', 'D')   byte 1 status (0 miss/created, 1 hit/updated/deleted, 2 full)
 *   byte 2 value length   bytes 3-7 zero   bytes 8-15 key (LE)   bytes 16.. value
 *   params: [0] table bytes, [1] requests per step (default 4), [2] key space (default 65536,
 *   at most half the slots), [3] percent gets (default 50), [4] percent puts (default 40).
 *   scratch[0]: number of items.
 */
#include "common.h"

#define KV_SLOT 64u

static inline uint64_t kv_home(uint64_t key, uint64_t mask) {
  uint64_t z = key + US_K1;
  z = (z ^ (z >> 30)) * US_K2;
  z = (z ^ (z >> 27)) * US_K3;
  return (z ^ (z >> 31)) & mask;
}

void us_prepare_kv(struct us_ctx *c) {
  c->p[0] = us_pow2_floor(us_working_set(c) / KV_SLOT) * KV_SLOT; /* >= 64 slots */
  const uint64_t slots = c->p[0] / KV_SLOT;
  c->p[1] = us_clamp(c->p[1] ? c->p[1] : 4, 1, 1024);
  c->p[2] = us_clamp(c->p[2] ? c->p[2] : 65536, 1, slots / 2);
  c->p[3] = us_clamp(c->p[3] ? c->p[3] : 50, 0, 100);
  c->p[4] = us_clamp(c->p[4] ? c->p[4] : 40, 0, 100 - c->p[3]);
}

uint64_t us_step_kv(struct us_ctx *c, uint64_t step, uint64_t *s, uint64_t *h) {
  (void)step;
  const uint64_t slots = c->p[0] / KV_SLOT, mask = slots - 1, base = c->region;
  uint64_t count = c->st->scratch[0];
  uint64_t acc = *h;
  for (uint64_t q = 0; q < c->p[1]; q++) {
    const uint64_t roll = us_below(us_next(s), 100);
    const uint64_t key = us_below(us_next(s), c->p[2]);
    const uint64_t op = roll < c->p[3] ? 'G' : roll < c->p[3] + c->p[4] ? 'P' : 'D';
    /* Find the key, or the empty slot where it would go. */
    uint64_t i = kv_home(key, mask), found = 0, empty = 0;
    for (uint64_t n = 0; n < slots; n++) {
      const uint64_t k = us_load64(c, base + i * KV_SLOT);
      if (k == key + 1) {
        found = 1;
        break;
      }
      if (k == 0) {
        empty = 1;
        break;
      }
      i = (i + 1) & mask;
    }
    const uint64_t slot = base + i * KV_SLOT;
    uint64_t resp[6] = {0, key, 0, 0, 0, 0};
    uint64_t status = 0, vlen = 0;
    uint32_t len = 16;
    if (op == 'G') {
      if (found) {
        status = 1;
        vlen = us_clamp(us_load64(c, slot + 8), 8, 32);
        for (int w = 0; w < 4; w++) resp[2 + w] = us_load64(c, slot + 16 + 8 * w);
        len = 16 + (uint32_t)vlen;
      }
    } else if (op == 'P') {
      vlen = 8 + us_below(us_next(s), 25);
      if (found || (empty && count < slots - 1)) {
        status = found ? 1 : 0;
        if (!found) {
          us_store64(c, slot, key + 1);
          count++;
        }
        us_store64(c, slot + 8, vlen);
        for (int w = 0; w < 4; w++) {
          const uint64_t v = (uint64_t)w * 8 < vlen ? us_next(s) : 0;
          /* Only the first vlen bytes of the value are kept; the rest of the slot stays zero. */
          const uint64_t keep = vlen >= (uint64_t)(w + 1) * 8 ? ~0ull
                                : vlen <= (uint64_t)w * 8 ? 0 : (1ull << (8 * (vlen - 8 * w))) - 1;
          us_store64(c, slot + 16 + 8 * w, v & keep);
        }
      } else {
        status = 2;
      }
    } else if (found) {
      /* Backward-shift delete: pull later entries of the probe run into the hole. */
      status = 1;
      uint64_t hole = i, j = i;
      for (uint64_t n = 0; n < slots; n++) {
        j = (j + 1) & mask;
        const uint64_t kj = us_load64(c, base + j * KV_SLOT);
        if (kj == 0) break;
        const uint64_t home = kv_home(kj - 1, mask);
        const int stays = j > hole ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
          for (int w = 0; w < 6; w++) us_store64(c, base + hole * KV_SLOT + 8 * w, us_load64(c, base + j * KV_SLOT + 8 * w));
          hole = j;
        }
      }
      for (int w = 0; w < 6; w++) us_store64(c, base + hole * KV_SLOT + 8 * w, 0);
      if (count) count--;
    }
    resp[0] = op | status << 8 | vlen << 16;
    for (int w = 0; w < 6; w++) acc = us_mix(acc, resp[w]);
    if (c->emits && us_emit(c, resp, len)) return US_STEP_STOP;
  }
  c->st->scratch[0] = count;
  *h = acc;
  return 0;
}
