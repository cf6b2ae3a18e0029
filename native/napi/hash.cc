// N-API bindings for the hash family: hash_pages (XXH3-64 per page), hash_fingerprint (XXH3-128
// per page, canonical bytes), hash_zero (bitmap of all-zero pages) and hash_xxh3 (one XXH3-64 of a
// whole buffer). Large inputs are split across the worker pool by whole pages.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "common/napi_util.h"
#include "kernels/dispatch.h"
#include "runtime/pool.h"

namespace {

// Inputs from this many pages on may use more than one thread (the TS layer picks the count).
constexpr size_t kThreadMinPages = 64;

struct Pages {
  napi_util::Bytes data;
  size_t page_size;
  size_t count;
};

Pages pages_arg(const Napi::CallbackInfo& info) {
  Pages p;
  p.data = napi_util::u8(info[0], "data");
  p.page_size = napi_util::page_size(info[1]);
  if (p.data.length % p.page_size != 0) {
    napi_util::throw_range(info.Env(), "`data` length must be a multiple of `pageSize` (" + std::to_string(p.page_size) +
                                           "), got " + std::to_string(p.data.length));
  }
  p.count = p.data.length / p.page_size;
  return p;
}

unsigned thread_count(const Napi::Value& v, size_t pages) {
  const unsigned t = static_cast<unsigned>(napi_util::uint(v, "threads", 256));
  if (t == 0) napi_util::throw_range(v.Env(), "`threads` must be an integer from 1 to 256, got 0");
  return pages >= kThreadMinPages ? t : 1;
}

uint64_t seed_arg(const Napi::Value& v) {
  if (!v.IsBigInt()) napi_util::throw_type(v.Env(), "`seed` must be a bigint");
  bool lossless = false;
  const uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) napi_util::throw_range(v.Env(), "`seed` must be from 0 to 2^64 - 1");
  return s;
}

// hash_pages(data, pageSize, seed: bigint, threads): BigUint64Array
Napi::Value HashPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Pages p = pages_arg(info);
  const uint64_t seed = seed_arg(info[2]);
  const unsigned threads = thread_count(info[3], p.count);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, p.count * 8);
  uint64_t* out = static_cast<uint64_t*>(ab.Data());
  const kernels::hash::Ops& ops = *kernels::active().hash;
  if (threads > 1) {
    runtime::parallel_for(p.count, threads, [&](size_t b, size_t e) {
      // SAFETY: data holds count whole pages; chunks write disjoint entries of out.
      ops.hash64(p.data.data + b * p.page_size, e - b, p.page_size, seed, out + b);
    });
  } else if (p.count) {
    ops.hash64(p.data.data, p.count, p.page_size, seed, out);
  }
  return Napi::TypedArrayOf<uint64_t>::New(env, p.count, ab, 0, napi_biguint64_array);
}

// hash_fingerprint(data, pageSize, threads): Uint8Array (16 bytes per page)
Napi::Value Fingerprint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Pages p = pages_arg(info);
  const unsigned threads = thread_count(info[2], p.count);
  Napi::Uint8Array out = Napi::Uint8Array::New(env, p.count * 16);
  uint8_t* o = out.Data();
  const kernels::hash::Ops& ops = *kernels::active().hash;
  if (threads > 1) {
    runtime::parallel_for(p.count, threads, [&](size_t b, size_t e) {
      // SAFETY: as in HashPages, 16 bytes per page.
      ops.hash128(p.data.data + b * p.page_size, e - b, p.page_size, o + 16 * b);
    });
  } else if (p.count) {
    ops.hash128(p.data.data, p.count, p.page_size, o);
  }
  return out;
}

// hash_zero(data, pageSize, threads): Uint8Array bitmap, bit i = page i is all zero
Napi::Value ZeroPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Pages p = pages_arg(info);
  const unsigned threads = thread_count(info[2], p.count);
  Napi::Uint8Array out = Napi::Uint8Array::New(env, (p.count + 7) / 8);
  uint8_t* bm = out.Data();
  const kernels::hash::Ops& ops = *kernels::active().hash;
  const size_t groups = (p.count + 7) / 8;
  if (threads > 1) {
    runtime::parallel_for(groups, threads, [&](size_t b, size_t e) {
      // SAFETY: groups of 8 pages: each chunk owns whole bytes of the bitmap.
      const size_t first = 8 * b, last = std::min(8 * e, p.count);
      ops.zero(p.data.data, first, last - first, p.page_size, bm);
    });
  } else if (p.count) {
    ops.zero(p.data.data, 0, p.count, p.page_size, bm);
  }
  return out;
}

// hash_xxh3(data, seed: bigint): bigint
Napi::Value Xxh3(const Napi::CallbackInfo& info) {
  const napi_util::Bytes d = napi_util::u8(info[0], "data");
  const uint64_t seed = seed_arg(info[1]);
  return Napi::BigInt::New(info.Env(), kernels::active().hash->xxh3_64(d.data, d.length, seed));
}

}  // namespace

void InitHash(Napi::Env env, Napi::Object exports) {
  exports.Set("hash_pages", Napi::Function::New(env, HashPages, "hash_pages"));
  exports.Set("hash_fingerprint", Napi::Function::New(env, Fingerprint, "hash_fingerprint"));
  exports.Set("hash_zero", Napi::Function::New(env, ZeroPages, "hash_zero"));
  exports.Set("hash_xxh3", Napi::Function::New(env, Xxh3, "hash_xxh3"));
}
