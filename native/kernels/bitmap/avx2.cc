// Kernel family "bitmap", avx2 variant.
#include "kernels/bitmap/bitmap.h"

namespace kernels::bitmap {

extern const Ops ops_avx2 = {"avx2"};

}  // namespace kernels::bitmap
