// N-API bindings for the guest family: each backend registers its own exports.
#include <napi.h>

void InitGuestKvm(Napi::Env env, Napi::Object exports);

void InitGuest(Napi::Env env, Napi::Object exports) { InitGuestKvm(env, exports); }
