// Kernel family "copy", scalar variant: run merging over a baseline-ISA copy loop. On x86-64 the
// baseline includes SSE2, so runs are copied 64 bytes per step with 16-byte loads and stores
// (streaming when asked and aligned) and the next run is prefetched. libc memcpy is not used for
// pages: on AMD Zen it takes `rep movsb` for page-sized copies, which is several times slower
// when source and destination share their offset within a page, as gathered pages always do.
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernels/copy/copy.h"

namespace kernels::copy {
namespace scalar_isa {
namespace {

#if defined(__SSE2__)
#include "kernels/copy/sse2_run.inc"

inline void copy_run(uint8_t* dst, const uint8_t* src, size_t bytes, const uint8_t* next, bool stream) {
  copy_run_16(dst, src, bytes, next, stream && (reinterpret_cast<uintptr_t>(dst) & 15) == 0);
}
#define COPY_RUN(dst, src, bytes, next, stream) copy_run((dst), (src), (bytes), (next), (stream))
#else
#define COPY_RUN(dst, src, bytes, next, stream) ((void)(next), (void)(stream), std::memcpy((dst), (src), (bytes)))
#endif

#include "kernels/copy/generic.inc"
#undef COPY_RUN

void gather_scalar(uint8_t* dst, const uint8_t* mem, const uint32_t* pfns, size_t n, size_t page_size, bool stream) {
  gather_generic(dst, mem, pfns, n, page_size, stream);
#if defined(__SSE2__)
  if (stream) _mm_sfence();
#endif
}

void scatter_scalar(uint8_t* mem, const uint8_t* src, const uint32_t* pfns, size_t n, size_t page_size, bool stream) {
  scatter_generic(mem, src, pfns, n, page_size, stream);
#if defined(__SSE2__)
  if (stream) _mm_sfence();
#endif
}

}  // namespace
}  // namespace scalar_isa

extern const Ops ops_scalar = {"scalar", scalar_isa::gather_scalar, scalar_isa::scatter_scalar};

}  // namespace kernels::copy
