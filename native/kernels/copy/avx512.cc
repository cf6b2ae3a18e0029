// Kernel family "copy", avx512 variant.
#include "kernels/copy/copy.h"

namespace kernels::copy {

extern const Ops ops_avx512 = {"avx512"};

}  // namespace kernels::copy
