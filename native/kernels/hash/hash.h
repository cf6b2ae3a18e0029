// Kernel family "hash": the ops every ISA variant provides (see kernels/dispatch.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels::hash {

struct Ops {
  const char* isa;
};

extern const Ops ops_scalar;
extern const Ops ops_avx2;
extern const Ops ops_avx512;

}  // namespace kernels::hash
