// N-API helpers shared by the sim (guest_sim.cc) and KVM (guest_kvm.cc) bindings: output records
// to JS in one batch, BigInt arguments.
//
// records_to_js returns { count, seq: Float64Array, len: Uint8Array, data: Uint8Array (count x 48
// bytes, record i at i*48, only len[i] bytes meaningful), chain: BigUint64Array }; lib/guest
// turns that into OutputRecord objects (lib/guest/records.ts).
#pragma once

#include <napi.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/napi_util.h"
#include "guest/ring.h"

namespace napi_guest {

// The thread-safe function through which a guest's vCPU threads reach JS ('finished', 'error').
// At environment teardown Node closes and frees the function, and it may do so before it
// finalizes the guest's handle (which stops the vCPU threads): a vCPU thread could then call a
// freed function, and the handle release it a second time (that aborted the process when two or
// more guests were never closed). Every call goes through this channel under its lock, and Node's
// finalizer shuts the channel under the same lock, so neither can happen. The finalizer holds a
// reference to the channel until it has run.
class EventChannel {
 public:
  // Calls the JS event function from a thread-safe function's callback. When JS cannot run
  // (environment teardown: napi_call_function fails without a pending exception) there is
  // nobody to tell and the event is dropped; Napi::Function::Call threw an empty Napi::Error
  // out of a libuv callback then, and the process aborted at exit ("terminate called", seen in
  // 2 of 40 `checkpoint --guest kvm` runs under load). An exception thrown by the function
  // itself becomes an uncaught exception, as for any callback Node makes.
  // `make_args` builds the arguments; if that fails (it throws Napi::Error), the event is dropped.
  template <typename MakeArgs>
  static void Deliver(Napi::Env env, Napi::Function fn, MakeArgs make_args) {
    if (env == nullptr || fn.IsEmpty()) return;
    std::vector<napi_value> args;
    try {
      args = make_args();
    } catch (const Napi::Error&) {
      return;
    }
    napi_value global;
    if (napi_get_global(env, &global) != napi_ok) return;
    napi_value result;
    const napi_status st = napi_call_function(env, global, fn, args.size(), args.data(), &result);
    if (st == napi_ok) return;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
    napi_value error;
    if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
  }

  static std::shared_ptr<EventChannel> Create(Napi::Env env, Napi::Function fn, const char* name) {
    std::shared_ptr<EventChannel> ch(new EventChannel());
    ch->tsfn_ = Napi::ThreadSafeFunction::New(env, fn, name, 0, 1, [ch](Napi::Env) {
      std::lock_guard<std::mutex> lock(ch->m_);
      ch->open_ = false;
    });
    ch->tsfn_.Unref(env);
    return ch;
  }

  // Any thread. False when the call was not queued (the channel is shut, or Node is closing it).
  template <typename Callback>
  bool Call(Callback cb) {
    std::lock_guard<std::mutex> lock(m_);
    return open_ && tsfn_.NonBlockingCall(cb) == napi_ok;
  }
  template <typename DataT, typename Callback>
  bool Call(DataT* data, Callback cb) {
    std::lock_guard<std::mutex> lock(m_);
    return open_ && tsfn_.NonBlockingCall(data, cb) == napi_ok;
  }

  // JS thread: whether the function keeps the event loop alive (a running guest does).
  void Ref(Napi::Env env) {
    std::lock_guard<std::mutex> lock(m_);
    if (open_ && !refd_) tsfn_.Ref(env);
    refd_ = true;
  }
  void Unref(Napi::Env env) {
    std::lock_guard<std::mutex> lock(m_);
    if (open_ && refd_) tsfn_.Unref(env);
    refd_ = false;
  }

  // JS thread: gives the function back, once, and never after Node finalized it.
  void Release() {
    std::lock_guard<std::mutex> lock(m_);
    if (open_) tsfn_.Release();
    open_ = false;
  }

 private:
  EventChannel() = default;
  std::mutex m_;
  Napi::ThreadSafeFunction tsfn_;
  bool open_ = true;
  bool refd_ = false;
};

inline Napi::Value records_to_js(Napi::Env env, const std::vector<guest::Record>& recs) {
  const size_t n = recs.size();
  Napi::Object out = Napi::Object::New(env);
  Napi::Float64Array seq = Napi::Float64Array::New(env, n);
  Napi::Uint8Array len = Napi::Uint8Array::New(env, n);
  Napi::Uint8Array data = Napi::Uint8Array::New(env, n * US_RECORD_DATA);
  Napi::ArrayBuffer chain_ab = Napi::ArrayBuffer::New(env, n * 8);
  for (size_t i = 0; i < n; i++) {
    seq[i] = static_cast<double>(recs[i].seq);
    len[i] = static_cast<uint8_t>(recs[i].len);
    std::memcpy(data.Data() + i * US_RECORD_DATA, recs[i].data, US_RECORD_DATA);
    std::memcpy(static_cast<uint8_t*>(chain_ab.Data()) + i * 8, &recs[i].chain, 8);
  }
  napi_value chain;
  napi_status st = napi_create_typedarray(env, napi_biguint64_array, n, chain_ab, 0, &chain);
  NAPI_THROW_IF_FAILED(env, st, Napi::Value());
  out.Set("count", Napi::Number::New(env, static_cast<double>(n)));
  out.Set("seq", seq);
  out.Set("len", len);
  out.Set("data", data);
  out.Set("chain", Napi::Value(env, chain));
  return out;
}

// A BigInt (or a non-negative safe-integer Number) as uint64.
inline uint64_t u64_arg(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (v.IsBigInt()) {
    bool lossless = false;
    const uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) napi_util::throw_range(env, std::string("`") + name + "` must be from 0 to 2^64-1");
    return x;
  }
  return napi_util::uint(v, name, (1ull << 53) - 1);
}

}  // namespace napi_guest
