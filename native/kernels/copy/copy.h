// Kernel family "copy": gathering listed guest pages into one contiguous buffer (the copy done
// while the guest is paused) and scattering them back (the replica side).
//
// Kernels trust their arguments: the N-API layer has already checked every pfn against the size
// of memory and the sizes of the buffers, and split big batches across threads. Runs of
// consecutive pfns are copied as one block.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels::copy {

struct Ops {
  const char* isa;
  // dst[i * page_size, +page_size) = mem[pfns[i] * page_size, +page_size) for i < n.
  // `stream` asks for non-temporal stores (for outputs much larger than the cache); a variant
  // may ignore it. page_size is a power of two >= 512.
  void (*gather)(uint8_t* dst, const uint8_t* mem, const uint32_t* pfns, size_t n,
                 size_t page_size, bool stream);
  // mem[pfns[i] * page_size, +page_size) = src[i * page_size, +page_size), in order of i.
  void (*scatter)(uint8_t* mem, const uint8_t* src, const uint32_t* pfns, size_t n,
                  size_t page_size, bool stream);
};

extern const Ops ops_scalar;
extern const Ops ops_avx2;
extern const Ops ops_avx512;

}  // namespace kernels::copy
