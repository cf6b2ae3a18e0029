// CPU state blob encode/decode for the KVM guest (layout in docs/FORMAT.md "KVM guest CPU state blob"). All integers
// little-endian; the kernel structs are copied raw (x86-64 KVM UAPI, a stable ABI).
#include "vmm/cpu_blob.h"

#include <cstring>

#include "guest/blob.h"
#include "guest/control.h"

namespace vmm {
namespace cpu_blob {

namespace {

constexpr size_t kFixed = sizeof(kvm_regs) + sizeof(kvm_sregs) + sizeof(kvm_xcrs) + sizeof(kvm_vcpu_events);

template <typename T>
void put_raw(std::vector<uint8_t>& out, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

}  // namespace

std::vector<uint8_t> encode(const std::vector<VcpuState>& vcpus, const uint8_t* mem, uint64_t memory_bytes,
                            const std::vector<guest::Record>& pending) {
  std::vector<uint8_t> out;
  guest::blob_begin(&out, guest::kBlobKvm, static_cast<uint32_t>(vcpus.size()), memory_bytes,
                    guest::control(mem)->workload, mem);
  for (size_t i = 0; i < vcpus.size(); ++i) {
    const VcpuState& s = vcpus[i];
    const size_t rec = kRecordHeader + kFixed + s.xsave.size() + s.msrs.size() * sizeof(kvm_msr_entry);
    guest::put_u32(&out, static_cast<uint32_t>(rec));
    guest::put_u32(&out, static_cast<uint32_t>(i));
    guest::put_u32(&out, s.finished ? 1u : 0u);
    guest::put_u32(&out, static_cast<uint32_t>(s.xsave.size()));
    guest::put_u32(&out, static_cast<uint32_t>(s.msrs.size()));
    guest::put_u32(&out, 0);
    put_raw(out, s.regs);
    put_raw(out, s.sregs);
    put_raw(out, s.xcrs);
    put_raw(out, s.events);
    out.insert(out.end(), s.xsave.begin(), s.xsave.end());
    for (const auto& m : s.msrs) put_raw(out, m);
  }
  guest::put_u32(&out, static_cast<uint32_t>(pending.size()));
  for (const guest::Record& r : pending) guest::put_record(&out, r);
  guest::blob_finish(&out);
  return out;
}

Parsed decode(const uint8_t* p, size_t len) {
  guest::BlobHeader h;
  const std::string err = guest::blob_check(p, len, guest::kBlobKvm, &h, "cpu");
  if (!err.empty()) throw BadBlob(err);
  if (h.vcpus < 1 || h.vcpus > US_MAX_VCPUS) {
    throw BadBlob("`cpu` holds " + std::to_string(h.vcpus) + " vCPUs; 1 to " + std::to_string(US_MAX_VCPUS) +
                  " are allowed");
  }
  Parsed out;
  out.header = h;
  out.memory_bytes = h.mem_size;
  out.workload = h.workload;
  const size_t end = len - guest::kBlobTrailer;
  size_t off = guest::kBlobHeader;
  for (uint32_t i = 0; i < h.vcpus; ++i) {
    const std::string bad = "`cpu` vCPU record " + std::to_string(i) + " is malformed";
    if (end - off < kRecordHeader) throw BadBlob(bad + " (truncated)");
    guest::Reader r{p + off, kRecordHeader};
    const uint32_t rec = r.u32();
    const uint32_t index = r.u32();
    const uint32_t finished = r.u32();
    const uint32_t xsave = r.u32();
    const uint32_t nmsrs = r.u32();
    if (index != i || finished > 1 || xsave < 512 || xsave > (1u << 20) || nmsrs > 1024) throw BadBlob(bad);
    const uint64_t want = kRecordHeader + kFixed + uint64_t(xsave) + uint64_t(nmsrs) * sizeof(kvm_msr_entry);
    if (rec != want || rec > end - off) throw BadBlob(bad + " (length)");
    // SAFETY: off + rec <= end (checked above); each copy below stays inside the record.
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
  guest::Reader r{p + off, end - off};
  const uint32_t count = r.u32();
  // The blob's own length bounds the count (records the guest made but the host had not taken
  // yet: any number, not only a ring's worth).
  if (!r.ok || uint64_t(count) * guest::kBlobRecord != end - off - 4) {
    throw BadBlob("`cpu` has a malformed list of pending output records");
  }
  for (uint32_t k = 0; k < count; ++k) {
    guest::Record rec;
    if (!r.record(&rec)) throw BadBlob("`cpu` pending output record " + std::to_string(k) + " is malformed");
    out.pending.push_back(rec);
  }
  return out;
}

}  // namespace cpu_blob
}  // namespace vmm
