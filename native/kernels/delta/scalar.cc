// Kernel family "delta", scalar variant: 64-bit word XOR and a byte-wise non-zero mask. Every
// other variant must produce exactly the bytes this one does (test/delta.test.ts, fuzz_delta).
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>  // huffman_code.inc
#endif

#include "kernels/delta/delta.h"
#include "kernels/delta/huffman.h"

namespace kernels::delta {
namespace scalar_impl {

static void xor_blocks(uint8_t* prev, const uint8_t* next, size_t blocks, bool update,
                       uint8_t* xo, uint64_t* mask, uint64_t* diff, uint64_t* nonzero) {
  uint64_t d = 0, z = 0;
  for (size_t b = 0; b < blocks; b++) {
    uint64_t m = 0;
    uint64_t bd = 0;
    for (size_t w = 0; w < 8; w++) {
      uint64_t a, c;
      // SAFETY: b < blocks, so bytes [64b, 64b+64) are inside both n-byte pages.
      std::memcpy(&a, prev + b * 64 + w * 8, 8);
      std::memcpy(&c, next + b * 64 + w * 8, 8);
      const uint64_t x = a ^ c;
      std::memcpy(xo + b * 64 + w * 8, &x, 8);
      z |= c;
      bd |= x;
      if (x != 0) {
        for (size_t j = 0; j < 8; j++) {
          if ((x >> (8 * j)) & 0xff) m |= uint64_t{1} << (w * 8 + j);
        }
      }
    }
    mask[b] = m;
    d |= bd;
    if (update && bd != 0) std::memcpy(prev + b * 64, next + b * 64, 64);
  }
  *diff |= d;
  *nonzero |= z;
}

// Branch-free: every byte is stored, and the output position moves on only for selected ones.
static inline void pack8(uint64_t v, unsigned mask, uint8_t* dst) {
  size_t p = 0;
  for (unsigned k = 0; k < 8; k++) {
    dst[p] = static_cast<uint8_t>(v >> (8 * k));
    p += (mask >> k) & 1;
  }
}

// generic.inc's contract, one word at a time (the word before the page counts as zero, which
// no non-zero word equals).
static void repeat_scan(const uint8_t* xo, const uint8_t* words, size_t lines, uint8_t* eq, size_t* cnt) {
  size_t c[4] = {};
  for (size_t b = 0; b < lines; b++) {
    unsigned e[4] = {};
    for (unsigned bits = words[b]; bits != 0; bits &= bits - 1) {
      const unsigned j = static_cast<unsigned>(__builtin_ctz(bits));
      const size_t w = 8 * b + j;
      uint64_t v;
      std::memcpy(&v, xo + 8 * w, 8);
      for (size_t k = 0; k < 4; k++) {
        const size_t d = kRepeatDistances[k];
        uint64_t u = 0;
        if (w >= d) std::memcpy(&u, xo + 8 * (w - d), 8);
        e[k] |= static_cast<unsigned>(u == v) << j;
      }
    }
    note_repeats(eq, lines, b, e, c);
  }
  for (size_t k = 0; k < 4; k++) cnt[k] = c[k];
}

#include "kernels/delta/generic.inc"

#include "kernels/delta/huffman_encode.inc"
namespace {
#include "kernels/delta/huffman_code.inc"
}  // namespace
#include "kernels/delta/huffman_decode.inc"

// Branch free: every byte position takes the next literal masked by its bit.
static inline uint64_t unpack8(const uint8_t* lit, unsigned bm) {
  uint64_t v = 0;
  size_t p = 0;
  for (unsigned k = 0; k < 8; k++) {
    const unsigned b = (bm >> k) & 1;
    v |= uint64_t{static_cast<uint8_t>(lit[p] & (0u - b))} << (8 * k);
    p += b;
  }
  return v;
}
#include "kernels/delta/xbm_apply.inc"

}  // namespace scalar_impl

extern const Ops ops_scalar = {"scalar", scalar_impl::encode_page_impl, scalar_impl::encode_page_split_impl,
                             scalar_impl::build_code_of, scalar_impl::fast_lengths_of, scalar_impl::encode2, scalar_impl::decode2, scalar_impl::xbm_apply};

}  // namespace kernels::delta
