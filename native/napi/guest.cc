// N-API bindings for the guest family.
#include <napi.h>

void InitGuest(Napi::Env env, Napi::Object exports) {}
