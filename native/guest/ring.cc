// Output ring drain and hash chain. See ring.h.
#include "guest/ring.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

#include "guest/control.h"

namespace guest {

uint64_t chain_next(uint64_t prev, const uint8_t* data, size_t len) {
  uint8_t buf[8 + US_RECORD_DATA];
  if (len > US_RECORD_DATA) len = US_RECORD_DATA;
  std::memcpy(buf, &prev, 8);  // x86-64: little-endian
  std::memcpy(buf + 8, data, len);
  return XXH3_64bits(buf, 8 + len);
}

std::string OutputQueue::drain(uint8_t* mem, size_t* drained) {
  std::lock_guard<std::mutex> lock(mu_);
  if (drained) *drained = 0;
  us_control* c = control(mem);
  const uint64_t head = __atomic_load_n(&c->ring_head, __ATOMIC_ACQUIRE);
  const uint64_t tail = c->ring_tail;
  if (head == tail) return "";
  if (head < tail || head - tail > US_RING_RECORDS) {
    return "guest output ring is corrupt: head " + std::to_string(head) + ", tail " + std::to_string(tail);
  }
  // SAFETY: the ring lies at US_RING_GPA..+64 KiB, inside every guest mapping (>= 8 MiB).
  const us_record* ring = reinterpret_cast<const us_record*>(mem + US_RING_GPA);
  uint64_t chain = c->out_chain;
  const size_t first = pending_.size();
  pending_.reserve(first + (head - tail));
  for (uint64_t p = tail; p < head; p++) {
    Record r;
    // One copy out of guest memory, then only the copy is looked at (the guest may be running).
    us_record raw;
    std::memcpy(&raw, &ring[p % US_RING_RECORDS], sizeof raw);
    if (raw.seq != p || raw.len > US_RECORD_DATA) {
      pending_.resize(first);
      return "guest output ring is corrupt: record at position " + std::to_string(p) + " has seq " +
             std::to_string(raw.seq) + " and length " + std::to_string(raw.len);
    }
    r.seq = p;
    r.len = raw.len;
    std::memcpy(r.data, raw.data, raw.len);
    chain = chain_next(chain, r.data, r.len);
    r.chain = chain;
    pending_.push_back(r);
  }
  c->out_chain = chain;
  __atomic_store_n(&c->ring_tail, head, __ATOMIC_RELEASE);
  if (drained) *drained = head - tail;
  return "";
}

void OutputQueue::take(std::vector<Record>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (out->empty()) {
    out->swap(pending_);
  } else {
    out->insert(out->end(), pending_.begin(), pending_.end());
  }
  pending_.clear();
}

std::vector<Record> OutputQueue::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

void OutputQueue::set_pending(std::vector<Record> records) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_ = std::move(records);
}

size_t OutputQueue::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

std::string check_pending(const uint8_t* mem, const std::vector<Record>& records, const char* name) {
  if (records.empty()) return "";
  const us_control* c = control(mem);
  const std::string n = std::string("`") + name + "`";
  const uint64_t tail = c->ring_tail;
  if (records.size() > tail || records.back().seq != tail - 1) {
    return n + " does not match the memory image: its undelivered records end at seq " +
           std::to_string(records.back().seq) + " but the image has drained up to " + std::to_string(tail);
  }
  for (size_t i = 0; i < records.size(); i++) {
    const Record& r = records[i];
    if (r.len > US_RECORD_DATA || (i > 0 && r.seq != records[i - 1].seq + 1) ||
        (i > 0 && r.chain != chain_next(records[i - 1].chain, r.data, r.len))) {
      return n + " has an inconsistent undelivered record at seq " + std::to_string(r.seq);
    }
  }
  if (records.back().chain != c->out_chain) {
    return n + " does not match the memory image: the hash chain of its last undelivered record differs from the image's";
  }
  return "";
}

}  // namespace guest
