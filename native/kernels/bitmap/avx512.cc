// Kernel family "bitmap", avx512 variant.
#include "kernels/bitmap/bitmap.h"

namespace kernels::bitmap {

extern const Ops ops_avx512 = {"avx512"};

}  // namespace kernels::bitmap
