// Kernel family "hash", AVX-512 variant: one XXH3-64 over a whole buffer (Ops::xxh3_64, the
// ceiling the benchmarks compare hashPages with), stock libxxhash with the AVX-512 accumulator.
// Apart from avx512.cc, whose page loops are built without XXH3's prefetch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cstddef>
#include <cstdint>

#define XXH_VECTOR XXH_AVX512
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kernels::hash {

uint64_t xxh3_whole_avx512(const uint8_t* data, size_t len, uint64_t seed) {
  return XXH3_64bits_withSeed(data, len, seed);
}

}  // namespace kernels::hash
