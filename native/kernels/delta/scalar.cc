// Kernel family "delta", scalar variant.
#include "kernels/delta/delta.h"

namespace kernels::delta {

extern const Ops ops_scalar = {"scalar"};

}  // namespace kernels::delta
