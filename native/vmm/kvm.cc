// /dev/kvm: open once, cache what every VM needs (CPUID, MSR list, mmap size), and probe the
// features `understudy info` reports.
#include "vmm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <mutex>

#include "vmm/ioctls.h"

namespace vmm {

Kvm::Kvm() {
  fd_ = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd_ < 0) throw SysError("open(/dev/kvm)", errno, kvm_advice(errno));
  try {
    const int api = xioctl(fd_, KVM_GET_API_VERSION, 0ul, "KVM_GET_API_VERSION");
    if (api != KVM_API_VERSION) {
      throw std::runtime_error("KVM API version " + std::to_string(api) + ", need " +
                               std::to_string(KVM_API_VERSION));
    }
    vcpu_mmap_size_ = xioctl(fd_, KVM_GET_VCPU_MMAP_SIZE, 0ul, "KVM_GET_VCPU_MMAP_SIZE");
    // KVM_GET_SUPPORTED_CPUID wants a buffer large enough: grow until E2BIG stops.
    // (Some kernels answer EINVAL rather than E2BIG for a short buffer: retry on both.)
    for (uint32_t n = 64; n <= 256; n *= 2) {
      std::vector<uint8_t> buf(sizeof(CpuidHeader) + n * sizeof(kvm_cpuid_entry2));
      auto* c = reinterpret_cast<CpuidHeader*>(buf.data());
      c->nent = n;
      // SAFETY: buf holds the header plus n entries, as nent says.
      if (ioctl(fd_, kGetSupportedCpuid, c) == 0) {
        const auto* e = reinterpret_cast<const kvm_cpuid_entry2*>(buf.data() + sizeof(CpuidHeader));
        cpuid_.assign(e, e + std::min(c->nent, n));
        break;
      }
      if ((errno != E2BIG && errno != EINVAL) || n == 256) throw SysError("KVM_GET_SUPPORTED_CPUID", errno);
    }
    {
      MsrListHeader probe_list{0};
      // SAFETY: with nmsrs 0 the kernel writes only nmsrs (E2BIG) and no indices.
      ioctl(fd_, kGetMsrIndexList, &probe_list);
      const uint32_t n = probe_list.nmsrs < 4096 ? probe_list.nmsrs : 4096;
      std::vector<uint32_t> buf(1 + n);
      buf[0] = n;
      // SAFETY: buf has the header word plus room for n indices.
      if (n && ioctl(fd_, kGetMsrIndexList, buf.data()) == 0) msrs_.assign(buf.begin() + 1, buf.begin() + 1 + std::min(buf[0], n));
    }
  } catch (...) {
    close(fd_);
    throw;
  }
}

Kvm::~Kvm() {
  if (fd_ >= 0) close(fd_);
}

int Kvm::check(long cap) const {
  // SAFETY: KVM_CHECK_EXTENSION takes the capability number by value.
  const int r = ioctl(fd_, KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

std::shared_ptr<Kvm> kvm_instance() {
  static std::mutex mu;
  static std::shared_ptr<Kvm> inst;
  std::lock_guard<std::mutex> lock(mu);
  if (!inst) inst = std::make_shared<Kvm>();
  return inst;
}

Probe probe() {
  Probe p;
  std::shared_ptr<Kvm> k;
  try {
    k = kvm_instance();
  } catch (const std::exception& e) {
    p.reason = e.what();
    return p;
  }
  p.api_version = KVM_API_VERSION;
  // SAFETY: KVM_CREATE_VM takes the machine type by value (0 = default).
  int vm = ioctl(k->fd(), KVM_CREATE_VM, 0ul);
  if (vm < 0) {
    const int e = errno;
    p.reason = std::string("KVM_CREATE_VM failed: ") + std::strerror(e);
    const std::string adv = kvm_advice(e);
    if (!adv.empty()) p.reason += " (" + adv + ")";
    return p;
  }
  p.ok = true;
  // SAFETY: capability queries by value on the VM fd, which may differ from the system fd's.
  const int manual = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  p.manual_protect = manual > 0;
  if (!p.manual_protect) {
    p.manual_protect_reason = "kernel lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (Linux >= 5.8)";
  }
  // SAFETY: as above.
  const int ring = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
  p.dirty_ring = ring > 0;
  p.dirty_ring_max_bytes = ring > 0 ? static_cast<uint32_t>(ring) : 0;
  if (!p.dirty_ring) p.dirty_ring_reason = "kernel lacks KVM_CAP_DIRTY_LOG_RING (Linux >= 5.11, x86)";
  // SAFETY: as above.
  const int maxv = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
  p.max_vcpus = maxv > 0 ? maxv : 0;
  // SAFETY: as above.
  const int xs = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
  p.xsave_size = xs > 0 ? static_cast<uint32_t>(xs) : static_cast<uint32_t>(sizeof(XsaveArea));
  close(vm);
  return p;
}

}  // namespace vmm
