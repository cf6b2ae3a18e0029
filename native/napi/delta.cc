// N-API bindings for the delta family.
#include <napi.h>

void InitDelta(Napi::Env env, Napi::Object exports) {}
