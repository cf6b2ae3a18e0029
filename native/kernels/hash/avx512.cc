// Kernel family "hash", AVX-512 variant: libxxhash with the AVX-512 accumulator (XXH_VECTOR =
// XXH_AVX512); zero pages tested 256 bytes per vptestmq with an early exit.
// GCC 12 reports _mm512_undefined_* inside its own intrinsic headers as uninitialised (a false
// positive when they are inlined); silence that for this unit only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/hash/hash.h"

// Without XXH3's own prefetch (one per 64-byte stripe, 384 bytes ahead): on 4 KiB pages it only
// costs here. Measured on an AMD EPYC with AVX-512, 4 MiB of cached pages: 0.905x one XXH3 call
// over the same bytes with it, 0.96x without; from DRAM our own page-ahead prefetch
// (generic.inc) does the job. The AVX2 and SSE2 builds keep it (AVX2 loses 15 % without it).
// The whole-buffer call, the benchmarks' ceiling, stays stock XXH3 in avx512_whole.cc.
#define XXH_NO_PREFETCH
#define XXH_VECTOR XXH_AVX512
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kernels::hash {
namespace avx512_isa {
namespace {

inline bool page_is_zero(const uint8_t* p, size_t len) {
  for (size_t off = 0; off < len; off += 256) {
    // SAFETY: len is a multiple of 512, so off + 256 <= len.
    const uint8_t* q = p + off;
    const __m512i o = _mm512_or_si512(_mm512_or_si512(_mm512_loadu_si512(q), _mm512_loadu_si512(q + 64)),
                                      _mm512_or_si512(_mm512_loadu_si512(q + 128), _mm512_loadu_si512(q + 192)));
    if (_mm512_test_epi64_mask(o, o) != 0) return false;
  }
  return true;
}

#define UNDERSTUDY_HASH_WHOLE_ELSEWHERE
#include "kernels/hash/generic.inc"
}  // namespace
}  // namespace avx512_isa

uint64_t xxh3_whole_avx512(const uint8_t* data, size_t len, uint64_t seed);  // avx512_whole.cc

extern const Ops ops_avx512 = {"avx512", avx512_isa::hash64_pages, avx512_isa::hash128_pages,
                               avx512_isa::zero_pages, xxh3_whole_avx512};

}  // namespace kernels::hash
