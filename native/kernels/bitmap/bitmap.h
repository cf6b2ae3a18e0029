// Kernel family "bitmap": turning a dirty-page bitmap into a sorted list of page indices, and
// counting its set bits. Bit i is bit (i & 7) of byte (i >> 3): the layout of a KVM or Xen dirty
// log on little-endian machines.
//
// Every ISA variant (scalar.cc, avx2.cc, avx512.cc) fills one `Ops`; kernels/dispatch.h picks the
// row. The kernels are plain C-style functions on pointers: the N-API layer owns allocation,
// bounds and threading, so ISA translation units never instantiate shared templates (which the
// linker could otherwise merge into a copy built for the wrong ISA).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels::bitmap {

struct Ops {
  const char* isa;
  // Writes base + i for every set bit i of bits[0, nbytes), ascending, to `out`; returns how many.
  // `out` must have room for 8 * nbytes entries: the kernel may store (not count) scratch values
  // anywhere in the 64 entries reserved for each 8-byte word it reaches, which lets it write
  // whole vectors without a branch per bit. Callers guarantee base + 8 * nbytes <= 2^32.
  size_t (*scan)(const uint8_t* bits, size_t nbytes, uint32_t base, uint32_t* out);
  // Number of set bits in bits[0, nbytes).
  uint64_t (*count)(const uint8_t* bits, size_t nbytes);
};

extern const Ops ops_scalar;
extern const Ops ops_avx2;
extern const Ops ops_avx512;

}  // namespace kernels::bitmap
