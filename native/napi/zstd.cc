// N-API: zstd compression for the checkpoint store, over Debian's libzstd (already linked into
// the addon). Both calls write into a caller-provided buffer, so a hostile frame that claims a
// huge content size can never make us allocate: it fails with "Destination buffer is too small".
#include <napi.h>
#include <zstd.h>

#include <string>

#include "common/napi_util.h"

namespace {

// One context per thread that calls us (the JS thread): contexts are reused across calls.
thread_local ZSTD_CCtx* g_cctx = nullptr;
thread_local ZSTD_DCtx* g_dctx = nullptr;

// zstd_compress(dst, src, level) -> bytes written
Napi::Value Compress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_util::Bytes dst = napi_util::u8(info[0], "dst");
  napi_util::Bytes src = napi_util::u8(info[1], "src");
  const int level = static_cast<int>(napi_util::uint(info[2], "level", 19));
  if (dst.length < ZSTD_compressBound(src.length)) {
    napi_util::throw_range(env, "`dst` must hold at least zstdBound(src.length) = " +
                                    std::to_string(ZSTD_compressBound(src.length)) + " bytes");
  }
  if (g_cctx == nullptr) g_cctx = ZSTD_createCCtx();
  if (g_cctx == nullptr) throw Napi::Error::New(env, "zstd: out of memory");
  // SAFETY: dst/src are live views of the stated lengths for the duration of this call.
  const size_t n = ZSTD_compressCCtx(g_cctx, dst.data, dst.length, src.data, src.length, level);
  if (ZSTD_isError(n)) throw Napi::Error::New(env, std::string("zstd: ") + ZSTD_getErrorName(n));
  return Napi::Number::New(env, static_cast<double>(n));
}

// zstd_decompress(dst, src) -> bytes written; throws RangeError naming `src` on a bad frame.
Napi::Value Decompress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_util::Bytes dst = napi_util::u8(info[0], "dst");
  napi_util::Bytes src = napi_util::u8(info[1], "src");
  if (g_dctx == nullptr) g_dctx = ZSTD_createDCtx();
  if (g_dctx == nullptr) throw Napi::Error::New(env, "zstd: out of memory");
  // SAFETY: zstd never writes past dst.length nor reads past src.length.
  const size_t n = ZSTD_decompressDCtx(g_dctx, dst.data, dst.length, src.data, src.length);
  if (ZSTD_isError(n)) {
    napi_util::throw_range(env, std::string("`src` is not a valid zstd frame for this buffer: ") +
                                    ZSTD_getErrorName(n));
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value Bound(const Napi::CallbackInfo& info) {
  const uint64_t n = napi_util::uint(info[0], "length", 1ull << 40);
  return Napi::Number::New(info.Env(), static_cast<double>(ZSTD_compressBound(n)));
}

}  // namespace

void InitZstd(Napi::Env env, Napi::Object exports) {
  exports.Set("zstd_compress", Napi::Function::New(env, Compress, "zstd_compress"));
  exports.Set("zstd_decompress", Napi::Function::New(env, Decompress, "zstd_decompress"));
  exports.Set("zstd_bound", Napi::Function::New(env, Bound, "zstd_bound"));
}
