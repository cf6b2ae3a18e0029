// The addon's entry point: registers each family's exports, nothing else. Native exports are
// snake_case and internal; lib/ wraps them in the validated, camelCase public API.
#include <napi.h>

void InitCpu(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);
void InitBitmap(Napi::Env env, Napi::Object exports);
void InitCopy(Napi::Env env, Napi::Object exports);
void InitDelta(Napi::Env env, Napi::Object exports);
void InitHash(Napi::Env env, Napi::Object exports);
void InitGuest(Napi::Env env, Napi::Object exports);
void InitZstd(Napi::Env env, Napi::Object exports);

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitCpu(env, exports);
  InitMemory(env, exports);
  InitBitmap(env, exports);
  InitCopy(env, exports);
  InitDelta(env, exports);
  InitHash(env, exports);
  InitGuest(env, exports);
  InitZstd(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(understudy, Init)
