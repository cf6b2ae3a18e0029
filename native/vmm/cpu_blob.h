// The KVM guest's CPU state blob (docs/FORMAT.md "KVM guest CPU state blob"): the shared envelope of native/guest/blob.h
// (magic "USCP", version, type 2 = kvm, length, vCPUs, memory size, workload, XXH3-64 trailer)
// around every vCPU's state and the output records drained but not yet delivered. The parser
// treats its input as hostile and says exactly what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "guest/blob.h"
#include "guest/ring.h"
#include "vmm/vcpu.h"
#include "workloads/abi.h"

namespace vmm {
namespace cpu_blob {

constexpr size_t kRecordHeader = 24;  // per-vCPU record header

// A rejected blob; the message names the argument (`cpu`).
class BadBlob : public std::range_error {
 public:
  using std::range_error::range_error;
};

struct Parsed {
  guest::BlobHeader header;  // envelope fields (version, pause, ...)
  uint64_t memory_bytes = 0;
  uint32_t workload = 0;
  std::vector<VcpuState> vcpus;
  std::vector<guest::Record> pending;
};

// `mem` is the guest memory (its control page names the workload and the pause).
std::vector<uint8_t> encode(const std::vector<VcpuState>& vcpus, const uint8_t* mem, uint64_t memory_bytes,
                            const std::vector<guest::Record>& pending);
// Throws BadBlob.
Parsed decode(const uint8_t* data, size_t len);

}  // namespace cpu_blob
}  // namespace vmm
