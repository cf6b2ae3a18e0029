// Kernel family "hash", AVX2 variant: libxxhash with the AVX2 accumulator (XXH_VECTOR =
// XXH_AVX2); zero pages tested 128 bytes per vptest with an early exit on the first nonzero block.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/hash/hash.h"

#define XXH_VECTOR XXH_AVX2
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kernels::hash {
namespace avx2_isa {
namespace {

inline bool page_is_zero(const uint8_t* p, size_t len) {
  for (size_t off = 0; off < len; off += 128) {
    // SAFETY: len is a multiple of 512, so off + 128 <= len.
    const __m256i* v = reinterpret_cast<const __m256i*>(p + off);
    const __m256i o = _mm256_or_si256(_mm256_or_si256(_mm256_loadu_si256(v), _mm256_loadu_si256(v + 1)),
                                      _mm256_or_si256(_mm256_loadu_si256(v + 2), _mm256_loadu_si256(v + 3)));
    if (!_mm256_testz_si256(o, o)) return false;
  }
  return true;
}

#include "kernels/hash/generic.inc"
}  // namespace
}  // namespace avx2_isa

extern const Ops ops_avx2 = {"avx2", avx2_isa::hash64_pages, avx2_isa::hash128_pages,
                             avx2_isa::zero_pages, avx2_isa::xxh3_whole};

}  // namespace kernels::hash
