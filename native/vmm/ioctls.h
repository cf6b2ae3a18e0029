// The KVM ioctl surface we use, in one place: thin wrappers that retry EINTR where that is safe
// and turn errno into an exception carrying the ioctl name, the errno and advice (kvmtool-style),
// so every failure the user sees says what to do about it.
#pragma once

#include <linux/kvm.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace vmm {

// The UAPI structs that end in a flexible array (__DECLARE_FLEX_ARRAY) get a different size and
// layout when compiled as C++ (an empty struct is 1 byte there), which changes both the ioctl
// numbers and the offset of the array. We use these C-layout headers and numbers instead.
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};  // followed by kvm_cpuid_entry2[nent]
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};  // followed by kvm_msr_entry[nmsrs]
struct MsrListHeader {
  uint32_t nmsrs;
};  // followed by uint32_t[nmsrs]
struct XsaveArea {
  uint32_t region[1024];
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8 && sizeof(MsrListHeader) == 4 &&
                  sizeof(XsaveArea) == 4096,
              "C layout of the KVM flexible-array structs");

constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveArea);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveArea);
constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveArea);

// A failed system call: what was attempted, the errno, and advice for the user.
class SysError : public std::runtime_error {
 public:
  SysError(const std::string& syscall, int err, const std::string& advice = "");
  int err() const { return err_; }
  const std::string& syscall() const { return syscall_; }

 private:
  int err_;
  std::string syscall_;
};

// Advice for errno values of open("/dev/kvm") and KVM_CREATE_VM (empty when none applies).
std::string kvm_advice(int err);

// ioctl that retries on EINTR (for calls that are not KVM_RUN). Returns the ioctl's result;
// throws SysError(name) on failure.
int xioctl(int fd, unsigned long req, void* arg, const char* name);
int xioctl(int fd, unsigned long req, unsigned long arg, const char* name);

}  // namespace vmm
