// N-API bindings for the hash family.
#include <napi.h>

void InitHash(Napi::Env env, Napi::Object exports) {}
