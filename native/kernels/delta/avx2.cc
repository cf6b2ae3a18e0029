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
                             avx2_impl::build_code_of, avx2_impl::encode2, avx2_impl::decode2, avx2_impl::xbm_apply};

}  // namespace kernels::delta
