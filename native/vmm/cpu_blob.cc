// CPU state blob encode/decode (layout in cpu_blob.h and docs/FORMAT-kvm.md). All integers are
// little-endian; the kernel structs are copied raw (x86-64 KVM UAPI, a stable ABI).
#include "vmm/cpu_blob.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

namespace vmm {
namespace cpu_blob {

namespace {

constexpr char kType[4] = {'k', 'v', 'm', 0};

template <typename T>
void put(std::vector<uint8_t>& out, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

template <typename T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

constexpr size_t kFixed = sizeof(kvm_regs) + sizeof(kvm_sregs) + sizeof(kvm_xcrs) + sizeof(kvm_vcpu_events);

std::string printable(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n && p[i]; ++i) s += (p[i] >= 0x20 && p[i] < 0x7f) ? static_cast<char>(p[i]) : '?';
  return s;
}

}  // namespace

std::vector<uint8_t> encode(const std::vector<VcpuState>& vcpus, uint64_t memory_bytes) {
  std::vector<uint8_t> out;
  out.insert(out.end(), kMagic, kMagic + 8);
  put<uint32_t>(out, kVersion);
  out.insert(out.end(), kType, kType + 4);
  put<uint32_t>(out, static_cast<uint32_t>(vcpus.size()));
  put<uint32_t>(out, 0);  // flags
  put<uint64_t>(out, memory_bytes);
  const size_t total_at = out.size();
  put<uint64_t>(out, 0);  // total length, patched below
  put<uint64_t>(out, 0);  // reserved
  for (size_t i = 0; i < vcpus.size(); ++i) {
    const VcpuState& s = vcpus[i];
    const size_t rec = kRecordHeader + kFixed + s.xsave.size() + s.msrs.size() * sizeof(kvm_msr_entry);
    put<uint32_t>(out, static_cast<uint32_t>(rec));
    put<uint32_t>(out, static_cast<uint32_t>(i));
    put<uint32_t>(out, s.finished ? 1u : 0u);
    put<uint32_t>(out, static_cast<uint32_t>(s.xsave.size()));
    put<uint32_t>(out, static_cast<uint32_t>(s.msrs.size()));
    put<uint32_t>(out, 0);
    put(out, s.regs);
    put(out, s.sregs);
    put(out, s.xcrs);
    put(out, s.events);
    out.insert(out.end(), s.xsave.begin(), s.xsave.end());
    for (const auto& m : s.msrs) put(out, m);
  }
  const uint64_t total = out.size() + kTrailerSize;
  std::memcpy(out.data() + total_at, &total, 8);
  put<uint64_t>(out, XXH3_64bits(out.data(), out.size()));
  return out;
}

Parsed decode(const uint8_t* p, size_t len) {
  if (len < kHeaderSize + kTrailerSize) {
    throw BadBlob("`cpu` is truncated: got " + std::to_string(len) + " bytes, a CPU state blob has at least " +
                  std::to_string(kHeaderSize + kTrailerSize));
  }
  if (std::memcmp(p, kMagic, 8) != 0) throw BadBlob("`cpu` is not an understudy CPU state blob (bad magic)");
  const uint32_t version = get<uint32_t>(p + 8);
  if (version != kVersion) {
    throw BadBlob("`cpu` has format version " + std::to_string(version) + "; this build reads version " +
                  std::to_string(kVersion));
  }
  if (std::memcmp(p + 12, kType, 4) != 0) {
    throw BadBlob("`cpu` holds the state of a '" + printable(p + 12, 4) + "' guest, not 'kvm'");
  }
  const uint64_t total = get<uint64_t>(p + 32);
  if (total > len) {
    throw BadBlob("`cpu` is truncated: its header says " + std::to_string(total) + " bytes, got " +
                  std::to_string(len));
  }
  if (total < len) {
    throw BadBlob("`cpu` has " + std::to_string(len - total) + " bytes after the end its header gives (" +
                  std::to_string(total) + ")");
  }
  const uint64_t stored = get<uint64_t>(p + len - kTrailerSize);
  if (XXH3_64bits(p, len - kTrailerSize) != stored) {
    throw BadBlob("`cpu` checksum mismatch: the blob is corrupt");
  }
  const uint32_t n = get<uint32_t>(p + 16);
  if (n < 1 || n > US_MAX_VCPUS) {
    throw BadBlob("`cpu` holds " + std::to_string(n) + " vCPUs; 1 to " + std::to_string(US_MAX_VCPUS) +
                  " are allowed");
  }
  Parsed out;
  out.memory_bytes = get<uint64_t>(p + 24);
  size_t off = kHeaderSize;
  const size_t end = len - kTrailerSize;
  for (uint32_t i = 0; i < n; ++i) {
    const std::string bad = "`cpu` vCPU record " + std::to_string(i) + " is malformed";
    if (end - off < kRecordHeader) throw BadBlob(bad + " (truncated)");
    const uint32_t rec = get<uint32_t>(p + off);
    const uint32_t index = get<uint32_t>(p + off + 4);
    const uint32_t finished = get<uint32_t>(p + off + 8);
    const uint32_t xsave = get<uint32_t>(p + off + 12);
    const uint32_t nmsrs = get<uint32_t>(p + off + 16);
    if (index != i || finished > 1 || xsave < 512 || xsave > (1u << 20) || nmsrs > 1024) throw BadBlob(bad);
    const uint64_t want = kRecordHeader + kFixed + uint64_t(xsave) + uint64_t(nmsrs) * sizeof(kvm_msr_entry);
    if (rec != want || rec > end - off) throw BadBlob(bad + " (length)");
    const uint8_t* q = p + off + kRecordHeader;
    VcpuState s;
    s.finished = finished == 1;
    std::memcpy(&s.regs, q, sizeof s.regs);
    q += sizeof s.regs;
    std::memcpy(&s.sregs, q, sizeof s.sregs);
    q += sizeof s.sregs;
    std::memcpy(&s.xcrs, q, sizeof s.xcrs);
    q += sizeof s.xcrs;
    std::memcpy(&s.events, q, sizeof s.events);
    q += sizeof s.events;
    s.xsave.assign(q, q + xsave);
    q += xsave;
    s.msrs.resize(nmsrs);
    if (nmsrs) std::memcpy(s.msrs.data(), q, nmsrs * sizeof(kvm_msr_entry));
    out.vcpus.push_back(std::move(s));
    off += rec;
  }
  if (off != end) throw BadBlob("`cpu` has unexpected bytes after the last vCPU record");
  return out;
}

}  // namespace cpu_blob
}  // namespace vmm
