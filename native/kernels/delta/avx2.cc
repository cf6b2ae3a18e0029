// Kernel family "delta", AVX2 variant: 2 x 32-byte XOR per 64-byte block, compare-to-zero and
// movemask give the block's 64-bit non-zero mask; the run walk (generic.inc) uses tzcnt on it.
#include <immintrin.h>

#include <cstring>

#include "kernels/delta/delta.h"
#include "kernels/delta/huffman.h"

namespace kernels::delta {
namespace avx2_impl {

static void xor_blocks(uint8_t* prev, const uint8_t* next, size_t blocks, bool update,
                       uint8_t* xo, uint64_t* mask, uint64_t* diff, uint64_t* nonzero) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i z = zero;
  uint64_t d = 0;
  for (size_t b = 0; b < blocks; b++) {
    // SAFETY: b < blocks, so the 64 bytes at 64b are inside both pages and the xor buffer.
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(prev + b * 64));
    const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(prev + b * 64 + 32));
    const __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(next + b * 64));
    const __m256i c1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(next + b * 64 + 32));
    const __m256i x0 = _mm256_xor_si256(a0, c0);
    const __m256i x1 = _mm256_xor_si256(a1, c1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xo + b * 64), x0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xo + b * 64 + 32), x1);
    z = _mm256_or_si256(z, _mm256_or_si256(c0, c1));
    const uint32_t e0 = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(x0, zero)));
    const uint32_t e1 = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(x1, zero)));
    const uint64_t m = ~((uint64_t{e1} << 32) | e0);
    mask[b] = m;
    d |= m;
    if (update && m != 0) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(prev + b * 64), c0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(prev + b * 64 + 32), c1);
    }
  }
  *diff |= d;
  *nonzero |= _mm256_testz_si256(z, z) ? 0 : 1;
}

// generic.inc's contract. A line in two halves (words 0-3, 4-7), loaded as xor_blocks stored
// them; the words d before a half come from it and the half before it: d = 4 and 8 are whole
// halves, d = 2 one lane swap, d = 1 a lane swap and a byte align.
static void repeat_scan(const uint8_t* xo, const uint8_t* words, size_t lines, uint8_t* eq, size_t* cnt) {
  size_t c[4] = {};
  const __m256i zero = _mm256_setzero_si256();
  // The four words before each word of half a, whose preceding half is q.
  auto back1 = [](__m256i a, __m256i q) { return _mm256_alignr_epi8(a, _mm256_permute2x128_si256(q, a, 0x21), 8); };
  auto back2 = [](__m256i a, __m256i q) { return _mm256_permute2x128_si256(q, a, 0x21); };
  auto bits = [](__m256i a, __m256i b) {
    return static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(a, b))));
  };
  for (size_t b = 0; b < lines; b++) {
    const unsigned nzw = words[b];
    if (nzw == 0) {
      eq[b] = eq[lines + b] = eq[2 * lines + b] = eq[3 * lines + b] = 0;
      continue;
    }
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xo + 64 * b));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xo + 64 * b + 32));
    __m256i plo = zero, phi = zero;
    if (b != 0) {
      plo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xo + 64 * (b - 1)));
      phi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xo + 64 * (b - 1) + 32));
    }
    const unsigned e[4] = {(bits(lo, back1(lo, phi)) | bits(hi, back1(hi, lo)) << 4) & nzw,
                           (bits(lo, back2(lo, phi)) | bits(hi, back2(hi, lo)) << 4) & nzw,
                           (bits(lo, phi) | bits(hi, lo) << 4) & nzw, (bits(lo, plo) | bits(hi, phi) << 4) & nzw};
    note_repeats(eq, lines, b, e, c);
  }
  for (size_t k = 0; k < 4; k++) cnt[k] = c[k];
}

#include "kernels/delta/shuffle8.inc"

#include "kernels/delta/generic.inc"

#include "kernels/delta/huffman_encode.inc"
namespace {
#include "kernels/delta/huffman_code.inc"
}  // namespace
#include "kernels/delta/huffman_decode.inc"

#include "kernels/delta/xbm_apply.inc"

}  // namespace avx2_impl

extern const Ops ops_avx2 = {"avx2", avx2_impl::encode_page_impl, avx2_impl::encode_page_split_impl,
                             avx2_impl::build_code_of, avx2_impl::fast_lengths_of, avx2_impl::encode2, avx2_impl::decode2, avx2_impl::xbm_apply};

}  // namespace kernels::delta
