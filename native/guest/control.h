// Host-side guest code shared by the simulated guest and the KVM VMM: filling the control page
// of a fresh guest, validating the control page of a memory image before anything runs on it
// (a restored image is hostile input), and the final checksum of a finished run.
//
// Final checksum: XXH3-64 (seed 0) over, all little-endian,
//   u32 workload, u32 vcpus, u64 seed, u64 steps,
//   then for each vCPU i < vcpus: u64 vcpu[i].checksum, u64 vcpu[i].step,
//   then u64 ring_head (records emitted), u64 out_chain (chain of the last record),
// printed as 16 hex digits ("final <hex>"). The ring must be drained before it is computed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "workloads/abi.h"

namespace guest {

struct Config {
  uint32_t workload = 0;   // enum us_workload
  uint32_t vcpus = 1;
  uint32_t flags = 0;      // enum us_flags
  uint64_t seed = 0;
  uint64_t steps = 0;      // per vCPU
  uint64_t params[8] = {}; // requested (0 = default); the effective ones are stored
};

inline us_control* control(uint8_t* mem) {
  // SAFETY: every mapping a guest runs on is >= US_MIN_MEMORY, checked before this is used.
  return reinterpret_cast<us_control*>(mem + US_CONTROL_GPA);
}
inline const us_control* control(const uint8_t* mem) {
  return reinterpret_cast<const us_control*>(mem + US_CONTROL_GPA);
}

// Checks a config against a memory size; returns "" or a message naming the option.
std::string check_config(const Config& cfg, size_t mem_size);

// Fills the control page of fresh (all-zero) guest memory of `mem_size` bytes: magic, config,
// effective params, each vCPU's PRNG state. Call check_config first.
void setup_control(uint8_t* mem, size_t mem_size, const Config& cfg);

// Validates the control page of a memory image of `size` bytes (hostile input). Returns "" if it
// can be run, else a message starting with "`<name>`".
std::string check_control(const uint8_t* mem, size_t size, const char* name = "memoryImage");

// splitmix64-seeded xoshiro256** state for vCPU `vcpu`.
void seed_vcpu(uint64_t seed, uint32_t vcpu, uint64_t rng[4]);

// The final checksum (see the header comment).
uint64_t final_checksum(const uint8_t* mem);

// 16 lowercase hex digits.
std::string hex16(uint64_t v);

// The message of a workload panic on vCPU `vcpu` with the control page's panic_code (gpa | reason),
// the same for every backend: "guest panic on vCPU 0: memcheck found a torn page ... at gpa 0x...".
std::string panic_message(uint32_t vcpu, uint64_t code);

// True when every vCPU has finished its steps.
bool all_done(const uint8_t* mem);

// A running guest has just come to a stop (every vCPU parked): counts the pause in the control
// page (pause_id, which saveCpu() names: guest/blob.h check_pause). The caller marks the control
// page dirty, as for every host write.
void count_pause(uint8_t* mem);

const char* workload_name(uint32_t workload);

}  // namespace guest
