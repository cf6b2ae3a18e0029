// The KVM guest's CPU state blob (docs/FORMAT-kvm.md): versioned, checksummed serialization of
// every vCPU's state, and a hostile-input parser that says exactly what is wrong.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmm/vcpu.h"
#include "workloads/abi.h"

namespace vmm {
namespace cpu_blob {

constexpr char kMagic[8] = {'U', 'S', 'C', 'P', 'U', 'S', 'T', 'A'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 48;
constexpr size_t kTrailerSize = 8;
constexpr size_t kRecordHeader = 24;

// A rejected blob; the message names the argument (`cpu`).
class BadBlob : public std::range_error {
 public:
  using std::range_error::range_error;
};

struct Parsed {
  uint64_t memory_bytes = 0;
  std::vector<VcpuState> vcpus;
};

std::vector<uint8_t> encode(const std::vector<VcpuState>& vcpus, uint64_t memory_bytes);
// Throws BadBlob.
Parsed decode(const uint8_t* data, size_t len);

}  // namespace cpu_blob
}  // namespace vmm
