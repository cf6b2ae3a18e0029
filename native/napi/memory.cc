// N-API bindings for the memory family.
#include <napi.h>

void InitMemory(Napi::Env env, Napi::Object exports) {}
