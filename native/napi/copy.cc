// N-API bindings for the copy family: copy_gather (listed pages -> one contiguous buffer) and
// copy_scatter (its inverse).
//
// Every pfn is checked against the size of memory before a single byte moves, so a bad list
// changes nothing. Big batches are split across the worker pool; outputs far larger than the
// cache use streaming stores.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/napi_util.h"
#include "kernels/dispatch.h"
#include "runtime/pool.h"

namespace {

// Batches from this size on may use more than one thread.
constexpr size_t kThreadMin = 4u << 20;
// Batches from this size on use streaming (non-temporal) stores: far past what the caches hold.
constexpr size_t kStreamMin = 8u << 20;

void check_pfns(Napi::Env env, const uint32_t* pfns, size_t n, const napi_util::Bytes& mem, size_t ps) {
  const uint64_t pages = mem.length / ps;
  for (size_t i = 0; i < n; i++) {
    if (pfns[i] >= pages) {
      napi_util::throw_range(env, "`pfns[" + std::to_string(i) + "]` is " + std::to_string(pfns[i]) +
                                      ", past the end of `memory` (" + std::to_string(pages) + " pages of " +
                                      std::to_string(ps) + " bytes)");
    }
  }
}

unsigned thread_count(const Napi::Value& v, size_t bytes) {
  const unsigned t = static_cast<unsigned>(napi_util::uint(v, "threads", 256));
  if (t == 0) napi_util::throw_range(v.Env(), "`threads` must be an integer from 1 to 256, got 0");
  return bytes >= kThreadMin ? t : 1;
}

// copy_gather(memory, pfns, pageSize, out | undefined, threads): Uint8Array | undefined
Napi::Value Gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const napi_util::Bytes mem = napi_util::u8(info[0], "memory");
  size_t n = 0;
  const uint32_t* pfns = napi_util::u32(info[1], "pfns", &n);
  const size_t ps = napi_util::page_size(info[2]);
  const size_t bytes = n * ps;
  const unsigned threads = thread_count(info[4], bytes);
  check_pfns(env, pfns, n, mem, ps);

  uint8_t* dst = nullptr;
  Napi::Value result = env.Undefined();
  if (!info[3].IsUndefined() && !info[3].IsNull()) {
    const napi_util::Bytes out = napi_util::u8(info[3], "out");
    if (out.length < bytes) {
      napi_util::throw_range(env, "`out` must hold at least `pfns`.length * `pageSize` = " + std::to_string(bytes) +
                                      " bytes, got " + std::to_string(out.length));
    }
    if (napi_util::overlaps(out.data, bytes, mem.data, mem.length)) napi_util::throw_range(env, "`out` must not overlap `memory`");
    // Writing into the pfn list would change pfns after they were checked.
    if (napi_util::overlaps(out.data, bytes, reinterpret_cast<const uint8_t*>(pfns), n * 4)) {
      napi_util::throw_range(env, "`out` must not overlap `pfns`");
    }
    dst = out.data;
  } else if (bytes == 0) {
    return Napi::Uint8Array::New(env, 0);
  } else {
    // A Node Buffer: V8-managed and uninitialised (every byte is written below), the cheapest
    // fresh memory there is; its first touch still costs a page fault per page.
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, bytes);
    dst = buf.Data();
    result = buf;
  }

  const kernels::copy::Ops& ops = *kernels::active().copy;
  const bool stream = bytes >= kStreamMin;
  if (threads > 1) {
    runtime::parallel_for(n, threads, [&](size_t b, size_t e) {
      // SAFETY: every pfn was checked; dst holds n pages; chunks write disjoint pages of dst.
      ops.gather(dst + b * ps, mem.data, pfns + b, e - b, ps, stream);
    });
  } else if (n) {
    ops.gather(dst, mem.data, pfns, n, ps, stream);
  }
  return result;
}

// copy_scatter(memory, pfns, pages, pageSize, threads): undefined
Napi::Value Scatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const napi_util::Bytes mem = napi_util::u8(info[0], "memory");
  size_t n = 0;
  const uint32_t* pfns = napi_util::u32(info[1], "pfns", &n);
  const napi_util::Bytes pages = napi_util::u8(info[2], "pages");
  const size_t ps = napi_util::page_size(info[3]);
  const size_t bytes = n * ps;
  unsigned threads = thread_count(info[4], bytes);
  if (pages.length != bytes) {
    napi_util::throw_range(env, "`pages` length must be `pfns`.length * `pageSize` = " + std::to_string(bytes) +
                                    ", got " + std::to_string(pages.length));
  }
  check_pfns(env, pfns, n, mem, ps);
  if (napi_util::overlaps(pages.data, pages.length, mem.data, mem.length)) {
    napi_util::throw_range(env, "`pages` must not overlap `memory`");
  }
  // Writing into the pfn list would change pfns after they were checked.
  if (napi_util::overlaps(mem.data, mem.length, reinterpret_cast<const uint8_t*>(pfns), n * 4)) {
    napi_util::throw_range(env, "`pfns` must not overlap `memory`");
  }
  // With repeated pfns the last copy wins, as in a sequential loop: only split strictly
  // ascending lists (no pfn can then be written by two threads).
  for (size_t i = 1; threads > 1 && i < n; i++) {
    if (pfns[i] <= pfns[i - 1]) threads = 1;
  }
  const kernels::copy::Ops& ops = *kernels::active().copy;
  const bool stream = bytes >= kStreamMin;
  if (threads > 1) {
    runtime::parallel_for(n, threads, [&](size_t b, size_t e) {
      // SAFETY: pfns checked and strictly ascending, so chunks write disjoint pages of memory.
      ops.scatter(mem.data, pages.data + b * ps, pfns + b, e - b, ps, stream);
    });
  } else if (n) {
    ops.scatter(mem.data, pages.data, pfns, n, ps, stream);
  }
  return env.Undefined();
}

}  // namespace

void InitCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copy_gather", Napi::Function::New(env, Gather, "copy_gather"));
  exports.Set("copy_scatter", Napi::Function::New(env, Scatter, "copy_scatter"));
}
