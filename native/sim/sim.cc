// The simulated guest. See sim.h.
#include "sim/sim.h"

#include <cstdio>
#include <cstring>

#include "guest/blob.h"
#include "guest/control.h"
#include "workloads/workloads.h"

extern "C" int us_host_yield(void* host, uint32_t vcpu) { return static_cast<sim::SimGuest*>(host)->yield(vcpu); }
extern "C" int us_host_doorbell(void* host, uint32_t vcpu) { return static_cast<sim::SimGuest*>(host)->doorbell(vcpu); }

namespace sim {

SimGuest::SimGuest(std::shared_ptr<runtime::Mapping> mem, bool dirty_tracking, EventFn on_event)
    : mem_(std::move(mem)), base_(mem_->data()), size_(mem_->size()), on_event_(std::move(on_event)) {
  pages_ = size_ / US_PAGE_SIZE;
  vcpus_ = guest::control(base_)->vcpus;
  dirty_words_ = (pages_ + 63) / 64;
  dirty_.reset(new std::atomic<uint64_t>[dirty_words_]);
  for (size_t i = 0; i < dirty_words_; i++) dirty_[i].store(0, std::memory_order_relaxed);
  tracking_ = dirty_tracking;
  mark(US_CONTROL_GPA);  // the host just set it up (or it came from an image)
}

SimGuest::~SimGuest() { close(); }

void SimGuest::mark(uint64_t gpa) {
  const uint64_t pfn = gpa / US_PAGE_SIZE;
  dirty_[pfn / 64].fetch_or(1ull << (pfn % 64), std::memory_order_relaxed);
}

void SimGuest::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_ || stop_) return;
  started_ = true;
  threads_.reserve(vcpus_);
  for (uint32_t i = 0; i < vcpus_; i++) threads_.emplace_back(&SimGuest::run_vcpu, this, i);
}

void SimGuest::run_vcpu(uint32_t vcpu) {
  // std::atomic<uint64_t> is lock-free and layout-compatible with uint64_t on x86-64; the
  // workloads update it with __atomic builtins.
  static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t), "atomic word");
  us_env env;
  env.mem = base_;
  env.mem_size = size_;
  env.dirty = tracking_ ? reinterpret_cast<uint64_t*>(dirty_.get()) : nullptr;
  env.host = this;
  const int r = us_vcpu_run(&env, vcpu);

  Event ev;
  bool emit = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (r == US_RUN_DONE) done_++;
    // The last vCPU to finish drains the rest of the ring and writes the DONE status outside the
    // lock (below): it counts as exited only then, since pause() returns once every vCPU has
    // parked or exited and memory must be stable when it does.
    const bool finishing = done_ == vcpus_ && !failed_ && !finished_;
    if (!finishing) exited_++;
    if (r == US_RUN_PANIC || r == US_RUN_BAD) {
      const uint64_t code = guest::control(base_)->panic_code;
      lock.unlock();
      fail(r == US_RUN_PANIC ? guest::panic_message(vcpu, code) : "guest vCPU " + std::to_string(vcpu) + " could not start: its control page is not valid",
           r == US_RUN_PANIC ? code : 0);
      lock.lock();
    }
    parked_cv_.notify_all();
    if (finishing) {
      // The last vCPU: drain what is left of the ring, then the final checksum.
      lock.unlock();
      const std::string err = queue_.drain(base_);
      lock.lock();
      exited_++;
      parked_cv_.notify_all();
      if (!err.empty()) {
        lock.unlock();
        fail(err, 0);
        return;
      }
      us_control* c = guest::control(base_);
      c->status = US_STATUS_DONE;
      mark(US_CONTROL_GPA);
      finished_ = true;
      ev.kind = Event::kExit;
      ev.final = guest::final_checksum(base_);
      emit = true;
    }
  }
  if (emit && on_event_) on_event_(ev);
}

void SimGuest::fail(std::string message, uint64_t panic_code) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_ || finished_) return;
    failed_ = true;
    stop_.store(true);
  }
  resume_cv_.notify_all();
  parked_cv_.notify_all();
  Event ev;
  ev.kind = Event::kError;
  ev.message = std::move(message);
  ev.panic_code = panic_code;
  if (on_event_) on_event_(ev);
}

int SimGuest::yield(uint32_t vcpu) {
  if (!pause_req_.load(std::memory_order_acquire) && !stop_.load(std::memory_order_relaxed)) return 0;
  std::unique_lock<std::mutex> lock(mu_);
  if (stop_) return 1;
  if (!pause_req_) return 0;
  parked_++;
  parked_cv_.notify_all();
  resume_cv_.wait(lock, [&] { return !pause_req_.load() || stop_.load(); });
  parked_--;
  return stop_ ? 1 : 0;
}

int SimGuest::doorbell(uint32_t vcpu) {
  const std::string err = queue_.drain(base_);
  if (!err.empty()) {
    fail(err, 0);
    return 1;
  }
  mark(US_CONTROL_GPA);
  return stop_.load(std::memory_order_relaxed) ? 1 : 0;
}

void SimGuest::pause() {
  std::unique_lock<std::mutex> lock(mu_);
  const bool was_paused = pause_req_.exchange(true, std::memory_order_acq_rel);
  if (!started_) return;
  // Also after a failure (stop_ set): the other vCPUs leave at their next step boundary, and
  // only then is memory stable.
  parked_cv_.wait(lock, [&] { return parked_ + exited_ >= vcpus_; });
  if (!was_paused) {
    guest::count_pause(base_);
    mark(US_CONTROL_GPA);
  }
}

void SimGuest::resume() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pause_req_.store(false, std::memory_order_release);
  }
  resume_cv_.notify_all();
}

bool SimGuest::paused() const { return pause_req_.load(); }

void SimGuest::set_clock(uint64_t v) {
  us_control* c = guest::control(base_);
  __atomic_store_n(&c->clock, v, __ATOMIC_RELEASE);
  mark(US_CONTROL_GPA);
}

void SimGuest::take_dirty(uint8_t* bitmap, size_t bytes, std::vector<uint32_t>* pfns) {
  pfns->clear();
  std::memset(bitmap, 0, bytes);
  for (size_t w = 0; w < dirty_words_; w++) {
    uint64_t bits = tracking_ ? dirty_[w].exchange(0, std::memory_order_acq_rel) : ~0ull;
    if (w == dirty_words_ - 1 && pages_ % 64) bits &= (1ull << (pages_ % 64)) - 1;
    if (!bits) continue;
    for (size_t b = 0; b < 8 && w * 8 + b < bytes; b++) bitmap[w * 8 + b] = static_cast<uint8_t>(bits >> (8 * b));
    while (bits) {
      const int i = __builtin_ctzll(bits);
      pfns->push_back(static_cast<uint32_t>(w * 64 + i));
      bits &= bits - 1;
    }
  }
}

std::string SimGuest::take_output(std::vector<guest::Record>* out) {
  size_t n = 0;
  const std::string err = queue_.drain(base_, &n);
  if (!err.empty()) {
    fail(err, 0);
    return err;
  }
  if (n) mark(US_CONTROL_GPA);
  queue_.take(out);
  return "";
}

std::vector<uint8_t> SimGuest::save_cpu() { return encode_cpu(base_, size_, queue_.pending()); }

uint64_t SimGuest::steps_done() const {
  const us_control* c = guest::control(base_);
  uint64_t s = 0;
  for (uint32_t i = 0; i < vcpus_; i++) s += __atomic_load_n(&c->vcpu[i].step, __ATOMIC_RELAXED);
  return s;
}

uint64_t SimGuest::steps_total() const { return guest::control(base_)->steps * vcpus_; }

void SimGuest::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  resume_cv_.notify_all();
  parked_cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

std::vector<uint8_t> encode_cpu(const uint8_t* mem, size_t size, const std::vector<guest::Record>& pending) {
  const us_control* c = guest::control(mem);
  std::vector<uint8_t> out;
  guest::blob_begin(&out, guest::kBlobSim, c->vcpus, size, c->workload, mem);
  guest::put_u64(&out, pending.size());
  for (uint32_t i = 0; i < c->vcpus; i++) guest::put_u64(&out, c->vcpu[i].step);
  for (const auto& r : pending) guest::put_record(&out, r);
  guest::blob_finish(&out);
  return out;
}

std::string decode_cpu(const uint8_t* blob, size_t n, const uint8_t* mem, size_t size, std::vector<guest::Record>* pending) {
  guest::BlobHeader h;
  std::string err = guest::blob_check(blob, n, guest::kBlobSim, &h);
  if (!err.empty()) return err;
  const us_control* c = guest::control(mem);
  if (h.mem_size != size || h.vcpus != c->vcpus || h.workload != c->workload) {
    return "`cpu` does not match the memory image: it is for " + std::to_string(h.vcpus) + " vCPUs, " +
           std::to_string(h.mem_size) + " bytes, workload " + std::to_string(h.workload) + "; the image has " +
           std::to_string(c->vcpus) + " vCPUs, " + std::to_string(size) + " bytes, workload " + std::to_string(c->workload);
  }
  err = guest::check_pause(h, mem);
  if (!err.empty()) return err;
  guest::Reader rd{blob + guest::kBlobHeader, n - guest::kBlobHeader - guest::kBlobTrailer};
  const uint64_t count = rd.u64();
  for (uint32_t i = 0; i < h.vcpus && rd.ok; i++) {
    const uint64_t step = rd.u64();
    if (rd.ok && step != c->vcpu[i].step) {
      return "`cpu` does not match the memory image: vCPU " + std::to_string(i) + " is at step " + std::to_string(step) +
             " in the blob and " + std::to_string(c->vcpu[i].step) + " in the image";
    }
  }
  if (!rd.ok || count > (rd.n - rd.off) / guest::kBlobRecord || (rd.n - rd.off) != count * guest::kBlobRecord) {
    return "`cpu` has a malformed sim body";
  }
  pending->clear();
  pending->reserve(count);
  for (uint64_t i = 0; i < count; i++) {
    guest::Record r;
    if (!rd.record(&r)) return "`cpu` has a malformed sim body";
    pending->push_back(r);
  }
  return guest::check_pending(mem, *pending, "cpu");
}

}  // namespace sim
