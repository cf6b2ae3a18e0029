// Kernel family "copy", scalar variant: run merging over libc memcpy (which has its own tuned
// copy loops; non-temporal hints are left to it).
#include <cstdint>
#include <cstring>

#include "kernels/copy/copy.h"

namespace kernels::copy {
namespace scalar_isa {
namespace {
#define COPY_RUN(dst, src, bytes, next, stream) ((void)(next), (void)(stream), std::memcpy((dst), (src), (bytes)))
#include "kernels/copy/generic.inc"
#undef COPY_RUN
}  // namespace
}  // namespace scalar_isa

extern const Ops ops_scalar = {"scalar", scalar_isa::gather_generic, scalar_isa::scatter_generic};

}  // namespace kernels::copy
