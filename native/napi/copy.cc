// N-API bindings for the copy family: copy_gather (listed pages -> one contiguous buffer) and
// copy_scatter (its inverse).
//
// Every pfn is checked against the size of memory before a single byte moves, so a bad list
// changes nothing. Big batches are split across the worker pool; outputs far larger than the
// cache use streaming stores. New outputs are allocated 2 MiB-aligned when large, so the kernel
// can back them with huge pages and stream into aligned lines, and blocks of dead results are
// recycled.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/napi_util.h"
#include "kernels/dispatch.h"
#include "runtime/pool.h"

namespace {

// Batches from this size on may use more than one thread.
constexpr size_t kThreadMin = 4u << 20;
// Batches from this size on use streaming (non-temporal) stores: far past what the caches hold.
constexpr size_t kStreamMin = 8u << 20;

// Output blocks of dead gather results are kept (a few, up to kCacheMax bytes) and handed to
// the next gather of the same rounded size: a fresh block costs a page fault per page on first
// touch (very slow under nested virtualisation), a recycled one is already mapped. Every byte of
// a result is written by the gather, so old contents never show.
constexpr size_t kCacheMax = 64u << 20;
constexpr size_t kCacheBlocks = 4;
std::mutex g_cache_mu;
std::vector<std::pair<void*, size_t>> g_cache;
size_t g_cached = 0;

void* take_block(size_t bytes, size_t* alloc) {
  const size_t align = bytes >= (2u << 20) ? (2u << 20) : 64;
  *alloc = (bytes + align - 1) / align * align;
  {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    for (size_t i = 0; i < g_cache.size(); i++) {
      if (g_cache[i].second == *alloc) {
        void* p = g_cache[i].first;
        g_cached -= *alloc;
        g_cache.erase(g_cache.begin() + static_cast<std::ptrdiff_t>(i));
        return p;
      }
    }
  }
  return std::aligned_alloc(align, *alloc);
}

void give_block(void* p, size_t alloc) {
  {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    if (g_cache.size() < kCacheBlocks && g_cached + alloc <= kCacheMax) {
      g_cache.emplace_back(p, alloc);
      g_cached += alloc;
      return;
    }
  }
  std::free(p);
}

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

bool overlaps(const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  if (alen == 0 || blen == 0) return false;
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a0 < b0 + blen && b0 < a0 + alen;
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
    if (overlaps(out.data, bytes, mem.data, mem.length)) napi_util::throw_range(env, "`out` must not overlap `memory`");
    dst = out.data;
  } else if (bytes == 0) {
    return Napi::Uint8Array::New(env, 0);
  } else {
    size_t alloc = 0;
    dst = static_cast<uint8_t*>(take_block(bytes, &alloc));
    if (dst == nullptr) throw Napi::Error::New(env, "gatherPages: out of memory for " + std::to_string(bytes) + " bytes");
    Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(alloc));
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, dst, bytes, [alloc](Napi::Env e, void* p) {
      Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(alloc));
      give_block(p, alloc);
    });
    result = Napi::Uint8Array::New(env, bytes, ab, 0);
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
  if (overlaps(pages.data, pages.length, mem.data, mem.length)) {
    napi_util::throw_range(env, "`pages` must not overlap `memory`");
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
