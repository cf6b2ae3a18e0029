// vCPU fd wrapper (see vcpu.h).
#include "vmm/vcpu.h"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "vmm/ioctls.h"
#include "vmm/kvm.h"

namespace vmm {

Vcpu::Vcpu(const Kvm& kvm, int vm_fd, uint32_t index, uint32_t ring_bytes, uint32_t xsave_size)
    : index_(index), xsave_size_(xsave_size) {
  fd_ = xioctl(vm_fd, KVM_CREATE_VCPU, static_cast<unsigned long>(index), "KVM_CREATE_VCPU");
  run_size_ = static_cast<size_t>(kvm.vcpu_mmap_size());
  // SAFETY: the vCPU fd supports mmap of vcpu_mmap_size bytes at offset 0 (struct kvm_run).
  void* p = mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    close(fd_);
    throw SysError("mmap(kvm_run)", e);
  }
  run_ = static_cast<kvm_run*>(p);
  if (ring_bytes) {
    const long page = sysconf(_SC_PAGESIZE);
    // SAFETY: with KVM_CAP_DIRTY_LOG_RING enabled the ring lives at KVM_DIRTY_LOG_PAGE_OFFSET
    // pages into the vCPU fd, ring_bytes long.
    void* r = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                   static_cast<off_t>(KVM_DIRTY_LOG_PAGE_OFFSET) * page);
    if (r == MAP_FAILED) {
      const int e = errno;
      munmap(run_, run_size_);
      close(fd_);
      throw SysError("mmap(dirty ring)", e);
    }
    ring_ = static_cast<kvm_dirty_gfn*>(r);
    ring_entries_ = ring_bytes / sizeof(kvm_dirty_gfn);
  }
}

Vcpu::~Vcpu() {
  if (ring_) munmap(ring_, ring_entries_ * sizeof(kvm_dirty_gfn));
  if (run_) munmap(run_, run_size_);
  if (fd_ >= 0) close(fd_);
}

void Vcpu::set_cpuid(const Kvm& kvm) {
  const auto& src = kvm.supported_cpuid();
  std::vector<uint8_t> buf(sizeof(CpuidHeader) + src.size() * sizeof(kvm_cpuid_entry2));
  auto* c = reinterpret_cast<CpuidHeader*>(buf.data());
  auto* entries = reinterpret_cast<kvm_cpuid_entry2*>(buf.data() + sizeof(CpuidHeader));
  c->nent = static_cast<uint32_t>(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    kvm_cpuid_entry2 e = src[i];
    if (e.function == 1) e.ebx = (e.ebx & 0x00ffffffu) | (index_ << 24);  // initial APIC id
    if (e.function == 0xb || e.function == 0x1f) e.edx = index_;          // x2APIC id
    entries[i] = e;
  }
  xioctl(fd_, kSetCpuid2, c, "KVM_SET_CPUID2");
}

void Vcpu::boot_long_mode(uint64_t rip, uint64_t rsp, uint64_t rdi, uint64_t rsi, uint64_t gdt_base,
                          uint16_t gdt_limit, uint64_t idt_base, uint16_t idt_limit, uint64_t tss_base,
                          uint16_t tss_selector, uint64_t cr3) {
  kvm_sregs s{};
  xioctl(fd_, KVM_GET_SREGS, &s, "KVM_GET_SREGS");
  // The payload runs in ring 3. Nested under PVM (kvm_pvm) guest supervisor code is emulated
  // instruction by instruction (~1 us each) while guest user code runs natively, so only the
  // exception stubs run in ring 0.
  kvm_segment code{};
  code.base = 0;
  code.limit = 0xffffffff;
  code.selector = 0x1b;  // GDT entry 3, RPL 3
  code.type = 11;        // execute/read, accessed
  code.present = 1;
  code.dpl = 3;
  code.s = 1;
  code.l = 1;
  code.g = 1;
  kvm_segment data{};
  data.base = 0;
  data.limit = 0xffffffff;
  data.selector = 0x23;  // GDT entry 4, RPL 3
  data.type = 3;         // read/write, accessed
  data.present = 1;
  data.dpl = 3;
  data.s = 1;
  data.db = 1;
  data.g = 1;
  kvm_segment tr{};
  tr.base = tss_base;
  tr.limit = 0x67;
  tr.selector = tss_selector;
  tr.type = 11;  // 64-bit busy TSS
  tr.present = 1;
  kvm_segment ldt{};
  ldt.type = 2;
  ldt.unusable = 1;
  s.cs = code;
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.tr = tr;
  s.ldt = ldt;
  s.gdt.base = gdt_base;
  s.gdt.limit = gdt_limit;
  s.idt.base = idt_base;
  s.idt.limit = idt_limit;
  s.cr3 = cr3;
  s.cr4 = (1u << 5) | (1u << 9) | (1u << 10);                 // PAE, OSFXSR, OSXMMEXCPT
  s.cr0 = (1u << 0) | (1u << 1) | (1u << 4) | (1u << 5) | (1u << 16) | (1u << 31);  // PE MP ET NE WP PG
  s.efer = (1u << 8) | (1u << 10);                            // LME, LMA
  xioctl(fd_, KVM_SET_SREGS, &s, "KVM_SET_SREGS");
  kvm_regs r{};
  r.rip = rip;
  r.rsp = rsp;
  r.rdi = rdi;
  r.rsi = rsi;
  r.rflags = 0x3002;  // IOPL 3: the payload reaches its ports from ring 3
  xioctl(fd_, KVM_SET_REGS, &r, "KVM_SET_REGS");
}

kvm_regs Vcpu::regs() const {
  kvm_regs r{};
  xioctl(fd_, KVM_GET_REGS, &r, "KVM_GET_REGS");
  return r;
}

kvm_sregs Vcpu::sregs() const {
  kvm_sregs s{};
  xioctl(fd_, KVM_GET_SREGS, &s, "KVM_GET_SREGS");
  return s;
}

VcpuState Vcpu::save(const std::vector<uint32_t>& msr_indices) const {
  VcpuState st;
  xioctl(fd_, KVM_GET_REGS, &st.regs, "KVM_GET_REGS");
  xioctl(fd_, KVM_GET_SREGS, &st.sregs, "KVM_GET_SREGS");
  xioctl(fd_, KVM_GET_XCRS, &st.xcrs, "KVM_GET_XCRS");
  xioctl(fd_, KVM_GET_VCPU_EVENTS, &st.events, "KVM_GET_VCPU_EVENTS");
  st.xsave.assign(xsave_size_, 0);
  if (xsave_size_ > sizeof(XsaveArea)) {
    xioctl(fd_, kGetXsave2, st.xsave.data(), "KVM_GET_XSAVE2");
  } else {
    xioctl(fd_, kGetXsave, st.xsave.data(), "KVM_GET_XSAVE");
  }
  const size_t n = msr_indices.size();
  std::vector<uint8_t> buf(sizeof(MsrsHeader) + n * sizeof(kvm_msr_entry));
  auto* m = reinterpret_cast<MsrsHeader*>(buf.data());
  auto* entries = reinterpret_cast<kvm_msr_entry*>(buf.data() + sizeof(MsrsHeader));
  m->nmsrs = static_cast<uint32_t>(n);
  for (size_t i = 0; i < n; ++i) entries[i].index = msr_indices[i];
  const int got = xioctl(fd_, kGetMsrs, m, "KVM_GET_MSRS");
  if (static_cast<size_t>(got) != n) {
    throw std::runtime_error("KVM_GET_MSRS read " + std::to_string(got) + " of " + std::to_string(n) +
                             " MSRs (stopped at 0x" +
                             std::to_string(got >= 0 && static_cast<size_t>(got) < n ? msr_indices[got] : 0) + ")");
  }
  st.msrs.assign(entries, entries + n);
  return st;
}

void Vcpu::load(const VcpuState& st) {
  xioctl(fd_, KVM_SET_SREGS, const_cast<kvm_sregs*>(&st.sregs), "KVM_SET_SREGS");
  xioctl(fd_, KVM_SET_REGS, const_cast<kvm_regs*>(&st.regs), "KVM_SET_REGS");
  xioctl(fd_, KVM_SET_XCRS, const_cast<kvm_xcrs*>(&st.xcrs), "KVM_SET_XCRS");
  std::vector<uint8_t> xs(std::max<size_t>(xsave_size_, sizeof(XsaveArea)), 0);
  std::memcpy(xs.data(), st.xsave.data(), std::min(xs.size(), st.xsave.size()));
  xioctl(fd_, kSetXsave, xs.data(), "KVM_SET_XSAVE");
  const size_t n = st.msrs.size();
  std::vector<uint8_t> buf(sizeof(MsrsHeader) + n * sizeof(kvm_msr_entry));
  auto* m = reinterpret_cast<MsrsHeader*>(buf.data());
  auto* entries = reinterpret_cast<kvm_msr_entry*>(buf.data() + sizeof(MsrsHeader));
  m->nmsrs = static_cast<uint32_t>(n);
  for (size_t i = 0; i < n; ++i) entries[i] = st.msrs[i];
  const int set = xioctl(fd_, kSetMsrs, m, "KVM_SET_MSRS");
  if (static_cast<size_t>(set) != n) {
    char hex[16];
    snprintf(hex, sizeof hex, "%x", set >= 0 && static_cast<size_t>(set) < n ? st.msrs[set].index : 0u);
    throw std::runtime_error(std::string("KVM_SET_MSRS refused MSR 0x") + hex);
  }
  xioctl(fd_, KVM_SET_VCPU_EVENTS, const_cast<kvm_vcpu_events*>(&st.events), "KVM_SET_VCPU_EVENTS");
}

}  // namespace vmm
