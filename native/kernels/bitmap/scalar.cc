// Kernel family "bitmap", scalar variant: the generic kernel built for the baseline target
// (64-bit words, 32-byte zero-block skipping, one store per set bit).
#include <cstdint>
#include <cstring>

#include "kernels/bitmap/bitmap.h"

namespace kernels::bitmap {
namespace scalar_isa {
namespace {
#include "kernels/bitmap/generic.inc"
}  // namespace
}  // namespace scalar_isa

extern const Ops ops_scalar = {"scalar", scalar_isa::scan_generic, scalar_isa::count_generic};

}  // namespace kernels::bitmap
