// The micro-VM (see vm.h): memory slot + dirty log, vCPU threads, pause/resume, exits.
#include "vmm/vm.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "guest/control.h"
#include "vmm/ioctls.h"
#include "vmm/kvm.h"

namespace vmm {

namespace {

// The real-time signal that kicks a vCPU thread out of KVM_RUN. Its handler does nothing; it is
// installed without SA_RESTART so the ioctl returns EINTR.
int kick_signal() { return SIGRTMIN + 6; }

void on_kick(int) {}

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = on_kick;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(kick_signal(), &sa, nullptr);
  });
}

std::string hex(uint64_t v) {
  char b[24];
  snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

const char* vector_name(uint32_t v) {
  static const char* names[32] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
                                  "#DF", "#CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
                                  "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23",
                                  "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31"};
  return v < 32 ? names[v] : "?";
}

bool has_error_code(uint32_t v) {
  return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

// MSRs a long-mode guest may have in use; saved when KVM can save them.
constexpr uint32_t kWantedMsrs[] = {
    0x10,        // IA32_TSC
    0x174, 0x175, 0x176,  // SYSENTER_CS/ESP/EIP
    0x277,       // PAT
    0xC0000081,  // STAR
    0xC0000082,  // LSTAR
    0xC0000083,  // CSTAR
    0xC0000084,  // SFMASK
    0xC0000102,  // KERNEL_GS_BASE
    0xC0000103,  // TSC_AUX
};

}  // namespace

Vm::Vm(uint8_t* mem, uint64_t size, const VmConfig& cfg, Notify notify)
    : mem_(mem), size_(size), cfg_(cfg), notify_(std::move(notify)) {
  if (cfg_.vcpus < 1 || cfg_.vcpus > US_MAX_VCPUS) throw std::range_error("vcpus out of range");
  if (size_ < US_MIN_MEMORY || size_ > kMaxMemory || size_ % US_PAGE_SIZE) {
    throw std::range_error("guest memory size out of range");
  }
  install_kick_handler();
  kvm_ = kvm_instance();
  vm_fd_ = xioctl(kvm_->fd(), KVM_CREATE_VM, 0ul, "KVM_CREATE_VM");
  try {
    uint32_t ring_bytes = 0;
    if (cfg_.dirty == DirtyMode::ring) {
      // SAFETY: capability query by value.
      const int max = ioctl(vm_fd_, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
      if (max <= 0) throw std::runtime_error("the dirty ring is not available (KVM_CAP_DIRTY_LOG_RING)");
      ring_bytes = cfg_.ring_entries * static_cast<uint32_t>(sizeof(kvm_dirty_gfn));
      if (ring_bytes > static_cast<uint32_t>(max)) ring_bytes = static_cast<uint32_t>(max);
      kvm_enable_cap cap{};
      cap.cap = KVM_CAP_DIRTY_LOG_RING;
      cap.args[0] = ring_bytes;
      xioctl(vm_fd_, KVM_ENABLE_CAP, &cap, "KVM_ENABLE_CAP(DIRTY_LOG_RING)");
    } else if (cfg_.dirty == DirtyMode::bitmap) {
      // Manual protect: GET_DIRTY_LOG no longer clears; we clear exactly what we fetched.
      // Not INITIALLY_SET: a fresh slot has no mappings, so write-protecting it costs nothing,
      // and the first fetch then reports only what was really written.
      kvm_enable_cap cap{};
      cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
      cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
      // SAFETY: KVM_ENABLE_CAP reads the struct above.
      manual_ = ioctl(vm_fd_, KVM_ENABLE_CAP, &cap) == 0;
    }
    kvm_userspace_memory_region region{};
    region.slot = 0;
    region.flags = cfg_.dirty == DirtyMode::none ? 0 : KVM_MEM_LOG_DIRTY_PAGES;
    region.guest_phys_addr = 0;
    region.memory_size = size_;
    region.userspace_addr = reinterpret_cast<uint64_t>(mem_);
    // SAFETY: mem_ maps size_ bytes and outlives the VM (the caller pins it until close()).
    xioctl(vm_fd_, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");

    // SAFETY: capability query by value.
    const int xs = ioctl(vm_fd_, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    xsave_size_ = xs > static_cast<int>(sizeof(XsaveArea)) ? static_cast<uint32_t>(xs)
                                                            : static_cast<uint32_t>(sizeof(XsaveArea));
    for (uint32_t want : kWantedMsrs) {
      for (uint32_t have : kvm_->msr_index_list()) {
        if (have == want) {
          msr_indices_.push_back(want);
          break;
        }
      }
    }
    for (uint32_t i = 0; i < cfg_.vcpus; ++i) {
      vcpus_.push_back(std::make_unique<Vcpu>(*kvm_, vm_fd_, i, ring_bytes, xsave_size_));
      vcpus_.back()->set_cpuid(*kvm_);
    }
  } catch (...) {
    vcpus_.clear();
    ::close(vm_fd_);
    vm_fd_ = -1;
    throw;
  }
  finished_.assign(cfg_.vcpus, 0);
  halted_.assign(cfg_.vcpus, 0);
  pending_io_.assign(cfg_.vcpus, 0);
  const uint64_t words = (pages() + 63) / 64;
  host_dirty_.assign(words, 0);
  fetched_.assign(words, 0);
}

Vm::~Vm() { close(); }

void Vm::mark_host_dirty(uint64_t gpa, uint64_t len) {
  if (len == 0 || gpa >= size_) return;
  const uint64_t first = gpa / US_PAGE_SIZE;
  const uint64_t last = std::min(gpa + len - 1, size_ - 1) / US_PAGE_SIZE;
  std::lock_guard<std::mutex> lk(dirty_mu_);
  for (uint64_t p = first; p <= last; ++p) host_dirty_[p >> 6] |= 1ull << (p & 63);
}

void Vm::boot(const uint8_t* payload, size_t payload_len) {
  if (payload_len == 0 || payload_len > US_PAYLOAD_MAX) throw std::range_error("payload size out of range");
  // SAFETY: size_ >= US_MIN_MEMORY (8 MiB), so all of low memory and the payload window exist.
  std::memset(mem_, 0, US_CONTROL_GPA);
  auto* gdt = reinterpret_cast<uint64_t*>(mem_ + kGdtGpa);
  gdt[0] = 0;
  gdt[1] = 0x00af9b000000ffffull;  // 0x08: 64-bit code, DPL 0 (exception stubs)
  gdt[2] = 0x00cf93000000ffffull;  // 0x10: data, DPL 0
  gdt[3] = 0x00affb000000ffffull;  // 0x18: 64-bit code, DPL 3 (the payload)
  gdt[4] = 0x00cff3000000ffffull;  // 0x20: data, DPL 3
  const uint64_t tss_limit = 0x67;
  for (uint32_t i = 0; i < US_MAX_VCPUS; ++i) {
    const uint64_t tss = kTssGpa + i * kTssStride;
    // 0x28 + 16 * i: 64-bit busy TSS of vCPU i (two GDT slots).
    gdt[5 + 2 * i] = (tss_limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x8bull << 40) |
                     (((tss_limit >> 16) & 0xf) << 48) | (((tss >> 24) & 0xff) << 56);
    gdt[6 + 2 * i] = tss >> 32;
    // SAFETY: TSS i is 104 bytes at tss (< kPml4Gpa, static_assert in vm.h): RSP0 (offset 4) is
    // the ring-0 stack an exception switches to; the I/O map base points past the end.
    const uint64_t rsp0 = kFaultStacksGpa + (i + 1) * kFaultStackSize;
    std::memcpy(mem_ + tss + 4, &rsp0, 8);
    *reinterpret_cast<uint16_t*>(mem_ + tss + 0x66) = 0x68;
  }
  for (uint32_t v = 0; v < 32; ++v) {
    const uint64_t stub = kStubsGpa + v * 16;
    // SAFETY: 32 stubs of 16 bytes fill [kStubsGpa, kStubsGpa + 0x200) below kPml4Gpa.
    uint8_t* s = mem_ + stub;
    if (v == 13) {
      // #GP: may be a ring-3 OUT (PVM does not honour IOPL 3). The VMM emulates the OUT, moves
      // the saved RIP past it, and the stub returns to the payload.
      static const uint8_t gp[] = {0x50,                          // push rax
                                   0xb8, 13, 0, 0, 0,             // mov eax, 13
                                   0xe7, static_cast<uint8_t>(kFaultPort),  // out imm8, eax
                                   0x58,                          // pop rax
                                   0x48, 0x83, 0xc4, 0x08,        // add rsp, 8 (error code)
                                   0x48, 0xcf};                   // iretq
      std::memcpy(s, gp, sizeof gp);
    } else {
      s[0] = 0xb8;  // mov eax, imm32 (the vector)
      std::memcpy(s + 1, &v, 4);
      s[5] = 0xe7;  // out imm8, eax
      s[6] = static_cast<uint8_t>(kFaultPort);
      s[7] = 0xf4;  // hlt
      s[8] = 0xeb;  // jmp back to hlt
      s[9] = 0xfd;
    }
    // SAFETY: 32 gates of 16 bytes fill [kIdtGpa, kIdtGpa + 0x200).
    auto* gate = reinterpret_cast<uint64_t*>(mem_ + kIdtGpa + v * 16);
    gate[0] = (stub & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | (((stub >> 16) & 0xffff) << 48);
    gate[1] = stub >> 32;
  }
  // Identity map of all RAM with 2 MiB user pages (A and D preset so the walker never writes
  // them; 1 GiB pages fault under PVM).
  const uint64_t big = (size_ + (1ull << 21) - 1) >> 21;
  const uint64_t pds = (big + 511) / 512;
  auto* pml4 = reinterpret_cast<uint64_t*>(mem_ + kPml4Gpa);
  auto* pdpt = reinterpret_cast<uint64_t*>(mem_ + kPdptGpa);
  pml4[0] = kPdptGpa | 0x27;
  for (uint64_t i = 0; i < pds; ++i) pdpt[i] = (kPdGpa + i * US_PAGE_SIZE) | 0x27;
  // SAFETY: pds <= 9 (size_ <= kMaxMemory), so the PDs end below the fault stacks.
  auto* pd = reinterpret_cast<uint64_t*>(mem_ + kPdGpa);
  for (uint64_t j = 0; j < big; ++j) pd[j] = (j << 21) | 0xe7;
  // SAFETY: payload_len <= US_PAYLOAD_MAX, so it fits [US_PAYLOAD_GPA, US_STACKS_GPA).
  std::memcpy(mem_ + US_PAYLOAD_GPA, payload, payload_len);
  mark_host_dirty(0, US_CONTROL_GPA + US_PAGE_SIZE);
  mark_host_dirty(US_PAYLOAD_GPA, payload_len);
  for (uint32_t i = 0; i < cfg_.vcpus; ++i) {
    vcpus_[i]->boot_long_mode(US_PAYLOAD_GPA, US_STACKS_GPA + (i + 1) * uint64_t(US_STACK_SIZE), 0, i,
                              kGdtGpa, static_cast<uint16_t>((5 + 2 * US_MAX_VCPUS) * 8 - 1), kIdtGpa,
                              32 * 16 - 1, kTssGpa + i * kTssStride, static_cast<uint16_t>(0x28 + 16 * i),
                              kPml4Gpa);
  }
}

void Vm::load(const std::vector<VcpuState>& states) {
  if (states.size() != cfg_.vcpus) throw std::range_error("vCPU state count mismatch");
  for (uint32_t i = 0; i < cfg_.vcpus; ++i) {
    vcpus_[i]->load(states[i]);
    finished_[i] = states[i].finished ? 1 : 0;
    halted_[i] = finished_[i];  // a finished vCPU never runs again
  }
  mark_host_dirty(0, size_);  // every page came from the host
}

void Vm::start() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (state_ == State::closed) throw std::logic_error("the guest is closed");
    if (threads_.empty()) {
      state_ = State::running;
      for (uint32_t i = 0; i < cfg_.vcpus; ++i) threads_.emplace_back(&Vm::thread_main, this, i);
      if (all_halted_locked()) finish_locked();  // restored after every vCPU had finished
    }
  }
  if (state_ == State::finished) notify_(Event::finished);
  resume();
}

void Vm::resume() {
  std::lock_guard<std::mutex> lk(mu_);
  if (state_ != State::running) return;
  pause_requested_ = false;
  cv_.notify_all();
}

uint64_t Vm::pause() {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lk(mu_);
  const bool was_paused = pause_requested_;
  pause_requested_ = true;
  if (threads_.empty()) return 0;
  // SAFETY: each run() page stays mapped until close(); immediate_exit is a plain byte the
  // kernel reads on KVM_RUN entry.
  for (auto& v : vcpus_) __atomic_store_n(&v->run()->immediate_exit, 1, __ATOMIC_RELEASE);
  const uint32_t n = cfg_.vcpus;
  if (parked_.load() < n) {
    lk.unlock();
    for (auto& t : threads_) pthread_kill(t.native_handle(), kick_signal());
    lk.lock();
    // Sleep, do not spin: on 2 busy cores a spinning caller takes the core a vCPU needs to stop
    // (measured: p50 1 ms spinning vs 36 us sleeping).
    parked_cv_.wait_for(lk, std::chrono::microseconds(200), [&] { return parked_.load() >= n; });
  }
  for (int round = 1; parked_.load() < n; ++round) {
    if (round > 10000) throw std::runtime_error("the vCPU threads did not stop within 10 s");
    parked_cv_.wait_for(lk, std::chrono::microseconds(1000), [&] { return parked_.load() >= n; });
    if (parked_.load() >= n) break;
    lk.unlock();
    for (auto& t : threads_) pthread_kill(t.native_handle(), kick_signal());
    lk.lock();
  }
  if (!was_paused) {
    // SAFETY: the control page lies inside guest RAM; every vCPU is parked.
    guest::count_pause(mem_);
    mark_host_dirty(US_CONTROL_GPA, US_PAGE_SIZE);
  }
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
}

void Vm::thread_main(uint32_t i) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kick_signal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  Vcpu& v = *vcpus_[i];
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (!pending_io_[i]) {
        while ((pause_requested_ || halted_[i]) && !stop_) {
          ++parked_;
          parked_cv_.notify_all();
          cv_.wait(lk);
          --parked_;
        }
        if (stop_) return;
        // SAFETY: see pause(); written under mu_ so a concurrent pause() cannot be lost.
        v.run()->immediate_exit = 0;
      } else if (stop_) {
        return;
      }
      pending_io_[i] = 0;
    }
    // SAFETY: KVM_RUN on this thread's own vCPU fd; kvm_run stays mapped while we run.
    const int rc = ioctl(v.fd(), KVM_RUN, 0);
    exits_.fetch_add(1, std::memory_order_relaxed);
    if (rc < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        kicks_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      fail(i, std::string("KVM_RUN failed: ") + std::strerror(errno));
      continue;
    }
    try {
      handle_exit(i);
    } catch (const std::exception& e) {
      fail(i, e.what());
    }
  }
}

bool Vm::handle_exit(uint32_t i) {
  Vcpu& v = *vcpus_[i];
  kvm_run* run = v.run();
  const std::string who = "vCPU " + std::to_string(i) + ": ";
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      io_exits_.fetch_add(1, std::memory_order_relaxed);
      const uint16_t port = run->io.port;
      const uint32_t sz = run->io.size;
      uint64_t value = 0;
      // SAFETY: data_offset/size/count come from the kernel and point inside the kvm_run mapping;
      // we read at most 4 bytes of the first element.
      std::memcpy(&value, reinterpret_cast<uint8_t*>(run) + run->io.data_offset, sz <= 4 ? sz : 4);
      if (run->io.direction != KVM_EXIT_IO_OUT) {
        fail(i, who + "unexpected IN from port " + hex(port) + " at rip " + hex(v.regs().rip));
        return false;
      }
      pending_io_[i] = 1;
      if (port == kFaultPort && value == 13) {
        uint16_t out_port = 0;
        uint32_t out_value = 0;
        if (emulate_out(i, &out_port, &out_value)) return on_port(i, out_port, out_value);
      }
      return on_port(i, port, value);
    }
    case KVM_EXIT_HLT: {
      if (!finished_[i]) {
        fail(i, who + "halted at rip " + hex(v.regs().rip) + " before finishing its work");
        return false;
      }
      halt(i, false);
      return false;
    }
    case KVM_EXIT_MMIO:
      fail(i, who + "accessed unmapped guest-physical address " + hex(run->mmio.phys_addr) + " (" +
                  (run->mmio.is_write ? "write" : "read") + " of " + std::to_string(run->mmio.len) +
                  " bytes) at rip " + hex(v.regs().rip) + "; guest RAM ends at " + hex(size_));
      return false;
    case KVM_EXIT_SHUTDOWN:
      fail(i, who + "triple fault (KVM_EXIT_SHUTDOWN) near rip " + hex(v.regs().rip));
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      fail(i, who + "VM entry failed (KVM_EXIT_FAIL_ENTRY, hardware reason " +
                  hex(run->fail_entry.hardware_entry_failure_reason) + ")");
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      fail(i, who + "KVM internal error, suberror " + std::to_string(run->internal.suberror) +
                  (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? " (emulation failure)" : "") +
                  " at rip " + hex(v.regs().rip));
      return false;
    case KVM_EXIT_DIRTY_RING_FULL: {
      ring_full_.fetch_add(1, std::memory_order_relaxed);
      harvest_ring(v);
      xioctl(vm_fd_, KVM_RESET_DIRTY_RINGS, 0ul, "KVM_RESET_DIRTY_RINGS");
      return true;
    }
    case KVM_EXIT_INTR:
      kicks_.fetch_add(1, std::memory_order_relaxed);
      return true;
    default:
      fail(i, who + "unexpected KVM exit reason " + std::to_string(run->exit_reason) + " at rip " +
                  hex(v.regs().rip));
      return false;
  }
}

bool Vm::on_port(uint32_t i, uint16_t port, uint64_t value) {
  Vcpu& v = *vcpus_[i];
  const std::string who = "vCPU " + std::to_string(i) + ": ";
  switch (port) {
    case US_PORT_DOORBELL: {
      doorbells_.fetch_add(1, std::memory_order_relaxed);
      return drain(i);
    }
    case US_PORT_EXIT: {
      // Finished: this vCPU never runs again (its HLT loop would fault in ring 3).
      halt(i, true);
      return false;
    }
    case US_PORT_PANIC: {
      // The OUT carries the low 32 bits; the whole code (gpa | reason) is in the control page.
      const uint64_t code = __atomic_load_n(&guest::control(mem_)->panic_code, __ATOMIC_ACQUIRE);
      panic_code_.store(code != 0 ? code : value, std::memory_order_relaxed);
      fail(i, guest::panic_message(i, code != 0 ? code : value));
      return false;
    }
    case kFaultPort:
      fail(i, fault_message(i, static_cast<uint32_t>(value)));
      return false;
    default:
      fail(i, who + "unexpected OUT to port " + hex(port) + " (value " + hex(value) + ") at rip " +
                  hex(v.regs().rip));
      return false;
  }
}

bool Vm::emulate_out(uint32_t i, uint16_t* port, uint32_t* value) {
  const kvm_regs r = vcpus_[i]->regs();
  const uint64_t sp = r.rsp;  // ring-0 stack: saved rax, error code, rip, cs, rflags, rsp, ss
  if (sp > size_ - 56) return false;
  uint64_t f[7];
  // SAFETY: sp + 56 <= size_.
  std::memcpy(f, mem_ + sp, sizeof f);
  const uint64_t rax = f[0], err = f[1], rip = f[2], cs = f[3];
  if (err != 0 || (cs & 3) != 3 || rip > size_ - 3) return false;
  // SAFETY: rip + 3 <= size_.
  const uint8_t* ins = mem_ + rip;
  size_t len = 0;
  bool op16 = false;
  if (ins[0] == 0x66) {
    op16 = true;
    ++ins;
    ++len;
  }
  uint32_t width;
  switch (ins[0]) {
    case 0xe6: width = 1; *port = ins[1]; len += 2; break;
    case 0xe7: width = op16 ? 2 : 4; *port = ins[1]; len += 2; break;
    case 0xee: width = 1; *port = static_cast<uint16_t>(r.rdx); len += 1; break;
    case 0xef: width = op16 ? 2 : 4; *port = static_cast<uint16_t>(r.rdx); len += 1; break;
    default: return false;
  }
  *value = static_cast<uint32_t>(width == 4 ? rax : width == 2 ? (rax & 0xffff) : (rax & 0xff));
  const uint64_t next = rip + len;
  // SAFETY: sp + 24 <= size_ (checked above): the saved RIP the stub's iretq returns to.
  std::memcpy(mem_ + sp + 16, &next, 8);
  mark_host_dirty(sp + 16, 8);
  return true;
}

void Vm::harvest_ring(Vcpu& v) {
  std::lock_guard<std::mutex> lk(dirty_mu_);
  const uint64_t pages = this->pages();
  v.harvest([&](uint32_t slot, uint64_t off) {
    if (slot == 0 && off < pages) host_dirty_[off >> 6] |= 1ull << (off & 63);
  });
}

std::string Vm::fault_message(uint32_t i, uint32_t vector) {
  const kvm_regs r = vcpus_[i]->regs();
  const kvm_sregs s = vcpus_[i]->sregs();
  std::string msg = "vCPU " + std::to_string(i) + ": guest exception " + vector_name(vector) +
                    " (vector " + std::to_string(vector) + ")";
  const uint64_t sp = r.rsp + (vector == 13 ? 8 : 0);  // the #GP stub saved rax first
  const uint64_t need = has_error_code(vector) ? 40 : 32;
  if (sp <= size_ - need) {
    uint64_t err = 0, rip = 0;
    // SAFETY: sp + need <= size_, so both reads are inside guest RAM.
    if (has_error_code(vector)) {
      std::memcpy(&err, mem_ + sp, 8);
      std::memcpy(&rip, mem_ + sp + 8, 8);
      uint64_t fl = 0;
      std::memcpy(&fl, mem_ + sp + 24, 8);
      msg += " at rip " + hex(rip) + ", error code " + hex(err) + ", rflags " + hex(fl);
    } else {
      std::memcpy(&rip, mem_ + sp, 8);
      msg += " at rip " + hex(rip);
    }
  }
  if (vector == 14) msg += ", address " + hex(s.cr2);
  return msg;
}

void Vm::fail(uint32_t i, const std::string& msg) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    halted_[i] = 1;
    if (state_ != State::running) return;
    state_ = State::failed;
    error_ = msg;
    pause_requested_ = true;
    for (auto& v : vcpus_) __atomic_store_n(&v->run()->immediate_exit, 1, __ATOMIC_RELEASE);
  }
  for (uint32_t j = 0; j < threads_.size(); ++j) {
    if (j != i) pthread_kill(threads_[j].native_handle(), kick_signal());
  }
  notify_(Event::error);
}

bool Vm::drain(uint32_t i) {
  size_t n = 0;
  const std::string err = out_.drain(mem_, &n);
  if (n) mark_host_dirty(US_CONTROL_GPA, US_PAGE_SIZE);
  if (!err.empty()) {
    fail(i, "vCPU " + std::to_string(i) + ": " + err);
    return false;
  }
  return true;
}

bool Vm::all_halted_locked() const {
  for (uint8_t h : halted_) if (!h) return false;
  return true;
}

void Vm::halt(uint32_t i, bool finished) {
  std::unique_lock<std::mutex> lk(mu_);
  if (finished) {
    finished_[i] = 1;
    pending_io_[i] = 0;
  }
  halted_[i] = 1;
  if (all_halted_locked() && state_ == State::running) {
    finish_locked();
    lk.unlock();
    notify_(Event::finished);
  }
}

void Vm::finish_locked() {
  size_t n = 0;
  out_.drain(mem_, &n);
  if (n) mark_host_dirty(US_CONTROL_GPA, US_PAGE_SIZE);
  final_ = guest::final_checksum(mem_);
  state_ = State::finished;
}

void Vm::take_output(std::vector<guest::Record>& out) {
  size_t n = 0;
  const std::string err = out_.drain(mem_, &n);
  if (n) mark_host_dirty(US_CONTROL_GPA, US_PAGE_SIZE);
  if (!err.empty()) throw std::runtime_error(err);
  out_.take(&out);
}

void Vm::set_clock(uint64_t v) {
  // SAFETY: the control page lies inside guest RAM.
  auto* ctl = reinterpret_cast<us_control*>(mem_ + US_CONTROL_GPA);
  __atomic_store_n(&ctl->clock, v, __ATOMIC_RELEASE);
  mark_host_dirty(US_CONTROL_GPA, US_PAGE_SIZE);
}

uint64_t Vm::take_dirty(uint64_t* bitmap) {
  const uint64_t words = (pages() + 63) / 64;
  if (cfg_.dirty == DirtyMode::bitmap) {
    kvm_dirty_log log{};
    log.slot = 0;
    log.dirty_bitmap = fetched_.data();
    // SAFETY: fetched_ holds ceil(pages/64) words, the slot's bitmap size.
    xioctl(vm_fd_, KVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG");
    if (manual_) {
      bool any = false;
      for (uint64_t w = 0; w < words && !any; ++w) any = fetched_[w] != 0;
      if (any) {
        kvm_clear_dirty_log clr{};
        clr.slot = 0;
        clr.first_page = 0;
        clr.num_pages = static_cast<uint32_t>(pages());
        clr.dirty_bitmap = fetched_.data();
        // SAFETY: clears (re-protects) exactly the pages set in fetched_, which we report.
        xioctl(vm_fd_, KVM_CLEAR_DIRTY_LOG, &clr, "KVM_CLEAR_DIRTY_LOG");
      }
    }
  } else if (cfg_.dirty == DirtyMode::none) {
    std::fill(fetched_.begin(), fetched_.end(), 0);
  } else {
    std::fill(fetched_.begin(), fetched_.end(), 0);
    for (auto& v : vcpus_) harvest_ring(*v);
    xioctl(vm_fd_, KVM_RESET_DIRTY_RINGS, 0ul, "KVM_RESET_DIRTY_RINGS");
  }
  uint64_t count = 0;
  std::lock_guard<std::mutex> lk(dirty_mu_);
  for (uint64_t w = 0; w < words; ++w) {
    const uint64_t b = fetched_[w] | host_dirty_[w];
    host_dirty_[w] = 0;
    bitmap[w] = b;
    count += static_cast<uint64_t>(__builtin_popcountll(b));
  }
  return count;
}

std::vector<VcpuState> Vm::save() const {
  std::vector<VcpuState> out;
  for (uint32_t i = 0; i < cfg_.vcpus; ++i) {
    out.push_back(vcpus_[i]->save(msr_indices_));
    out.back().finished = finished_[i] != 0;
  }
  return out;
}

std::string Vm::error() const {
  std::lock_guard<std::mutex> lk(mu_);
  return error_;
}

VmStats Vm::stats() const {
  VmStats s;
  s.exits = exits_.load();
  s.io_exits = io_exits_.load();
  s.doorbells = doorbells_.load();
  s.kicks = kicks_.load();
  s.ring_full = ring_full_.load();
  return s;
}

void Vm::close() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (state_ == State::closed && vm_fd_ < 0) return;
    stop_ = true;
    for (auto& v : vcpus_) __atomic_store_n(&v->run()->immediate_exit, 1, __ATOMIC_RELEASE);
    cv_.notify_all();
  }
  for (auto& t : threads_) pthread_kill(t.native_handle(), kick_signal());
  for (auto& t : threads_) t.join();
  threads_.clear();
  vcpus_.clear();
  if (vm_fd_ >= 0) ::close(vm_fd_);
  vm_fd_ = -1;
  state_ = State::closed;
}

}  // namespace vmm
