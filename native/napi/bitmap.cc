// N-API bindings for the bitmap family.
#include <napi.h>

void InitBitmap(Napi::Env env, Napi::Object exports) {}
