// One vCPU fd: its mmapped kvm_run, its dirty ring (when the VM uses one), the long-mode boot
// state, and get/set of every piece of state a checkpoint needs (regs, sregs, XSAVE, XCRs, MSRs,
// pending events).
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vmm {

class Kvm;

// Everything needed to resume a vCPU exactly. Raw kernel UAPI structs (a stable ABI).
struct VcpuState {
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_xcrs xcrs{};
  kvm_vcpu_events events{};
  std::vector<uint8_t> xsave;           // KVM_GET_XSAVE(2) area
  std::vector<kvm_msr_entry> msrs;      // index + data
  bool finished = false;                // the payload has written US_PORT_EXIT
};

class Vcpu {
 public:
  // Creates vCPU `index` on `vm_fd`; maps kvm_run and, if ring_bytes > 0, the dirty ring.
  Vcpu(const Kvm& kvm, int vm_fd, uint32_t index, uint32_t ring_bytes, uint32_t xsave_size);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  int fd() const { return fd_; }
  uint32_t index() const { return index_; }
  kvm_run* run() const { return run_; }

  // KVM_SET_CPUID2 with the host's supported CPUID, APIC ids set to this vCPU's index.
  void set_cpuid(const Kvm& kvm);
  // 64-bit long mode at `rip` in ring 3 (IOPL 3), flat segments from the GDT at gdt_base,
  // paging at cr3, ring-0 exception stack from the TSS at tss_base.
  void boot_long_mode(uint64_t rip, uint64_t rsp, uint64_t rdi, uint64_t rsi, uint64_t gdt_base,
                      uint16_t gdt_limit, uint64_t idt_base, uint16_t idt_limit, uint64_t tss_base,
                      uint16_t tss_selector, uint64_t cr3);

  VcpuState save(const std::vector<uint32_t>& msr_indices) const;
  void load(const VcpuState& s);

  kvm_regs regs() const;
  kvm_sregs sregs() const;

  // Dirty ring: calls fn(slot, offset) for each harvested entry and marks it for reset.
  template <typename F>
  uint32_t harvest(F&& fn);

 private:
  int fd_ = -1;
  uint32_t index_ = 0;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
  kvm_dirty_gfn* ring_ = nullptr;
  uint32_t ring_entries_ = 0;
  uint32_t ring_fetch_ = 0;
  uint32_t xsave_size_ = 0;
};

template <typename F>
uint32_t Vcpu::harvest(F&& fn) {
  if (!ring_) return 0;
  uint32_t n = 0;
  for (;;) {
    // SAFETY: ring_ maps ring_entries_ entries; the index is reduced modulo that count.
    kvm_dirty_gfn* e = &ring_[ring_fetch_ % ring_entries_];
    const uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
    if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) break;
    fn(e->slot, e->offset);
    __atomic_store_n(&e->flags, static_cast<uint32_t>(KVM_DIRTY_GFN_F_RESET), __ATOMIC_RELEASE);
    ++ring_fetch_;
    ++n;
  }
  return n;
}

}  // namespace vmm
