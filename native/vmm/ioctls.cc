// errno -> message + advice for the KVM ioctls (see ioctls.h).
#include "vmm/ioctls.h"

#include <sys/ioctl.h>

#include <cstring>

namespace vmm {

SysError::SysError(const std::string& syscall, int err, const std::string& advice)
    : std::runtime_error(syscall + " failed: " + std::strerror(err) +
                         (advice.empty() ? "" : " (" + advice + ")")),
      err_(err),
      syscall_(syscall) {}

std::string kvm_advice(int err) {
  switch (err) {
    case ENOENT:
      return "/dev/kvm is missing: load kvm_intel or kvm_amd, enable virtualization in the "
             "firmware, or enable nested virtualization on the host of this VM";
    case EACCES:
    case EPERM:
      return "no permission to open /dev/kvm: add the user to the `kvm` group or fix the "
             "device's mode";
    case ENODEV:
    case ENXIO:
      return "KVM is not usable: the CPU lacks VT-x/AMD-V or it is disabled (nested "
             "virtualization off?)";
    case EBUSY:
      return "another hypervisor holds the virtualization extensions";
    case ENOMEM:
      return "the kernel could not allocate memory for the VM";
    case EINVAL:
      return "the kernel rejected the request: KVM is too old or lacks a capability";
    default:
      return "";
  }
}

namespace {

// ioctl, retried on EINTR; a failure throws SysError with advice for the common KVM errors.
template <typename Arg>
int retrying_ioctl(int fd, unsigned long req, Arg arg, const char* name) {
  int rc;
  do {
    rc = ioctl(fd, req, arg);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) throw SysError(name, errno, errno == EINVAL ? "" : kvm_advice(errno));
  return rc;
}

}  // namespace

int xioctl(int fd, unsigned long req, void* arg, const char* name) {
  // SAFETY: `arg` points to the struct the ioctl number encodes, owned by the caller.
  return retrying_ioctl(fd, req, arg, name);
}

int xioctl(int fd, unsigned long req, unsigned long arg, const char* name) {
  // SAFETY: ioctls taking an integer argument do not dereference it.
  return retrying_ioctl(fd, req, arg, name);
}

}  // namespace vmm
