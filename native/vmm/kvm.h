// The KVM system fd (/dev/kvm): API version, capabilities, supported CPUID, the vCPU mmap size,
// and a probe that says which of our features work here and, if not, why (`understudy info`).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vmm {

// What `understudy info` and kvmAvailable() report.
struct Probe {
  bool ok = false;            // /dev/kvm opens, API 12, a VM can be created
  std::string reason;         // why not (with advice) when !ok
  int api_version = -1;
  bool manual_protect = false;  // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
  std::string manual_protect_reason;
  bool dirty_ring = false;      // KVM_CAP_DIRTY_LOG_RING
  uint32_t dirty_ring_max_bytes = 0;
  std::string dirty_ring_reason;
  int max_vcpus = 0;
  uint32_t xsave_size = 0;
};

Probe probe();

// An open /dev/kvm.
class Kvm {
 public:
  Kvm();  // throws SysError with advice
  ~Kvm();
  Kvm(const Kvm&) = delete;
  Kvm& operator=(const Kvm&) = delete;

  int fd() const { return fd_; }
  int check(long cap) const;  // KVM_CHECK_EXTENSION on the system fd (0 when absent)
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }
  // KVM_GET_SUPPORTED_CPUID, cached.
  const std::vector<kvm_cpuid_entry2>& supported_cpuid() const { return cpuid_; }
  // MSRs KVM can save and restore (KVM_GET_MSR_INDEX_LIST), cached.
  const std::vector<uint32_t>& msr_index_list() const { return msrs_; }

 private:
  int fd_ = -1;
  int vcpu_mmap_size_ = 0;
  std::vector<kvm_cpuid_entry2> cpuid_;
  std::vector<uint32_t> msrs_;
};

// One shared instance per process (opened on first use).
std::shared_ptr<Kvm> kvm_instance();

}  // namespace vmm
