// The host side of the guest's output ring (layout in workloads/abi.h), shared by the sim and
// the KVM VMM: drain records from tail to head, validate each (a corrupt ring is a guest error,
// never a crash), extend the hash chain, and queue them until the JS side takes them.
//
// chain(record) = XXH3-64 (seed 0) of (previous chain as 8 bytes little-endian, 0 before the
// first record) followed by the record's `len` data bytes. The chain of the last drained record
// is written to control->out_chain (and ring_tail advanced), so a memory image carries it and a
// restored guest goes on with the same chain.
//
// Thread safety: drain() may run on a vCPU thread (doorbell) while the JS thread calls drain()
// and take(); one mutex serialises them. The guest only produces (head), the host only consumes
// (tail): single-producer single-consumer, no lock shared with the guest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "workloads/abi.h"

namespace guest {

struct Record {
  uint64_t seq = 0;
  uint32_t len = 0;
  uint8_t data[US_RECORD_DATA] = {};
  uint64_t chain = 0;
};

// XXH3-64 of prev (8 bytes LE) followed by data[0..len).
uint64_t chain_next(uint64_t prev, const uint8_t* data, size_t len);

class OutputQueue {
 public:
  // Drains every published record of the ring in guest memory `mem` into the pending list and
  // updates ring_tail and out_chain in the control page. Returns "" or an error message (the
  // ring is left as it was). *drained (optional) gets the number of records taken.
  std::string drain(uint8_t* mem, size_t* drained = nullptr);
  // Moves the pending records to *out (appending).
  void take(std::vector<Record>* out);
  // A copy of the pending records (for a CPU blob) and their replacement (restore).
  std::vector<Record> pending() const;
  void set_pending(std::vector<Record> records);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::vector<Record> pending_;
};

// Checks that `records` (from a CPU blob) are the undelivered tail of the history that the
// control page of `mem` has drained: consecutive seqs ending at ring_tail - 1, each chain
// consistent with the next, the last equal to out_chain. Returns "" or a message.
std::string check_pending(const uint8_t* mem, const std::vector<Record>& records, const char* name);

}  // namespace guest
