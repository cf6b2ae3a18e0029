// The micro-VM: one memory slot over the caller's guest RAM with dirty logging (manual-protect
// bitmap or per-vCPU dirty rings), 1..16 vCPUs each on its own native thread in 64-bit long mode,
// pause/resume by kicking the threads out of KVM_RUN (immediate_exit + a real-time signal), exit
// handling (doorbell, exit, panic, faults), and whole-VM CPU state save/load.
//
// Threads: the vCPU threads run KVM_RUN and handle exits; every public method is called from one
// controlling thread (the JS thread). Events (finished, error) go to a callback invoked on a vCPU
// thread, which must not block.
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "guest/ring.h"
#include "vmm/vcpu.h"
#include "workloads/abi.h"

namespace vmm {

class Kvm;

enum class DirtyMode { bitmap, ring, none };  // none: no dirty logging (benchmarks only)

struct VmConfig {
  uint32_t vcpus = 1;
  DirtyMode dirty = DirtyMode::bitmap;
  uint32_t ring_entries = 65536;  // per vCPU, power of two (ring mode)
};

struct VmStats {
  uint64_t exits = 0;         // all KVM_RUN returns
  uint64_t io_exits = 0;
  uint64_t doorbells = 0;
  uint64_t kicks = 0;         // returns caused by pause (EINTR)
  uint64_t ring_full = 0;
};

class Vm {
 public:
  enum class Event { finished, error };
  using Notify = std::function<void(Event)>;

  // `mem` (size bytes, page aligned) must stay mapped until close() returns.
  Vm(uint8_t* mem, uint64_t size, const VmConfig& cfg, Notify notify);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Writes GDT/IDT/TSS/page tables and the payload image, and puts every vCPU at its entry.
  void boot(const uint8_t* payload, size_t payload_len);
  // Loads saved vCPU state instead (memory already holds the image). states.size() == vcpus.
  void load(const std::vector<VcpuState>& states);

  void start();
  // Kicks every vCPU out of the guest and returns once all are parked. Returns nanoseconds.
  uint64_t pause();
  void resume();
  bool paused() const { return pause_requested_; }

  // Fetches and clears the dirty log; ORs in pages the host wrote. `bitmap` has
  // ceil(pages/64) words. Returns the number of dirty pages.
  uint64_t take_dirty(uint64_t* bitmap);

  // Drains the output ring (any time); appends records to `out`.
  void take_output(std::vector<guest::Record>& out);
  // Undelivered drained records (saved in the CPU blob) and their replacement on restore.
  std::vector<guest::Record> pending_output() const { return out_.pending(); }
  void set_pending_output(std::vector<guest::Record> r) { out_.set_pending(std::move(r)); }
  void set_clock(uint64_t v);

  std::vector<VcpuState> save() const;  // paused only

  void close();

  uint64_t pages() const { return size_ / US_PAGE_SIZE; }
  uint64_t size() const { return size_; }
  uint32_t vcpus() const { return cfg_.vcpus; }
  DirtyMode dirty_mode() const { return cfg_.dirty; }
  bool finished() const { return state_.load() == State::finished; }
  bool failed() const { return state_.load() == State::failed; }
  std::string error() const;
  // The workload's panic code (gpa | reason, as the control page holds it) if it panicked, else 0.
  uint64_t panic_code() const { return panic_code_.load(std::memory_order_relaxed); }
  uint64_t final_checksum() const { return final_; }
  VmStats stats() const;

 private:
  enum class State { created, running, finished, failed, closed };

  void thread_main(uint32_t i);
  // Handles one exit. Returns false when the thread should stop running the guest.
  bool handle_exit(uint32_t i);
  // A write to one of our ports (from OUT or an emulated ring-3 OUT). Same return as handle_exit.
  bool on_port(uint32_t i, uint16_t port, uint64_t value);
  // The #GP stub ran: if the fault was a ring-3 OUT, decode it, step the saved RIP past it.
  bool emulate_out(uint32_t i, uint16_t* port, uint32_t* value);
  void fail(uint32_t i, const std::string& msg);
  void finish_locked();
  bool all_halted_locked() const;
  // vCPU i stopped for good (`finished`: it completed its work); the last one finishes the run.
  void halt(uint32_t i, bool finished);
  // Drains the ring; a corrupt ring fails the guest (returns false).
  bool drain(uint32_t i);
  std::string fault_message(uint32_t i, uint32_t vector);
  void mark_host_dirty(uint64_t gpa, uint64_t len);
  void harvest_ring(Vcpu& v);

  uint8_t* mem_;
  std::atomic<uint64_t> panic_code_{0};
  uint64_t size_;
  VmConfig cfg_;
  Notify notify_;
  std::shared_ptr<Kvm> kvm_;
  int vm_fd_ = -1;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::vector<std::thread> threads_;
  std::vector<uint8_t> finished_;   // per vCPU: wrote US_PORT_EXIT
  std::vector<uint8_t> halted_;     // per vCPU: done for good
  std::vector<uint8_t> pending_io_;  // per vCPU: an I/O exit must be completed by KVM_RUN
  std::vector<uint32_t> msr_indices_;
  uint32_t xsave_size_ = 0;
  bool manual_ = false;  // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled

  mutable std::mutex mu_;
  std::condition_variable cv_;       // threads wait here while parked
  std::condition_variable parked_cv_;  // pause() waits here
  bool pause_requested_ = true;      // threads start parked until start()
  bool stop_ = false;
  std::atomic<uint32_t> parked_{0};  // changed under mu_, polled without it by pause()
  std::atomic<State> state_{State::created};
  std::string error_;
  uint64_t final_ = 0;

  guest::OutputQueue out_;

  std::mutex dirty_mu_;
  std::vector<uint64_t> host_dirty_;  // pages the host wrote / ring harvests
  std::vector<uint64_t> fetched_;     // KVM_GET_DIRTY_LOG scratch

  std::atomic<uint64_t> exits_{0}, io_exits_{0}, doorbells_{0}, kicks_{0}, ring_full_{0};
};

// Guest-physical layout of the VMM-private low memory [0, US_CONTROL_GPA). Each vCPU has its own
// TSS and ring-0 stack: two vCPUs faulting at once must not share an exception frame.
constexpr uint64_t kGdtGpa = 0x0;      // 5 segment descriptors + 16 TSS descriptors (0x128 bytes)
constexpr uint64_t kIdtGpa = 0x200;    // 32 gates x 16 bytes
constexpr uint64_t kStubsGpa = 0x400;  // 32 exception stubs x 16 bytes
constexpr uint64_t kTssGpa = 0x800;    // TSS of vCPU i at kTssGpa + i * kTssStride
constexpr uint64_t kTssStride = 0x80;
constexpr uint64_t kPml4Gpa = 0x1000;
constexpr uint64_t kPdptGpa = 0x2000;
constexpr uint64_t kPdGpa = 0x3000;    // up to 9 page directories (9 GiB)
constexpr uint64_t kFaultStacksGpa = 0xc000;  // ring-0 stack of vCPU i: 1 KiB, top at +(i+1) KiB
constexpr uint64_t kFaultStackSize = 0x400;
constexpr uint64_t kMaxMemory = (kFaultStacksGpa - kPdGpa) / US_PAGE_SIZE * (1ull << 30);  // 9 GiB
static_assert(kFaultStacksGpa + US_MAX_VCPUS * kFaultStackSize <= US_CONTROL_GPA, "fault stacks fit");
static_assert(kTssGpa + US_MAX_VCPUS * kTssStride <= kPml4Gpa, "TSSs fit");
constexpr uint16_t kFaultPort = 0x13;  // exception stubs write the vector here

}  // namespace vmm
