// Kernel family "bitmap", scalar variant.
#include "kernels/bitmap/bitmap.h"

namespace kernels::bitmap {

extern const Ops ops_scalar = {"scalar"};

}  // namespace kernels::bitmap
