// Kernel family "copy", scalar variant.
#include "kernels/copy/copy.h"

namespace kernels::copy {

extern const Ops ops_scalar = {"scalar"};

}  // namespace kernels::copy
