// Kernel family "copy", avx2 variant.
#include "kernels/copy/copy.h"

namespace kernels::copy {

extern const Ops ops_avx2 = {"avx2"};

}  // namespace kernels::copy
