// N-API bindings for the delta family (internal, snake_case; lib/kernels/delta.ts is the public
// API and validates arguments first):
//
//   delta_encode(prev, next, compress) -> Uint8Array
//   delta_apply(target, delta)
//   pages_encode(shadow, pages, pfns, pageSize, threads, compress, entropy, ownCodes, stage?) -> Promise<Uint8Array>
//     (stage: bit 0 works on a copy of the shadow's pages, bit 1 on a copy of the pages)
//   pages_encode_sync(...same) -> Uint8Array
//   pages_apply(replica, frame, pageSize, threads)
//   pages_apply_undo(replica, frame, pageSize, threads, out?) -> { pfns, pages }
//   pages_apply_async(replica, frame, pageSize, threads, stage?) -> Promise<void>
//   frame_inspect(frame) -> { version, pageSize, count, pfns, bytes, payloadBytes }
//   bench_xor_compress(prev, next, pageSize, level) -> bytes   (benchmark baseline only)
//
// Batch calls run on the runtime worker pool inside an AsyncWorker: arguments are unwrapped and
// checked on the JS thread, buffers are held by reference while Execute() works on raw pointers
// (no N-API calls there), and failures come back through SetError as a rejected promise
// (RangeError for bad input).
#include <lz4.h>
#include <napi.h>
#include <zstd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "common/napi_util.h"
#include "kernels/copy/copy.h"
#include "kernels/delta/codec.h"
#include "kernels/delta/frame.h"
#include "kernels/dispatch.h"
#include "runtime/memory.h"
#include "runtime/pool.h"

namespace {

namespace kd = kernels::delta;
using napi_util::Bytes;

// Hands a malloc'd buffer to JS as a Uint8Array that frees it when collected.
Napi::Uint8Array adopt(Napi::Env env, uint8_t* data, size_t len) {
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data, len, [](Napi::Env, void* p) { std::free(p); });
  return Napi::Uint8Array::New(env, len, ab, 0);
}

// Hands an encode_pages frame to JS; when collected, its buffer goes back to the frame bin.
Napi::Uint8Array adopt_frame(Napi::Env env, const kd::Encoded& e) {
  const size_t cap = e.capacity;
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, e.data, e.length, [cap](Napi::Env, void* p) { kd::release_frame(static_cast<uint8_t*>(p), cap); });
  return Napi::Uint8Array::New(env, e.length, ab, 0);
}

// `threads`: undefined means every hardware thread; 0 is treated as 1.
unsigned threads_arg(const Napi::Value& v) {
  if (v.IsUndefined()) return runtime::hardware_threads();
  const uint64_t t = napi_util::uint(v, "threads", 256);
  return t == 0 ? 1u : static_cast<unsigned>(t);
}

Napi::Value DeltaEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes prev = napi_util::u8(info[0], "prev");
  Bytes next = napi_util::u8(info[1], "next");
  const bool compress = info[2].IsUndefined() ? true : info[2].ToBoolean().Value();
  if (prev.length != next.length) {
    napi_util::throw_range(env, "`next` must have the length of `prev` (" + std::to_string(prev.length) +
                                    " bytes), got " + std::to_string(next.length));
  }
  if (next.length > kd::kMaxDeltaLength) {
    napi_util::throw_range(env, "`next` must be at most 4294967295 bytes, got " + std::to_string(next.length));
  }
  const size_t cap = kd::delta_bound(next.length);
  auto* out = static_cast<uint8_t*>(std::malloc(cap));
  if (out == nullptr) throw Napi::Error::New(env, "out of memory");
  static const uint8_t kEmpty[1] = {0};
  const size_t len = kd::encode_delta(*kernels::active().delta, prev.data ? prev.data : kEmpty,
                                      next.data ? next.data : kEmpty, next.length, compress, out);
  if (auto* shrunk = static_cast<uint8_t*>(std::realloc(out, len))) out = shrunk;
  return adopt(env, out, len);
}

Napi::Value DeltaApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes target = napi_util::u8(info[0], "target");
  Bytes delta = napi_util::u8(info[1], "delta");
  if (napi_util::overlaps(delta.data, delta.length, target.data, target.length)) {
    napi_util::throw_range(env, "`delta` must not overlap `target`");
  }
  std::string reason;
  if (!kd::check_delta(delta.data, delta.length, target.length, &reason)) {
    napi_util::throw_range(env, "`delta` " + reason);
  }
  kd::apply_delta(target.data, target.length, delta.data, delta.length);
  return env.Undefined();
}

// ---- encodePages ----

struct EncodeArgs {
  const kd::Ops* ops;
  Bytes shadow, pages;
  const uint32_t* pfns;
  size_t count;
  size_t page_size;
  unsigned threads;
  bool compress;
  bool entropy;
  size_t own_min;  // XBM pages of this many literals may take their own code; 0: none
};

EncodeArgs encode_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EncodeArgs a;
  a.ops = kernels::active().delta;
  a.shadow = napi_util::u8(info[0], "shadow");
  a.pages = napi_util::u8(info[1], "pages");
  a.pfns = napi_util::u32(info[2], "pfns", &a.count);
  a.page_size = napi_util::page_size(info[3]);
  a.threads = threads_arg(info[4]);
  a.compress = info[5].IsUndefined() ? true : info[5].ToBoolean().Value();
  a.entropy = info[6].IsUndefined() ? true : info[6].ToBoolean().Value();
  // lib/kernels/delta.ts has checked it: undefined (the default) or an integer, 0 for none; a
  // boolean (true: the default) or a count below 1 (none) from a direct caller is read as such.
  if (info[7].IsNumber()) {
    const int64_t v = info[7].As<Napi::Number>().Int64Value();
    a.own_min = v < 1 ? 0 : static_cast<size_t>(v);
  } else {
    a.own_min = info[7].IsUndefined() || info[7].ToBoolean().Value() ? kd::kOwnMinLiterals : 0;
  }
  if (a.shadow.length % a.page_size != 0) {
    napi_util::throw_range(env, "`shadow` length must be a multiple of `pageSize` (" +
                                    std::to_string(a.page_size) + "), got " + std::to_string(a.shadow.length));
  }
  if (a.pages.length != a.count * a.page_size) {
    napi_util::throw_range(env, "`pages` must hold `pfns.length` (" + std::to_string(a.count) +
                                    ") pages of " + std::to_string(a.page_size) + " bytes, got " +
                                    std::to_string(a.pages.length) + " bytes");
  }
  // The encoder reads pages and pfns while it writes shadow: overlapping, it would read what it
  // has just written, and the frame would not describe the new pages.
  if (napi_util::overlaps(a.pages.data, a.pages.length, a.shadow.data, a.shadow.length)) {
    napi_util::throw_range(env, "`pages` must not overlap `shadow`");
  }
  if (napi_util::overlaps(reinterpret_cast<const uint8_t*>(a.pfns), a.count * 4, a.shadow.data, a.shadow.length)) {
    napi_util::throw_range(env, "`pfns` must not overlap `shadow`");
  }
  std::string reason;
  if (!kd::check_pfns(a.pfns, a.count, a.shadow.length / a.page_size, &reason)) {
    napi_util::throw_range(env, "`pfns` " + reason);
  }
  return a;
}

Napi::Value PagesEncodeSync(const Napi::CallbackInfo& info) {
  EncodeArgs a = encode_args(info);
  kd::Encoded out;
  if (const char* e = kd::encode_pages(*a.ops, a.shadow.data, a.pages.data, a.pfns, a.count, a.page_size,
                                       a.threads, a.compress, a.entropy, a.own_min, &out)) {
    throw Napi::Error::New(info.Env(), e);
  }
  return adopt_frame(info.Env(), out);
}

// Memory for staged copies (see EncodeWorker), from the frame buffers' recycle bin
// (kd::take_frame): fresh memory costs a page fault per page on first touch, which under nested
// virtualisation cost more than the copies themselves (a 512-page staged encode ran at a third of
// the in-place speed with malloc'd copies).
class StageBuffer {
 public:
  StageBuffer() = default;
  StageBuffer(const StageBuffer&) = delete;
  StageBuffer& operator=(const StageBuffer&) = delete;
  StageBuffer(StageBuffer&& o) noexcept { *this = std::move(o); }
  StageBuffer& operator=(StageBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(cap_, o.cap_);
    return *this;
  }
  ~StageBuffer() { kd::release_frame(p_, cap_); }
  // n bytes (uninitialised); throws a plain Error naming `what` when there is no memory.
  static StageBuffer take(Napi::Env env, size_t n, const char* what) {
    StageBuffer b;
    b.p_ = kd::take_frame(n == 0 ? 1 : n, &b.cap_);
    if (b.p_ == nullptr) throw Napi::Error::New(env, std::string("out of memory staging `") + what + "` (" + std::to_string(n) + " bytes)");
    return b;
  }
  uint8_t* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  uint8_t* p_ = nullptr;
  size_t cap_ = 0;
};

// The copy family's kernels (gatherPages / scatterPages) on one thread: pages pfns[i] of `mem`
// to and from page i of a contiguous buffer. The caller has checked every pfn.
void gather(uint8_t* dst, const uint8_t* mem, const uint32_t* pfns, size_t n, size_t ps) {
  if (n) kernels::active().copy->gather(dst, mem, pfns, n, ps, false);
}
void scatter(uint8_t* mem, const uint8_t* src, const uint32_t* pfns, size_t n, size_t ps) {
  if (n) kernels::active().copy->scatter(mem, src, pfns, n, ps, false);
}

// Whether `v` (a held argument) still views the same memory it did when the call started: a
// staged copy is written back only then. A detached view has length 0.
bool same_memory(const Napi::Value& v, const Bytes& was) {
  const Bytes now = napi_util::bytes(v, "argument");
  return now.data == was.data && now.length == was.length;
}

// Keeps the argument objects alive while the worker runs, and settles a promise. An argument
// that views guest memory (allocateMemory, mapFile) also pins its mapping: close() detaches the
// JS views at once, and without the pin the pages could be unmapped under the running worker.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const Napi::CallbackInfo& info, size_t nrefs)
      : Napi::AsyncWorker(env, "understudy.delta"), deferred_(Napi::Promise::Deferred::New(env)) {
    for (size_t i = 0; i < nrefs; i++) {
      if (!info[i].IsObject()) continue;
      refs_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
      if (info[i].IsTypedArray()) {
        const Bytes b = napi_util::bytes(info[i], "argument");
        if (auto m = runtime::Mapping::containing(b.data, b.length)) pins_.push_back(std::move(m));
      }
    }
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  // Writes staged pages back into the first argument (`was`: its memory when the call started),
  // or rejects with `lost` when it has been detached since. False if it rejected.
  bool write_back(const Bytes& was, const uint8_t* staged, const uint32_t* pfns, size_t n, size_t ps, const char* lost) {
    if (!same_memory(refs_[0].Value(), was)) {
      deferred_.Reject(Napi::Error::New(Env(), lost).Value());
      return false;
    }
    // SAFETY: `was` views the same memory the pfns were checked against.
    scatter(was.data, staged, pfns, n, ps);
    return true;
  }
  // Execute() reports bad input by setting range_ before SetError; anything else is an Error.
  void OnError(const Napi::Error& e) override {
    Napi::Env env = Env();
    if (range_) {
      deferred_.Reject(Napi::RangeError::New(env, e.Message()).Value());
    } else {
      deferred_.Reject(e.Value());
    }
  }
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
  std::vector<std::shared_ptr<runtime::Mapping>> pins_;
  bool range_ = false;
};

// With `stage`, for plain ArrayBuffers on runtimes where nothing keeps them attached (see
// lib/kernels/memory.ts): the pool never touches the caller's memory. The batch's pages, its
// shadow pages and its pfns are copied here, on the JS thread; the worker encodes the copies
// (a gathered shadow: the frame is the same); OnOK writes the shadow pages back, if `shadow`
// still views the memory it did (else the call rejects: the update has nowhere to go).
class EncodeWorker : public PromiseWorker {
 public:
  // `stage`: bit 0 stages the shadow, bit 1 the pages (the pfns go with either).
  EncodeWorker(Napi::Env env, const Napi::CallbackInfo& info, const EncodeArgs& a, uint32_t stage)
      : PromiseWorker(env, info, 3), a_(a), shadow_(a.shadow) {
    if (stage == 0) return;
    const size_t bytes = a.count * a.page_size;
    pfns_.assign(a.pfns, a.pfns + a.count);
    a_.pfns = pfns_.data();
    if (stage & 2) {
      pages_ = StageBuffer::take(env, bytes, "pages");
      std::memcpy(pages_.get(), a.pages.data, bytes);
      a_.pages.data = pages_.get();
    }
    if (stage & 1) {
      shadow_pages_ = StageBuffer::take(env, bytes, "shadow");
      // SAFETY: encode_args checked every pfn < shadow pages.
      gather(shadow_pages_.get(), a.shadow.data, a.pfns, a.count, a.page_size);
      a_.shadow.data = shadow_pages_.get();
      a_.shadow.length = bytes;
    }
  }
  ~EncodeWorker() override { kd::release_frame(out_.data, out_.capacity); }

  void Execute() override {
    if (const char* e = kd::encode_pages(*a_.ops, a_.shadow.data, a_.pages.data, a_.pfns, a_.count,
                                         a_.page_size, a_.threads, a_.compress, a_.entropy, a_.own_min, &out_,
                                         static_cast<bool>(shadow_pages_))) {
      SetError(e);
    }
  }
  void OnOK() override {
    if (shadow_pages_ && !write_back(shadow_, shadow_pages_.get(), pfns_.data(), a_.count, a_.page_size,
                                     "`shadow` was detached while encodePages ran, so its update is lost: do not transfer a buffer under a running call")) {
      return;
    }
    Napi::Uint8Array frame = adopt_frame(Env(), out_);
    out_.data = nullptr;
    deferred_.Resolve(frame);
  }

 private:
  EncodeArgs a_;
  Bytes shadow_;  // the caller's shadow, as given
  kd::Encoded out_;
  std::vector<uint32_t> pfns_;
  StageBuffer pages_, shadow_pages_;
};

Napi::Value PagesEncode(const Napi::CallbackInfo& info) {
  EncodeArgs a = encode_args(info);
  const uint32_t stage = info[8].IsNumber() ? info[8].As<Napi::Number>().Uint32Value() & 3u : 0u;
  auto* w = new EncodeWorker(info.Env(), info, a, stage);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// ---- applyPages ----

struct ApplyArgs {
  Bytes replica, frame;
  size_t page_size;
  unsigned threads;
};

ApplyArgs apply_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ApplyArgs a;
  a.replica = napi_util::u8(info[0], "replica");
  a.frame = napi_util::u8(info[1], "frame");
  a.page_size = napi_util::page_size(info[2]);
  a.threads = threads_arg(info[3]);
  if (a.replica.length % a.page_size != 0) {
    napi_util::throw_range(env, "`replica` length must be a multiple of `pageSize` (" +
                                    std::to_string(a.page_size) + "), got " + std::to_string(a.replica.length));
  }
  if (napi_util::overlaps(a.frame.data, a.frame.length, a.replica.data, a.replica.length)) {
    napi_util::throw_range(env, "`frame` must not overlap `replica`");
  }
  return a;
}

Napi::Value PagesApply(const Napi::CallbackInfo& info) {
  ApplyArgs a = apply_args(info);
  kd::FrameView f;
  std::string reason;
  if (!kd::check_frame(a.frame.data, a.frame.length, a.page_size, a.replica.length / a.page_size,
                       a.threads, &f, &reason)) {
    napi_util::throw_range(info.Env(), "`frame` " + reason);
  }
  kd::apply_frame(a.replica.data, f, a.threads);
  return info.Env().Undefined();
}

// applyPages that first copies out the pages the frame is about to overwrite (in frame order),
// for a caller that may have to put them back: one validation instead of inspectFrame's and
// applyPages' two. `out` (optional) is used when it holds them all, else a new buffer is made.
Napi::Value PagesApplyUndo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ApplyArgs a = apply_args(info);
  Bytes out{nullptr, 0};
  if (!info[4].IsUndefined()) {
    out = napi_util::u8(info[4], "out");
    if (napi_util::overlaps(out.data, out.length, a.replica.data, a.replica.length)) {
      napi_util::throw_range(env, "`out` must not overlap `replica`");
    }
    if (napi_util::overlaps(out.data, out.length, a.frame.data, a.frame.length)) {
      napi_util::throw_range(env, "`out` must not overlap `frame`");
    }
  }
  kd::FrameView f;
  std::string reason;
  if (!kd::check_frame(a.frame.data, a.frame.length, a.page_size, a.replica.length / a.page_size,
                       a.threads, &f, &reason)) {
    napi_util::throw_range(env, "`frame` " + reason);
  }
  const size_t need = size_t{f.count} * a.page_size;
  Napi::Uint8Array pages;
  if (out.data != nullptr && out.length >= need) {
    pages = info[4].As<Napi::Uint8Array>();
    if (out.length != need) {
      pages = Napi::Uint8Array::New(env, need, pages.ArrayBuffer(), pages.ByteOffset());
    }
  } else {
    pages = Napi::Uint8Array::New(env, need);
    out.data = pages.Data();
  }
  Napi::Uint32Array pfns = Napi::Uint32Array::New(env, f.count);
  for (size_t i = 0; i < f.count; i++) pfns[i] = kd::entry_pfn(f, i);
  // SAFETY: check_frame proved every pfn below replica.length / page_size, and out holds need.
  gather(out.data, a.replica.data, pfns.Data(), f.count, a.page_size);
  kd::apply_frame(a.replica.data, f, a.threads);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pfns", pfns);
  o.Set("pages", pages);
  return o;
}

// With `stage` (as EncodeWorker): the frame is copied and checked here, on the JS thread, and the
// replica pages it writes copied out; the worker applies the frame to the copies; OnOK writes
// them back if `replica` still views the same memory. A bad frame still rejects.
class ApplyWorker : public PromiseWorker {
 public:
  ApplyWorker(Napi::Env env, const Napi::CallbackInfo& info, const ApplyArgs& a, bool stage)
      : PromiseWorker(env, info, 2), a_(a), replica_(a.replica) {
    if (!stage) return;
    frame_ = StageBuffer::take(env, a.frame.length, "frame");
    std::memcpy(frame_.get(), a.frame.data, a.frame.length);
    a_.frame.data = frame_.get();
    if (!check()) return;
    pfns_.resize(f_.count);
    for (size_t i = 0; i < f_.count; i++) pfns_[i] = kd::entry_pfn(f_, i);
    pages_ = StageBuffer::take(env, size_t{f_.count} * a.page_size, "replica");
    // SAFETY: check_frame proved every pfn < replica pages.
    gather(pages_.get(), a.replica.data, pfns_.data(), f_.count, a.page_size);
  }
  void Execute() override {
    // Staged, the frame was checked when the call started.
    if (!frame_) check();
    if (!bad_.empty()) {
      range_ = true;
      SetError(bad_);
      return;
    }
    kd::apply_frame(frame_ ? pages_.get() : a_.replica.data, f_, a_.threads, static_cast<bool>(frame_));
  }
  void OnOK() override {
    if (frame_ && !write_back(replica_, pages_.get(), pfns_.data(), f_.count, a_.page_size,
                              "`replica` was detached while applyPagesAsync ran, so the frame was not applied to it: do not transfer a buffer under a running call")) {
      return;
    }
    deferred_.Resolve(Env().Undefined());
  }

 private:
  // check_frame into f_; false (and bad_ set) if the frame is bad.
  bool check() {
    if (kd::check_frame(a_.frame.data, a_.frame.length, a_.page_size, a_.replica.length / a_.page_size, a_.threads,
                        &f_, &bad_)) {
      return true;
    }
    bad_ = "`frame` " + bad_;
    return false;
  }

  ApplyArgs a_;
  Bytes replica_;  // the caller's replica, as given
  StageBuffer frame_, pages_;
  kd::FrameView f_;
  std::vector<uint32_t> pfns_;
  std::string bad_;
};

Napi::Value PagesApplyAsync(const Napi::CallbackInfo& info) {
  ApplyArgs a = apply_args(info);
  auto* w = new ApplyWorker(info.Env(), info, a, info[4].ToBoolean().Value());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value FrameInspect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes frame = napi_util::u8(info[0], "frame");
  kd::FrameView f;
  std::string reason;
  // Any page size, and a replica as large as a pfn can address: pfns must still be distinct and
  // every body well-formed.
  if (!kd::check_frame(frame.data, frame.length, 0, uint64_t{1} << 32, 1, &f, &reason)) {
    napi_util::throw_range(env, "`frame` " + reason);
  }
  Napi::Uint32Array pfns = Napi::Uint32Array::New(env, f.count);
  for (size_t i = 0; i < f.count; i++) pfns[i] = kd::entry_pfn(f, i);
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", Napi::Number::New(env, f.version));
  o.Set("pageSize", Napi::Number::New(env, f.page_size));
  o.Set("count", Napi::Number::New(env, f.count));
  o.Set("pfns", pfns);
  o.Set("bytes", Napi::Number::New(env, static_cast<double>(frame.length)));
  o.Set("payloadBytes", Napi::Number::New(env, static_cast<double>(f.payload_length)));
  return o;
}

// Benchmark baseline only (bench/delta.bench.ts): XOR each page of `next` with `prev` and
// compress it on its own with lz4 (level 0 = LZ4_compress_default) or zstd (level >= 1), like
// the "XOR + general-purpose compressor" schemes the codec is compared with. Returns the total
// compressed bytes. Single-threaded, synchronous.
Napi::Value BenchXorCompress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes prev = napi_util::u8(info[0], "prev");
  Bytes next = napi_util::u8(info[1], "next");
  const size_t ps = napi_util::page_size(info[2]);
  const int level = static_cast<int>(napi_util::uint(info[3], "level", 22));
  if (prev.length != next.length || next.length % ps != 0) napi_util::throw_range(env, "`next` size");
  std::vector<uint8_t> x(ps);
  std::vector<uint8_t> out(ZSTD_compressBound(ps) + LZ4_compressBound(static_cast<int>(ps)));
  ZSTD_CCtx* cctx = level > 0 ? ZSTD_createCCtx() : nullptr;
  double total = 0;
  for (size_t off = 0; off < next.length; off += ps) {
    for (size_t i = 0; i < ps; i++) x[i] = prev.data[off + i] ^ next.data[off + i];
    if (level == 0) {
      total += LZ4_compress_default(reinterpret_cast<const char*>(x.data()), reinterpret_cast<char*>(out.data()),
                                    static_cast<int>(ps), static_cast<int>(out.size()));
    } else {
      total += static_cast<double>(ZSTD_compressCCtx(cctx, out.data(), out.size(), x.data(), ps, level));
    }
  }
  if (cctx) ZSTD_freeCCtx(cctx);
  return Napi::Number::New(env, total);
}

}  // namespace

void InitDelta(Napi::Env env, Napi::Object exports) {
  exports.Set("delta_encode", Napi::Function::New(env, DeltaEncode, "delta_encode"));
  exports.Set("delta_apply", Napi::Function::New(env, DeltaApply, "delta_apply"));
  exports.Set("pages_encode", Napi::Function::New(env, PagesEncode, "pages_encode"));
  exports.Set("pages_encode_sync", Napi::Function::New(env, PagesEncodeSync, "pages_encode_sync"));
  exports.Set("pages_apply", Napi::Function::New(env, PagesApply, "pages_apply"));
  exports.Set("pages_apply_undo", Napi::Function::New(env, PagesApplyUndo, "pages_apply_undo"));
  exports.Set("pages_apply_async", Napi::Function::New(env, PagesApplyAsync, "pages_apply_async"));
  exports.Set("frame_inspect", Napi::Function::New(env, FrameInspect, "frame_inspect"));
  exports.Set("bench_xor_compress", Napi::Function::New(env, BenchXorCompress, "bench_xor_compress"));
}
