// N-API bindings for the KVM guest. Placeholder: the guest-kvm branch replaces this file with
// the VMM's bindings (InitGuestKvm is called by InitGuest in guest.cc).
#include <napi.h>

void InitGuestKvm(Napi::Env env, Napi::Object exports) {}
