// Kernel family "hash", scalar variant.
#include "kernels/hash/hash.h"

namespace kernels::hash {

extern const Ops ops_scalar = {"scalar"};

}  // namespace kernels::hash
