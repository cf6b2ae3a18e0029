// Kernel family "hash", avx512 variant.
#include "kernels/hash/hash.h"

namespace kernels::hash {

extern const Ops ops_avx512 = {"avx512"};

}  // namespace kernels::hash
