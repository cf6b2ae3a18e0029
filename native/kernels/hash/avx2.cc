// Kernel family "hash", avx2 variant.
#include "kernels/hash/hash.h"

namespace kernels::hash {

extern const Ops ops_avx2 = {"avx2"};

}  // namespace kernels::hash
