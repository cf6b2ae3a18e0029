// Kernel family "copy", AVX-512 variant: as the AVX2 one, with 64-byte vectors (one cache line
// per load and store) and streaming stores: 64-byte ones when the destination is 64-byte
// aligned, else 16-byte ones when it is 16-byte aligned.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/copy/copy.h"

namespace kernels::copy {
namespace avx512_isa {
namespace {

#include "kernels/copy/sse2_run.inc"

inline void copy_run(uint8_t* dst, const uint8_t* src, size_t bytes, const uint8_t* next, bool stream) {
  // Streaming stores need their own alignment: 64 bytes for the 512-bit form, 16 for the 128-bit
  // one. A large malloc'd Buffer starts 16 bytes into a page, so without the 16-byte form such a
  // destination took plain stores, and their read-for-ownership of every line cost a quarter
  // of a DRAM-sized gather's speed (25.8 against 39 GB/s for the scalar kernel's streams).
  const uintptr_t align = reinterpret_cast<uintptr_t>(dst);
  const bool nt = stream && (align & 63) == 0;
  if (stream && !nt && (align & 15) == 0) {
    copy_run_16(dst, src, bytes, next, true);
    return;
  }
  size_t pf = 0;
  const size_t pf_end = next ? (bytes < 4096 ? bytes : 4096) : 0;
  for (size_t off = 0; off < bytes; off += 256) {
    // SAFETY: off + 256 <= bytes since bytes is a multiple of 512.
    const uint8_t* s = src + off;
    uint8_t* d = dst + off;
    const __m512i a = _mm512_loadu_si512(s), b = _mm512_loadu_si512(s + 64);
    const __m512i c = _mm512_loadu_si512(s + 128), e = _mm512_loadu_si512(s + 192);
    if (nt) {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(d), a);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(d + 64), b);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(d + 128), c);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(d + 192), e);
    } else {
      _mm512_storeu_si512(d, a);
      _mm512_storeu_si512(d + 64, b);
      _mm512_storeu_si512(d + 128, c);
      _mm512_storeu_si512(d + 192, e);
    }
    if (pf < pf_end) {
      for (int k = 0; k < 4; k++) _mm_prefetch(reinterpret_cast<const char*>(next + pf + 64 * k), _MM_HINT_T0);
      pf += 256;
    }
  }
}

#define COPY_RUN(dst, src, bytes, next, stream) copy_run((dst), (src), (bytes), (next), (stream))
#include "kernels/copy/generic.inc"
#undef COPY_RUN

void gather_avx512(uint8_t* dst, const uint8_t* mem, const uint32_t* pfns, size_t n, size_t page_size, bool stream) {
  gather_generic(dst, mem, pfns, n, page_size, stream);
  if (stream) _mm_sfence();
}

void scatter_avx512(uint8_t* mem, const uint8_t* src, const uint32_t* pfns, size_t n, size_t page_size, bool stream) {
  scatter_generic(mem, src, pfns, n, page_size, stream);
  if (stream) _mm_sfence();
}

}  // namespace
}  // namespace avx512_isa

extern const Ops ops_avx512 = {"avx512", avx512_isa::gather_avx512, avx512_isa::scatter_avx512};

}  // namespace kernels::copy
