// Kernel family "delta", avx2 variant.
#include "kernels/delta/delta.h"

namespace kernels::delta {

extern const Ops ops_avx2 = {"avx2"};

}  // namespace kernels::delta
