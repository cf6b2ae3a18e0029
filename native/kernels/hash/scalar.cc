// Kernel family "hash", scalar variant: libxxhash built for the baseline target. On x86-64 that
// baseline includes SSE2, which XXH3 uses for its accumulator (XXH_SSE2); elsewhere the portable
// XXH_SCALAR loop. Zero pages are found 64 bytes at a time with an early exit.
#include <cstdint>
#include <cstring>

#include "kernels/hash/hash.h"

#if defined(__x86_64__) || defined(_M_X64)
#define XXH_VECTOR XXH_SSE2
#else
#define XXH_VECTOR XXH_SCALAR
#endif
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kernels::hash {
namespace scalar_isa {
namespace {

inline bool page_is_zero(const uint8_t* p, size_t len) {
  for (size_t off = 0; off < len; off += 64) {
    uint64_t acc = 0;
    for (size_t k = 0; k < 64; k += 8) {
      uint64_t w;
      std::memcpy(&w, p + off + k, 8);  // SAFETY: len is a multiple of 512
      acc |= w;
    }
    if (acc != 0) return false;
  }
  return true;
}

#include "kernels/hash/generic.inc"
}  // namespace
}  // namespace scalar_isa

extern const Ops ops_scalar = {"scalar", scalar_isa::hash64_pages, scalar_isa::hash128_pages,
                               scalar_isa::zero_pages, scalar_isa::xxh3_whole};

}  // namespace kernels::hash
