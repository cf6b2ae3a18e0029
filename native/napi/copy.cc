// N-API bindings for the copy family.
#include <napi.h>

void InitCopy(Napi::Env env, Napi::Object exports) {}
