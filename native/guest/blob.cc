// CPU state blob envelope. See blob.h.
#include "guest/blob.h"

#include "guest/control.h"
#include "guest/ring.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

namespace guest {

namespace {
uint16_t rd16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
uint32_t rd32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t rd64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
const char* type_name(uint16_t t) { return t == kBlobSim ? "sim" : t == kBlobKvm ? "kvm" : nullptr; }
}  // namespace

void put_u32(std::vector<uint8_t>* out, uint32_t v) {
  uint8_t b[4];
  std::memcpy(b, &v, 4);
  out->insert(out->end(), b, b + 4);
}

void put_u64(std::vector<uint8_t>* out, uint64_t v) {
  uint8_t b[8];
  std::memcpy(b, &v, 8);
  out->insert(out->end(), b, b + 8);
}

void put_record(std::vector<uint8_t>* out, const Record& r) {
  put_u64(out, r.seq);
  put_u32(out, r.len);
  put_u32(out, 0);
  out->insert(out->end(), r.data, r.data + US_RECORD_DATA);
  put_u64(out, r.chain);
}

bool Reader::record(Record* r) {
  r->seq = u64();
  r->len = u32();
  const uint32_t pad = u32();
  bytes(r->data, US_RECORD_DATA);
  r->chain = u64();
  if (pad != 0 || r->len > US_RECORD_DATA) ok = false;
  return ok;
}

uint32_t Reader::u32() {
  if (!ok || n - off < 4) { ok = false; return 0; }
  const uint32_t v = rd32(p + off);
  off += 4;
  return v;
}

uint64_t Reader::u64() {
  if (!ok || n - off < 8) { ok = false; return 0; }
  const uint64_t v = rd64(p + off);
  off += 8;
  return v;
}

void Reader::bytes(uint8_t* dst, size_t len) {
  if (!ok || n - off < len) { ok = false; std::memset(dst, 0, len); return; }
  std::memcpy(dst, p + off, len);
  off += len;
}

void blob_begin(std::vector<uint8_t>* out, BlobType type, uint32_t vcpus, uint64_t mem_size, uint32_t workload,
                const uint8_t* mem) {
  out->clear();
  put_u32(out, kBlobMagic);
  const uint32_t vt = kBlobVersion | static_cast<uint32_t>(type) << 16;
  put_u32(out, vt);
  put_u32(out, 0);
  put_u32(out, vcpus);
  put_u64(out, mem_size);
  put_u32(out, workload);
  put_u32(out, static_cast<uint32_t>(__atomic_load_n(&control(mem)->pause_id, __ATOMIC_ACQUIRE)));
}

void blob_finish(std::vector<uint8_t>* out) {
  const uint32_t len = static_cast<uint32_t>(out->size() + kBlobTrailer);
  std::memcpy(out->data() + 8, &len, 4);
  put_u64(out, XXH3_64bits(out->data(), out->size()));
}

std::string blob_check(const uint8_t* p, size_t n, BlobType want, BlobHeader* h, const char* name) {
  const std::string a = std::string("`") + name + "`";
  if (n < kBlobHeader + kBlobTrailer) {
    return a + " is not a CPU state blob: " + std::to_string(n) + " bytes is shorter than the 40-byte minimum";
  }
  if (rd32(p) != kBlobMagic) return a + " is not a CPU state blob (bad magic)";
  h->version = rd16(p + 4);
  h->type = rd16(p + 6);
  h->length = rd32(p + 8);
  h->vcpus = rd32(p + 12);
  h->mem_size = rd64(p + 16);
  h->workload = rd32(p + 24);
  if (h->version < 1 || h->version > kBlobVersion) {
    return a + " is a CPU state blob of version " + std::to_string(h->version) + "; this build reads versions 1 to " +
           std::to_string(kBlobVersion);
  }
  if (h->length != n) {
    return a + " is truncated or padded: its header says " + std::to_string(h->length) + " bytes, got " + std::to_string(n);
  }
  if (XXH3_64bits(p, n - kBlobTrailer) != rd64(p + n - kBlobTrailer)) return a + " is corrupt (checksum mismatch)";
  if (h->type != want) {
    const char* got = type_name(h->type);
    const char* wanted = type_name(want);
    if (!got) return a + " has an unknown CPU state type " + std::to_string(h->type);
    return a + " is a " + got + " CPU state blob; a " + wanted + " guest cannot restore it";
  }
  h->pause = rd32(p + 28);
  if (h->version == 1 && h->pause != 0) return a + " has a non-zero reserved field (bytes 28-31)";
  return "";
}

std::string check_pause(const BlobHeader& h, const uint8_t* mem) {
  if (h.version < 2) return "";
  const uint32_t image = static_cast<uint32_t>(control(mem)->pause_id);
  if (h.pause == image) return "";
  return "`cpu` does not match the memory image: it was saved at pause " + std::to_string(h.pause) +
         " of the guest and the image at pause " + std::to_string(image) + " (low 32 bits of the count)";
}

}  // namespace guest
