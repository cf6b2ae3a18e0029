// N-API bindings for the bitmap family: bitmap_scan (set-bit indices) and bitmap_count.
//
// bitmap_scan grows its output in native code while it scans (no separate counting pass) and
// hands the exact-sized result to JS without a copy; with a caller's `out` it writes there and
// returns the count. Arguments were validated by lib/kernels/bitmap.ts; the checks here are the
// backstop that keeps any input from reaching memory it does not own.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/napi_util.h"
#include "kernels/dispatch.h"

namespace {

// Bytes of bitmap handed to the kernel per call; the output holds 8 entries per byte of it.
constexpr size_t kChunk = 4096;
// Results up to this size are copied into a V8-owned buffer; bigger ones are adopted.
constexpr size_t kCopyLimit = 64 * 1024;

void check_base(Napi::Env env, uint64_t base, size_t nbytes) {
  if (base + 8 * static_cast<uint64_t>(nbytes) > (uint64_t{1} << 32)) {
    napi_util::throw_range(env, "`base` + 8 * `bitmap`.length must be at most 4294967296, got " +
                                    std::to_string(base + 8 * static_cast<uint64_t>(nbytes)));
  }
}

Napi::Value Uint32Result(Napi::Env env, uint32_t* buf, size_t n) {
  if (n * 4 <= kCopyLimit) {
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, n * 4);
    if (n) std::memcpy(ab.Data(), buf, n * 4);
    std::free(buf);
    return Napi::Uint32Array::New(env, n, ab, 0);
  }
  // realloc to the exact size usually shrinks in place (mremap for large blocks).
  void* exact = std::realloc(buf, n * 4);
  if (exact != nullptr) buf = static_cast<uint32_t*>(exact);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, buf, n * 4, [](Napi::Env, void* p) { std::free(p); });
  return Napi::Uint32Array::New(env, n, ab, 0);
}

// bitmap_scan(bitmap: Uint8Array, base: number, out?: Uint32Array): Uint32Array | number
Napi::Value Scan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const napi_util::Bytes bm = napi_util::u8(info[0], "bitmap");
  const uint64_t base = napi_util::uint(info[1], "base", 0xffffffffu);
  check_base(env, base, bm.length);
  const kernels::bitmap::Ops& ops = *kernels::active().bitmap;

  if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
    size_t cap = 0;
    uint32_t* out = napi_util::u32(info[2], "out", &cap);
    // All or nothing: when `out` might be too small, count first and refuse before writing.
    if (cap < 8 * bm.length) {
      const uint64_t total = ops.count(bm.data, bm.length);
      if (total > cap) {
        napi_util::throw_range(env, "`out` has room for " + std::to_string(cap) + " indices, the bitmap has " +
                                        std::to_string(total) + " set bits");
      }
    }
    size_t n = 0;
    uint32_t scratch[8 * 512];
    for (size_t off = 0; off < bm.length;) {
      const size_t c = std::min(kChunk, bm.length - off);
      if (cap - n >= 8 * c) {
        // SAFETY: out + n has room for the 8 * c entries the kernel may touch.
        n += ops.scan(bm.data + off, c, static_cast<uint32_t>(base + 8 * off), out + n);
        off += c;
      } else {
        const size_t s = std::min<size_t>(512, bm.length - off);
        const size_t k = ops.scan(bm.data + off, s, static_cast<uint32_t>(base + 8 * off), scratch);
        // SAFETY: the count above proved the total fits in `out`.
        std::memcpy(out + n, scratch, k * 4);
        n += k;
        off += s;
      }
    }
    return Napi::Number::New(env, static_cast<double>(n));
  }

  size_t cap = 8 * std::min(kChunk, bm.length) + 64;
  uint32_t* buf = static_cast<uint32_t*>(std::malloc(cap * 4));
  if (buf == nullptr) throw Napi::Error::New(env, "bitmap_scan: out of memory");
  size_t n = 0;
  for (size_t off = 0; off < bm.length; off += kChunk) {
    const size_t c = std::min(kChunk, bm.length - off);
    if (n + 8 * c > cap) {
      // Grow to the density seen so far (plus slack), at least doubling: few reallocations.
      const double seen = static_cast<double>(n) / static_cast<double>(off);
      const size_t projected = static_cast<size_t>(seen * static_cast<double>(bm.length) * 1.125) + 8 * kChunk;
      const size_t want = std::max({n + 8 * c, cap * 2, projected});
      void* grown = std::realloc(buf, want * 4);
      if (grown == nullptr) {
        std::free(buf);
        throw Napi::Error::New(env, "bitmap_scan: out of memory");
      }
      buf = static_cast<uint32_t*>(grown);
      cap = want;
    }
    // SAFETY: buf + n has room for 8 * c entries (checked above).
    n += ops.scan(bm.data + off, c, static_cast<uint32_t>(base + 8 * off), buf + n);
  }
  return Uint32Result(env, buf, n);
}

// bitmap_count(bitmap: Uint8Array): number
Napi::Value Count(const Napi::CallbackInfo& info) {
  const napi_util::Bytes bm = napi_util::u8(info[0], "bitmap");
  return Napi::Number::New(info.Env(), static_cast<double>(kernels::active().bitmap->count(bm.data, bm.length)));
}

}  // namespace

void InitBitmap(Napi::Env env, Napi::Object exports) {
  exports.Set("bitmap_scan", Napi::Function::New(env, Scan, "bitmap_scan"));
  exports.Set("bitmap_count", Napi::Function::New(env, Count, "bitmap_count"));
}
