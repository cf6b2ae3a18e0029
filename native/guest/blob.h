// The envelope of every CPU state blob (saveCpu()), shared by the sim and the KVM VMM so that
// each can recognise (and refuse) the other's. Layout (little-endian; docs/FORMAT.md "Guest formats"):
//
//   0      u32  magic 0x50435355 ("USCP")
//   4      u16  version (2; 1 is still read)
//   6      u16  type: 1 sim, 2 kvm
//   8      u32  length: total bytes including the trailer
//   12     u32  vcpus
//   16     u64  guest memory bytes
//   24     u32  workload (enum us_workload)
//   28     u32  pause: low 32 bits of the control page's pause_id when saved (version 1: 0)
//   32     ...  type-specific body
//   len-8  u64  XXH3-64 (seed 0) of bytes [0, len-8)
//
// Readers check, in this order: size >= 40, magic, version, length == size, checksum, type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "workloads/abi.h"

namespace guest {

constexpr uint32_t kBlobMagic = 0x50435355u;
constexpr uint16_t kBlobVersion = 2;
constexpr size_t kBlobHeader = 32;
constexpr size_t kBlobTrailer = 8;

enum BlobType : uint16_t { kBlobSim = 1, kBlobKvm = 2 };

struct BlobHeader {
  uint16_t version = 0;
  uint16_t type = 0;
  uint32_t length = 0;
  uint32_t vcpus = 0;
  uint64_t mem_size = 0;
  uint32_t workload = 0;
  uint32_t pause = 0;  // version 2: the pause the blob was saved at (low 32 bits of pause_id)
};

// Starts a blob in *out (cleared): the header with length 0.
// `mem` is the guest memory the state belongs to: its control page's pause_id goes in the header.
void blob_begin(std::vector<uint8_t>* out, BlobType type, uint32_t vcpus, uint64_t mem_size, uint32_t workload,
                const uint8_t* mem);
// Fills in the length and appends the checksum.
void blob_finish(std::vector<uint8_t>* out);

struct Record;  // guest/ring.h

// Bytes of one pending output record in a blob: seq u64 | len u32 | 0 u32 | data | chain u64.
constexpr size_t kBlobRecord = 8 + 4 + 4 + US_RECORD_DATA + 8;

// Little-endian appenders and a bounds-checked reader for the body.
void put_u32(std::vector<uint8_t>* out, uint32_t v);
void put_u64(std::vector<uint8_t>* out, uint64_t v);
void put_record(std::vector<uint8_t>* out, const Record& r);
struct Reader {
  const uint8_t* p;
  size_t n;
  size_t off = 0;
  bool ok = true;
  uint32_t u32();
  uint64_t u64();
  void bytes(uint8_t* dst, size_t len);
  // One record as put_record writes it; false (and ok = false) if cut off or malformed.
  bool record(Record* r);
};

// Validates the envelope of `n` bytes at `p` as a blob of type `want`; returns "" (and fills *h)
// or an error message naming `name`.
std::string blob_check(const uint8_t* p, size_t n, BlobType want, BlobHeader* h, const char* name = "cpu");

// "" if a blob with header `h` was saved at the pause the memory image `mem` (control page
// readable) was taken at; else the reason. A version-1 blob names no pause and always passes.
std::string check_pause(const BlobHeader& h, const uint8_t* mem);

}  // namespace guest
