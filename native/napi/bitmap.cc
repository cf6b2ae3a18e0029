// N-API bindings for the bitmap family: bitmap_scan (set-bit indices) and bitmap_count.
//
// bitmap_scan needs no counting pass on sparse bitmaps (indices collect in a warm per-thread
// buffer, then one small copy into the exact-sized result); on dense ones it counts the rest at
// memory speed and writes straight into the result, so it is bounded by writing the output. With
// a caller's `out` it writes there and returns the count. Arguments were validated by lib/kernels/bitmap.ts; the checks here are the
// backstop that keeps any input from reaching memory it does not own.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <cstring>
#include <string>

#include "common/napi_util.h"
#include "kernels/dispatch.h"

namespace {

// Bytes of bitmap handed to the kernel per call; the output holds 8 entries per byte of it.
constexpr size_t kChunk = 4096;
// While fewer indices than this have been found, they go to a per-thread scratch buffer that
// stays warm between calls (no allocation, no page faults); past it the bitmap is dense and the
// result is written straight into its final buffer.
constexpr size_t kSparseMax = 64 * 1024;

void check_base(Napi::Env env, uint64_t base, size_t nbytes) {
  if (base + 8 * static_cast<uint64_t>(nbytes) > (uint64_t{1} << 32)) {
    napi_util::throw_range(env, "`base` + 8 * `bitmap`.length must be at most 4294967296, got " +
                                    std::to_string(base + 8 * static_cast<uint64_t>(nbytes)));
  }
}

uint32_t* scratch() {
  thread_local std::unique_ptr<uint32_t[]> buf(new uint32_t[kSparseMax + 8 * kChunk]);
  return buf.get();
}

// Scans bits[0, nbytes) into out[0, cap), which is known to be large enough for every set bit.
// Kernels may store scratch values past the last index (see Ops::scan), so the last stretch,
// where `out` lacks that slack, goes through a small stack buffer.
size_t scan_exact(const kernels::bitmap::Ops& ops, const uint8_t* bits, size_t nbytes, uint64_t base,
                  uint32_t* out, size_t cap) {
  size_t n = 0;
  uint32_t piece[8 * 512];
  for (size_t off = 0; off < nbytes;) {
    const size_t c = std::min(kChunk, nbytes - off);
    if (cap - n >= 8 * c) {
      // SAFETY: out + n has room for the 8 * c entries the kernel may touch.
      n += ops.scan(bits + off, c, static_cast<uint32_t>(base + 8 * off), out + n);
      off += c;
    } else {
      const size_t s = std::min<size_t>(512, nbytes - off);
      const size_t k = ops.scan(bits + off, s, static_cast<uint32_t>(base + 8 * off), piece);
      // SAFETY: the caller proved that every set bit fits in out[0, cap).
      std::memcpy(out + n, piece, k * 4);
      n += k;
      off += s;
    }
  }
  return n;
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
    // Writing indices into the bitmap being scanned would change its count mid-scan.
    const uintptr_t o0 = reinterpret_cast<uintptr_t>(out), b0 = reinterpret_cast<uintptr_t>(bm.data);
    if (cap != 0 && bm.length != 0 && o0 < b0 + bm.length && b0 < o0 + cap * 4) {
      napi_util::throw_range(env, "`out` must not overlap `bitmap`");
    }
    // All or nothing: when `out` might be too small, count first and refuse before writing.
    if (cap < 8 * bm.length) {
      const uint64_t total = ops.count(bm.data, bm.length);
      if (total > cap) {
        napi_util::throw_range(env, "`out` has room for " + std::to_string(cap) + " indices, the bitmap has " +
                                        std::to_string(total) + " set bits");
      }
    }
    return Napi::Number::New(env, static_cast<double>(scan_exact(ops, bm.data, bm.length, base, out, cap)));
  }

  // Sparse (the common case): one pass into the warm scratch buffer, then one small copy.
  uint32_t* s = scratch();
  size_t n = 0, off = 0;
  while (off < bm.length && n <= kSparseMax) {
    const size_t c = std::min(kChunk, bm.length - off);
    // SAFETY: n <= kSparseMax, and scratch holds kSparseMax + 8 * kChunk entries.
    n += ops.scan(bm.data + off, c, static_cast<uint32_t>(base + 8 * off), s + n);
    off += c;
  }
  // Dense: count what is left (one pass at memory speed, far cheaper than the output), then
  // write the rest straight into the exact-sized result.
  const size_t rest = off < bm.length ? static_cast<size_t>(ops.count(bm.data + off, bm.length - off)) : 0;
  const size_t total = n + rest;
  if (rest == 0) {
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, total * 4);
    if (n) std::memcpy(ab.Data(), s, n * 4);
    return Napi::Uint32Array::New(env, total, ab, 0);
  }
  // Dense results are big: take uninitialised memory (a Node Buffer's, never pooled at this size)
  // rather than a zero-filled ArrayBuffer, since every entry is written below.
  Napi::Buffer<uint8_t> mem = Napi::Buffer<uint8_t>::New(env, total * 4);
  if (mem.ByteOffset() % 4 != 0) throw Napi::Error::New(env, "bitmap_scan: misaligned result buffer");
  uint32_t* out = reinterpret_cast<uint32_t*>(mem.Data());
  std::memcpy(out, s, n * 4);
  scan_exact(ops, bm.data + off, bm.length - off, base + 8 * off, out + n, rest);
  return Napi::Uint32Array::New(env, total, mem.ArrayBuffer(), mem.ByteOffset());
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
