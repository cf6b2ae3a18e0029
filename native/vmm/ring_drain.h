// Host side of the output ring for the KVM guest: drain published records (extending the hash
// chain) and compute the final checksum. Thin adapter so the VMM does not depend on how the shared
// guest code spells these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "workloads/abi.h"

namespace vmm {
struct OutRecord;
namespace ring_drain {

// Moves records [ring_tail, ring_head) to `out`, updates out_chain and ring_tail. Returns count.
size_t drain(us_control* ctl, const us_record* ring, std::vector<OutRecord>& out);
uint64_t final_checksum(const us_control* ctl);

}  // namespace ring_drain
}  // namespace vmm
