// Output ring drain for the KVM guest (see ring_drain.h).
#include "vmm/ring_drain.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

#include "vmm/vm.h"

namespace vmm {
namespace ring_drain {

size_t drain(us_control* ctl, const us_record* ring, std::vector<OutRecord>& out) {
  const uint64_t head = __atomic_load_n(&ctl->ring_head, __ATOMIC_ACQUIRE);
  uint64_t tail = ctl->ring_tail;
  if (head - tail > US_RING_RECORDS) tail = head - US_RING_RECORDS;  // hostile guest: bound it
  uint64_t chain = ctl->out_chain;
  size_t n = 0;
  for (; tail != head; ++tail, ++n) {
    OutRecord r;
    r.rec = ring[tail % US_RING_RECORDS];
    if (r.rec.len > US_RECORD_DATA) r.rec.len = US_RECORD_DATA;
    uint8_t buf[8 + US_RECORD_DATA];
    std::memcpy(buf, &chain, 8);
    std::memcpy(buf + 8, r.rec.data, r.rec.len);
    chain = XXH3_64bits(buf, 8 + r.rec.len);
    r.chain = chain;
    out.push_back(r);
  }
  if (n) {
    ctl->out_chain = chain;
    __atomic_store_n(&ctl->ring_tail, head, __ATOMIC_RELEASE);
  }
  return n;
}

uint64_t final_checksum(const us_control* ctl) {
  uint64_t buf[US_MAX_VCPUS + 1];
  const uint32_t n = ctl->vcpus <= US_MAX_VCPUS ? ctl->vcpus : US_MAX_VCPUS;
  for (uint32_t i = 0; i < n; ++i) buf[i] = ctl->vcpu[i].checksum;
  buf[n] = ctl->out_chain;
  return XXH3_64bits(buf, (n + 1) * 8);
}

}  // namespace ring_drain
}  // namespace vmm
