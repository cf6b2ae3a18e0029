// N-API bindings for the guest family. Shared section (this file): control-page setup and
// validation, effective workload parameters, the memcheck verifier and the final checksum, used
// by lib/guest for every backend. Each backend registers its own exports:
//   InitGuestSim (guest_sim.cc, the simulated guest) and InitGuestKvm (guest_kvm.cc, the KVM VMM).
#include <napi.h>

#include "common/napi_util.h"
#include "guest/control.h"
#include "napi/guest_common.h"
#include "napi/memory.h"
#include "workloads/workloads.h"

void InitGuestSim(Napi::Env env, Napi::Object exports);
void InitGuestKvm(Napi::Env env, Napi::Object exports);

namespace {

void read_params(const Napi::Value& v, uint64_t out[8]) {
  for (int i = 0; i < 8; i++) out[i] = 0;
  if (v.IsUndefined() || v.IsNull()) return;
  if (!v.IsArray()) napi_util::throw_type(v.Env(), "`params` must be an array of 8 numbers");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > 8) napi_util::throw_range(v.Env(), "`params` has at most 8 entries");
  for (uint32_t i = 0; i < a.Length(); i++) out[i] = napi_util::uint(a.Get(i), "params[i]", (1ull << 53) - 1);
}

Napi::Array params_to_js(Napi::Env env, const uint64_t p[8]) {
  Napi::Array a = Napi::Array::New(env, 8);
  for (uint32_t i = 0; i < 8; i++) a.Set(i, Napi::Number::New(env, static_cast<double>(p[i])));
  return a;
}

// guest_setup(memory, workload, vcpus, seed: bigint, steps, flags, params[8]) -> effective params
Napi::Value Setup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto mem = napi_memory::unwrap(info[0], "memory");
  guest::Config cfg;
  cfg.workload = static_cast<uint32_t>(napi_util::uint(info[1], "workload", 255));
  cfg.vcpus = static_cast<uint32_t>(napi_util::uint(info[2], "vcpus", 1024));
  cfg.seed = napi_guest::u64_arg(info[3], "seed");
  cfg.steps = napi_util::uint(info[4], "steps", (1ull << 53) - 1);
  cfg.flags = static_cast<uint32_t>(napi_util::uint(info[5], "flags", 0xffffffffu));
  read_params(info[6], cfg.params);
  const std::string err = guest::check_config(cfg, mem->size());
  if (!err.empty()) napi_util::throw_range(env, err);
  guest::setup_control(mem->data(), mem->size(), cfg);
  return params_to_js(env, guest::control(mem->data())->params);
}

// guest_effective_params(workload, memBytes, vcpus, params[8]) -> params[8] | null
Napi::Value EffectiveParams(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t wl = static_cast<uint32_t>(napi_util::uint(info[0], "workload", 255));
  const uint64_t bytes = napi_util::uint(info[1], "memBytes", 1ull << 50);
  const uint32_t vcpus = static_cast<uint32_t>(napi_util::uint(info[2], "vcpus", US_MAX_VCPUS));
  uint64_t in[8], out[8];
  read_params(info[3], in);
  if (!us_effective_params(wl, bytes, vcpus, in, out)) return env.Null();
  return params_to_js(env, out);
}

// guest_check_image(image: Uint8Array, name) -> { workload, vcpus, steps, memSize, flags, done,
// stepsDone } or throws RangeError
Napi::Value CheckImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_util::Bytes b = napi_util::u8(info[0], "memoryImage");
  const std::string name = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "memoryImage";
  const std::string err = guest::check_control(b.data, b.length, name.c_str());
  if (!err.empty()) napi_util::throw_range(env, err);
  const us_control* c = guest::control(b.data);
  Napi::Object o = Napi::Object::New(env);
  o.Set("workload", Napi::Number::New(env, c->workload));
  o.Set("vcpus", Napi::Number::New(env, c->vcpus));
  o.Set("steps", Napi::Number::New(env, static_cast<double>(c->steps)));
  o.Set("seed", Napi::BigInt::New(env, c->seed));
  o.Set("memSize", Napi::Number::New(env, static_cast<double>(c->mem_size)));
  o.Set("flags", Napi::Number::New(env, c->flags));
  uint64_t done = 0;
  for (uint32_t i = 0; i < c->vcpus; i++) done += c->vcpu[i].step;
  o.Set("stepsDone", Napi::Number::New(env, static_cast<double>(done)));
  o.Set("done", Napi::Boolean::New(env, guest::all_done(b.data)));
  o.Set("records", Napi::Number::New(env, static_cast<double>(c->ring_head)));
  o.Set("params", params_to_js(env, c->params));
  return o;
}

// guest_memcheck_verify(image: Uint8Array) -> null | { code: bigint, gpa, reason }
Napi::Value MemcheckVerify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_util::Bytes b = napi_util::u8(info[0], "memoryImage");
  const std::string err = guest::check_control(b.data, b.length, "memoryImage");
  if (!err.empty()) napi_util::throw_range(env, err);
  if (guest::control(b.data)->workload != US_WL_MEMCHECK) napi_util::throw_range(env, "`memoryImage` is not of a memcheck guest");
  const uint64_t code = us_memcheck_verify(b.data, b.length);
  if (!code) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("code", Napi::BigInt::New(env, code));
  o.Set("gpa", Napi::Number::New(env, static_cast<double>(code & ~0xfffull)));
  const uint64_t r = code & 0xfff;
  o.Set("reason", Napi::String::New(env, r == US_PANIC_TORN ? "torn" : r == US_PANIC_LOST ? "lost" : "dirty"));
  return o;
}

// guest_final(image: Uint8Array) -> 16 hex digits (the image's ring must be drained)
Napi::Value Final(const Napi::CallbackInfo& info) {
  napi_util::Bytes b = napi_util::u8(info[0], "memoryImage");
  const std::string err = guest::check_control(b.data, b.length, "memoryImage");
  if (!err.empty()) napi_util::throw_range(info.Env(), err);
  return Napi::String::New(info.Env(), guest::hex16(guest::final_checksum(b.data)));
}

}  // namespace

void InitGuest(Napi::Env env, Napi::Object exports) {
  exports.Set("guest_setup", Napi::Function::New(env, Setup, "guest_setup"));
  exports.Set("guest_effective_params", Napi::Function::New(env, EffectiveParams, "guest_effective_params"));
  exports.Set("guest_check_image", Napi::Function::New(env, CheckImage, "guest_check_image"));
  exports.Set("guest_memcheck_verify", Napi::Function::New(env, MemcheckVerify, "guest_memcheck_verify"));
  exports.Set("guest_final", Napi::Function::New(env, Final, "guest_final"));
  InitGuestSim(env, exports);
  InitGuestKvm(env, exports);
}
