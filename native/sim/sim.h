// The simulated guest: the workloads of native/workloads compiled into the addon and run on one
// native thread per vCPU over the same memfd guest memory a KVM guest would use, with software
// dirty tracking (the workloads' store helper sets a bit per page in an atomic bitmap).
//
// Pausing: pause() raises a flag that every vCPU checks at each step boundary (us_host_yield);
// it returns once every vCPU is parked there (or has finished). Since the workload's whole state
// is in guest memory at a step boundary, pausing never changes what the guest computes, and a
// memory image taken while paused plus save_cpu() is a complete checkpoint.
//
// Output: vCPU 0 writes records into the ring; the host drains it when the JS side asks
// (take_output) and, without stopping the guest, when the ring is full (doorbell, on the vCPU
// thread). Drained records wait in the OutputQueue until taken.
//
// Events (exit with the final checksum, error) are reported through `on_event`, called on a vCPU
// thread; the N-API layer forwards them to JS with a ThreadSafeFunction.
#pragma once

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
#include "runtime/memory.h"

namespace sim {

struct Event {
  enum Kind { kExit, kError } kind = kExit;
  uint64_t final = 0;        // kExit
  std::string message;       // kError
  uint64_t panic_code = 0;   // kError from a workload panic (else 0)
};

class SimGuest {
 public:
  using EventFn = std::function<void(const Event&)>;

  // `mem` holds a control page already set up (fresh) or validated (restore).
  SimGuest(std::shared_ptr<runtime::Mapping> mem, bool dirty_tracking, EventFn on_event);
  ~SimGuest();
  SimGuest(const SimGuest&) = delete;
  SimGuest& operator=(const SimGuest&) = delete;

  void start();
  void pause();
  void resume();
  bool paused() const;
  // Writes control->clock (the guest reads it at each step in nondeterministic mode).
  void set_clock(uint64_t v);
  // Fetch-and-clear of the dirty bitmap into `bitmap` (ceil(pages/8) bytes, bit i&7 of byte
  // i>>3) and the set bits' page indices into *pfns. Exact while paused.
  void take_dirty(uint8_t* bitmap, size_t bytes, std::vector<uint32_t>* pfns);
  // Drains the ring and moves every undelivered record to *out. Returns "" or a ring error.
  std::string take_output(std::vector<guest::Record>* out);
  // The CPU state blob (type sim). Call while paused or finished.
  std::vector<uint8_t> save_cpu();
  // Restores the undelivered records of a blob (checked against the image first).
  void set_pending(std::vector<guest::Record> records) { queue_.set_pending(std::move(records)); }
  void close();

  size_t pages() const { return pages_; }
  uint32_t vcpus() const { return vcpus_; }
  uint64_t steps_done() const;
  uint64_t steps_total() const;

  // Hooks called by the workloads (through us_host_yield / us_host_doorbell).
  int yield(uint32_t vcpu);
  int doorbell(uint32_t vcpu);

 private:
  void run_vcpu(uint32_t vcpu);
  void mark(uint64_t gpa);
  void fail(std::string message, uint64_t panic_code);

  std::shared_ptr<runtime::Mapping> mem_;
  uint8_t* base_;
  size_t size_;
  size_t pages_;
  uint32_t vcpus_;
  std::unique_ptr<std::atomic<uint64_t>[]> dirty_;
  size_t dirty_words_;
  bool tracking_;
  EventFn on_event_;
  guest::OutputQueue queue_;

  std::atomic<bool> pause_req_{false};
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::condition_variable parked_cv_;
  std::condition_variable resume_cv_;
  uint32_t parked_ = 0;
  uint32_t exited_ = 0;
  uint32_t done_ = 0;
  bool started_ = false;
  bool failed_ = false;
  bool finished_ = false;
  std::vector<std::thread> threads_;
};

// Serialises the sim CPU blob: envelope (guest/blob.h) with body
//   u64 pending count,
//   vcpus x u64 step (must equal the memory image's: both taken at the same pause),
//   pending x { u64 seq, u32 len, u32 0, u8 data[48], u64 chain }   (72 bytes each)
std::vector<uint8_t> encode_cpu(const uint8_t* mem, size_t size, const std::vector<guest::Record>& pending);
// Parses a sim CPU blob and checks it against the memory image `mem` (whose control page is
// already validated). Returns "" and fills *pending, or an error message naming `cpu`.
std::string decode_cpu(const uint8_t* blob, size_t n, const uint8_t* mem, size_t size, std::vector<guest::Record>* pending);

}  // namespace sim
