// N-API: which kernel path is in use (isa), which the machine can run (isas), and a switch for
// tests and benchmarks (set_isa).
#include <napi.h>

#include "common/napi_util.h"
#include "cpu/features.h"
#include "kernels/dispatch.h"

namespace {

Napi::Value Isa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), kernels::active().name);
}

Napi::Value Isas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (cpu::Isa isa : {cpu::Isa::avx512, cpu::Isa::avx2, cpu::Isa::scalar}) {
    if (cpu::supported(isa)) out.Set(i++, Napi::String::New(env, cpu::name(isa)));
  }
  return out;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) napi_util::throw_type(env, "`isa` must be a string");
  const std::string want = info[0].As<Napi::String>().Utf8Value();
  cpu::Isa isa;
  if (!cpu::parse(want.c_str(), &isa)) {
    napi_util::throw_range(env, "`isa` must be one of scalar, avx2, avx512, got " + want);
  }
  if (!kernels::select(isa)) {
    napi_util::throw_range(env, "`isa` " + want + " is not supported by this CPU");
  }
  return Napi::String::New(env, kernels::active().name);
}

Napi::Value EnvWarning(const Napi::CallbackInfo& info) {
  const char* w = kernels::env_warning();
  return w ? Napi::String::New(info.Env(), w) : info.Env().Null();
}

}  // namespace

void InitCpu(Napi::Env env, Napi::Object exports) {
  exports.Set("isa", Napi::Function::New(env, Isa, "isa"));
  exports.Set("isas", Napi::Function::New(env, Isas, "isas"));
  exports.Set("set_isa", Napi::Function::New(env, SetIsa, "set_isa"));
  exports.Set("isa_env_warning", Napi::Function::New(env, EnvWarning, "isa_env_warning"));
}
