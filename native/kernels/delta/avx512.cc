// Kernel family "delta", avx512 variant.
#include "kernels/delta/delta.h"

namespace kernels::delta {

extern const Ops ops_avx512 = {"avx512"};

}  // namespace kernels::delta
