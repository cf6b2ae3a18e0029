// Kernel family "copy", AVX2 variant. Each run is copied 128 bytes per step with 32-byte loads;
// while it copies, it prefetches the start of the next run (random pfns defeat the hardware
// prefetcher at page boundaries). With `stream` and a 16-byte aligned destination the stores are
// non-temporal: a batch far larger than the cache then costs no read-for-ownership of the
// destination and does not evict the working set; an sfence orders them before returning.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/copy/copy.h"

namespace kernels::copy {
namespace avx2_isa {
namespace {

// A 32-byte streaming store as two 16-byte ones (needs only 16-byte alignment).
inline void stream_32(__m256i* d, __m256i v) {
  _mm_stream_si128(reinterpret_cast<__m128i*>(d), _mm256_castsi256_si128(v));
  _mm_stream_si128(reinterpret_cast<__m128i*>(d) + 1, _mm256_extracti128_si256(v, 1));
}

// bytes is a multiple of 512 (page sizes are powers of two >= 512).
inline void copy_run(uint8_t* dst, const uint8_t* src, size_t bytes, const uint8_t* next, bool stream) {
  // Streaming needs 16-byte aligned lines (32 for the 256-bit form); a malloc'd Buffer gives 16.
  const bool nt = stream && (reinterpret_cast<uintptr_t>(dst) & 15) == 0;
  // Prefetch distance: 2 lines of the next run per 128-byte step covers its first page-worth
  // of lines by the time a 4 KiB run is done.
  size_t pf = 0;
  const size_t pf_end = next ? (bytes < 4096 ? bytes : 4096) : 0;
  for (size_t off = 0; off < bytes; off += 128) {
    // SAFETY: off + 128 <= bytes since bytes is a multiple of 512.
    const __m256i* s = reinterpret_cast<const __m256i*>(src + off);
    __m256i* d = reinterpret_cast<__m256i*>(dst + off);
    const __m256i a = _mm256_loadu_si256(s), b = _mm256_loadu_si256(s + 1);
    const __m256i c = _mm256_loadu_si256(s + 2), e = _mm256_loadu_si256(s + 3);
    if (nt) {
      stream_32(d, a);
      stream_32(d + 1, b);
      stream_32(d + 2, c);
      stream_32(d + 3, e);
    } else {
      _mm256_storeu_si256(d, a);
      _mm256_storeu_si256(d + 1, b);
      _mm256_storeu_si256(d + 2, c);
      _mm256_storeu_si256(d + 3, e);
    }
    if (pf < pf_end) {
      // Prefetch hints never fault, so running past the next run's end is harmless.
      _mm_prefetch(reinterpret_cast<const char*>(next + pf), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(next + pf + 64), _MM_HINT_T0);
      pf += 128;
    }
  }
}

#define COPY_RUN(dst, src, bytes, next, stream) copy_run((dst), (src), (bytes), (next), (stream))
#include "kernels/copy/generic.inc"
#undef COPY_RUN

void gather_avx2(uint8_t* dst, const uint8_t* mem, const uint32_t* pfns, size_t n, size_t page_size, bool stream) {
  gather_generic(dst, mem, pfns, n, page_size, stream);
  if (stream) _mm_sfence();
}

void scatter_avx2(uint8_t* mem, const uint8_t* src, const uint32_t* pfns, size_t n, size_t page_size, bool stream) {
  scatter_generic(mem, src, pfns, n, page_size, stream);
  if (stream) _mm_sfence();
}

}  // namespace
}  // namespace avx2_isa

extern const Ops ops_avx2 = {"avx2", avx2_isa::gather_avx2, avx2_isa::scatter_avx2};

}  // namespace kernels::copy
