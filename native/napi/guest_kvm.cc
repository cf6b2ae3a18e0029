// N-API bindings for the KVM guest: kvm_probe() for `understudy info` / kvmAvailable(), and
// kvm_create(memory, options, onEvent) returning an opaque VM handle whose methods lib/guest/kvm.ts
// wraps (start, pause, resume, take_dirty, take_output, save_cpu, set_clock, stats, close).
//
// The VM keeps the guest memory mapping alive (a shared_ptr) until close(). Events from the vCPU
// threads ('finished', 'error') reach JS through a ThreadSafeFunction that is referenced only
// while the vCPUs run, so a paused or finished guest never keeps the process alive.
#include <napi.h>

#include <cstring>
#include <cerrno>
#include <memory>
#include <stdexcept>
#include <string>

#include "common/napi_util.h"
#include "guest/control.h"
#include "guest/ring.h"
#include "kernels/dispatch.h"
#include "napi/guest_common.h"
#include "napi/memory.h"
#include "payload_image.h"
#include "sim/sim.h"
#include "vmm/cpu_blob.h"
#include "vmm/ioctls.h"
#include "vmm/kvm.h"
#include "vmm/vm.h"
#include "workloads/abi.h"

namespace {

using napi_util::throw_range;

constexpr uint32_t kFirstTestEntry = 0xf0;  // native/payload/selftest.c
using napi_util::throw_type;

[[noreturn]] void throw_sys(Napi::Env env, const vmm::SysError& se) {
  Napi::Error err = Napi::Error::New(env, se.what());
  err.Set("errno", Napi::Number::New(env, se.err()));
  err.Set("syscall", Napi::String::New(env, se.syscall()));
  err.Set("code", Napi::String::New(env, se.err() == ENOENT ? "ENOENT"
                                         : se.err() == EACCES ? "EACCES"
                                         : se.err() == EPERM ? "EPERM"
                                         : se.err() == ENOMEM ? "ENOMEM"
                                         : se.err() == EINVAL ? "EINVAL"
                                                              : "ESYS"));
  throw err;
}

// Runs fn, turning native exceptions into JS errors: bad input -> RangeError, system call
// failures -> Error with code/errno/syscall, anything else -> Error.
template <typename F>
auto guarded(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const vmm::SysError& e) {
    throw_sys(env, e);
  } catch (const std::range_error& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

uint64_t big_u64(const Napi::Value& v, const char* name) {
  if (v.IsBigInt()) {
    bool lossless = true;
    const uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw_range(v.Env(), std::string("`") + name + "` must fit in 64 bits");
    return x;
  }
  return napi_util::uint(v, name, (1ull << 53) - 1);
}

// The checks a restore makes of a CPU blob against a memory image (hostile input), on the image
// as given: restoreKvmGuest runs them (guest_check_state) before it allocates and copies the image,
// and Init again on the copy. Throws RangeError naming `cpu` or `memoryImage`.
vmm::cpu_blob::Parsed check_restore(Napi::Env env, const napi_util::Bytes& b, const uint8_t* image, size_t size) {
  if (size < US_MIN_MEMORY) {
    throw_range(env, "`memoryImage` must be at least " + std::to_string(US_MIN_MEMORY) + " bytes, got " + std::to_string(size));
  }
  vmm::cpu_blob::Parsed parsed = guarded(env, [&] { return vmm::cpu_blob::decode(b.data, b.length); });
  if (parsed.memory_bytes != size) {
    throw_range(env, "`memoryImage` is " + std::to_string(size) + " bytes but the CPU state was saved from a guest of " +
                         std::to_string(parsed.memory_bytes) + " bytes");
  }
  // SAFETY: size >= US_MIN_MEMORY, so the control page is inside the image.
  const auto* ctl = reinterpret_cast<const us_control*>(image + US_CONTROL_GPA);
  if (ctl->workload != parsed.workload) {
    throw_range(env, "`cpu` was saved from a guest running workload " + std::to_string(parsed.workload) +
                         " but `memoryImage` holds workload " + std::to_string(ctl->workload));
  }
  if (ctl->vcpus != parsed.vcpus.size()) {
    throw_range(env, "`cpu` holds " + std::to_string(parsed.vcpus.size()) +
                         " vCPUs but `memoryImage` was saved from a guest with " + std::to_string(ctl->vcpus));
  }
  // Before the pending records: a blob from another pause fails on those too, less clearly.
  const std::string badpause = guest::check_pause(parsed.header, image);
  if (!badpause.empty()) throw_range(env, badpause);
  if (ctl->workload < kFirstTestEntry) {
    const std::string bad = guest::check_control(image, size, "memoryImage");
    if (!bad.empty()) throw_range(env, bad);
    const std::string badp = guest::check_pending(image, parsed.pending, "cpu");
    if (!badp.empty()) throw_range(env, badp);
  } else if (ctl->magic != US_ABI_MAGIC || ctl->abi_version != US_ABI_VERSION) {
    throw_range(env, "`memoryImage` has no valid control page (bad magic or ABI version)");
  }
  return parsed;
}

// guest_check_state(cpu, image, type?: 'sim' | 'kvm') -> { type, pending, drained, outChain,
// final }: every check a restore of that backend makes (without `type`, the blob's own type picks
// it), without building a guest; throws RangeError naming `cpu` or `memoryImage`. Both restores
// run it before they copy the image, and a backup runs it on each epoch before it acknowledges
// it. `pending` is the number of output records the blob carries, `drained` (ring_tail) and
// `outChain` are the image's.
Napi::Value CheckState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const napi_util::Bytes blob = napi_util::u8(info[0], "cpu");
  const napi_util::Bytes image = napi_util::u8(info[1], "memoryImage");
  uint16_t type = blob.length >= 8 ? static_cast<uint16_t>(blob.data[6] | blob.data[7] << 8) : 0;
  if (info[2].IsString()) type = info[2].As<Napi::String>().Utf8Value() == "kvm" ? guest::kBlobKvm : guest::kBlobSim;
  size_t pending = 0;
  if (type == guest::kBlobKvm) {
    pending = check_restore(env, blob, image.data, image.length).pending.size();
  } else {
    std::string err = guest::check_control(image.data, image.length, "memoryImage");
    std::vector<guest::Record> recs;
    if (err.empty()) err = sim::decode_cpu(blob.data, blob.length, image.data, image.length, &recs);
    if (!err.empty()) throw_range(env, err);
    pending = recs.size();
  }
  // SAFETY: both paths above checked that the image holds a control page.
  const auto* ctl = reinterpret_cast<const us_control*>(image.data + US_CONTROL_GPA);
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", type == guest::kBlobKvm ? "kvm" : "sim");
  o.Set("pending", static_cast<double>(pending));
  o.Set("drained", static_cast<double>(ctl->ring_tail));
  o.Set("outChain", guest::hex16(ctl->out_chain));
  // The final checksum once every vCPU is done (what `final` of a FINAL epoch must be), else null.
  const bool done = ctl->workload < kFirstTestEntry && guest::all_done(image.data);
  o.Set("final", done ? Napi::Value(Napi::String::New(env, guest::hex16(guest::final_checksum(image.data)))) : env.Null());
  return o;
}

class KvmVm : public Napi::ObjectWrap<KvmVm> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "KvmVm",
                       {InstanceMethod("start", &KvmVm::Start), InstanceMethod("pause", &KvmVm::Pause),
                        InstanceMethod("resume", &KvmVm::Resume), InstanceMethod("take_dirty", &KvmVm::TakeDirty),
                        InstanceMethod("take_output", &KvmVm::TakeOutput),
                        InstanceMethod("save_cpu", &KvmVm::SaveCpu), InstanceMethod("set_clock", &KvmVm::SetClock),
                        InstanceMethod("stats", &KvmVm::Stats), InstanceMethod("close", &KvmVm::Close),
                        InstanceMethod("error", &KvmVm::Error), InstanceMethod("final", &KvmVm::Final),
                        InstanceMethod("panic_code", &KvmVm::PanicCode)});
  }

  explicit KvmVm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvmVm>(info) {}
  ~KvmVm() override { Shutdown(); }

  // kvm_create(memory, options, onEvent)
  void Init(Napi::Env env, std::shared_ptr<runtime::Mapping> mem, const Napi::Object& o, Napi::Function cb) {
    mapping_ = std::move(mem);
    vmm::VmConfig cfg;
    const Napi::Value dirty = o.Get("dirty");
    if (dirty.IsString()) {
      const std::string d = dirty.As<Napi::String>().Utf8Value();
      if (d == "ring") cfg.dirty = vmm::DirtyMode::ring;
      else if (d == "none") cfg.dirty = vmm::DirtyMode::none;
      else if (d != "bitmap") throw_range(env, "`dirty` must be 'bitmap', 'ring' or 'none', got " + d);
    }
    if (o.Has("ringEntries") && !o.Get("ringEntries").IsUndefined()) {
      const uint64_t n = napi_util::uint(o.Get("ringEntries"), "ringEntries", 1u << 20);
      if (n < 256 || (n & (n - 1))) throw_range(env, "`ringEntries` must be a power of two from 256, got " + std::to_string(n));
      cfg.ring_entries = static_cast<uint32_t>(n);
    }
    const Napi::Value cpu = o.Get("cpu");
    vmm::cpu_blob::Parsed parsed;
    auto* ctl = reinterpret_cast<us_control*>(mapping_->data() + US_CONTROL_GPA);
    if (mapping_->size() < US_MIN_MEMORY) {
      throw_range(env, "`memory` must be at least " + std::to_string(US_MIN_MEMORY) + " bytes, got " +
                           std::to_string(mapping_->size()));
    }
    if (!cpu.IsUndefined()) {
      napi_util::Bytes b = napi_util::u8(cpu, "cpu");
      parsed = check_restore(env, b, mapping_->data(), mapping_->size());
      cfg.vcpus = static_cast<uint32_t>(parsed.vcpus.size());
    } else if (!o.Get("testEntry").IsUndefined()) {
      // The VMM's own test entries: a minimal control page (the workloads' is set up by
      // guest_setup before kvm_create).
      cfg.vcpus = static_cast<uint32_t>(napi_util::uint(o.Get("vcpus"), "vcpus", US_MAX_VCPUS));
      if (cfg.vcpus < 1) throw_range(env, "`vcpus` must be from 1 to 16, got 0");
      std::memset(ctl, 0, sizeof(us_control));
      ctl->magic = US_ABI_MAGIC;
      ctl->abi_version = US_ABI_VERSION;
      ctl->workload = static_cast<uint32_t>(napi_util::uint(o.Get("testEntry"), "testEntry", 0xff));
      if (ctl->workload < kFirstTestEntry) throw_range(env, "`testEntry` must be from 0xf0 to 0xff");
      ctl->vcpus = cfg.vcpus;
      ctl->seed = big_u64(o.Get("seed"), "seed");
      ctl->steps = big_u64(o.Get("steps"), "steps");
      ctl->mem_size = mapping_->size();
      ctl->flags = static_cast<uint32_t>(napi_util::uint(o.Get("flags"), "flags", 0xffffffffu));
      const Napi::Value params = o.Get("params");
      if (params.IsArray()) {
        Napi::Array a = params.As<Napi::Array>();
        if (a.Length() > 8) throw_range(env, "`params` holds at most 8 values");
        for (uint32_t i = 0; i < a.Length(); ++i) ctl->params[i] = big_u64(a.Get(i), "params");
      }
    } else {
      const std::string bad = guest::check_control(mapping_->data(), mapping_->size(), "memory");
      if (!bad.empty()) throw_range(env, bad);
      cfg.vcpus = ctl->vcpus;
    }
    events_ = napi_guest::EventChannel::Create(env, cb, "understudy-kvm-events");
    std::shared_ptr<napi_guest::EventChannel> events = events_;
    auto notify = [events](vmm::Vm::Event ev) {
      const int kind = ev == vmm::Vm::Event::finished ? 0 : 1;
      events->Call([kind](Napi::Env env, Napi::Function fn) {
        // At environment teardown (process exit with an event still queued) the call comes with
        // no env and no function, only so the queued data can be freed: Deliver drops it then.
        napi_guest::EventChannel::Deliver(env, fn, [&] {
          return std::vector<napi_value>{Napi::String::New(env, kind == 0 ? "finished" : "error")};
        });
      });
    };
    try {
      guarded(env, [&] {
        vm_ = std::make_unique<vmm::Vm>(mapping_->data(), mapping_->size(), cfg, notify);
        if (!cpu.IsUndefined()) {
          try {
            vm_->load(parsed.vcpus);
          } catch (const vmm::SysError& e) {
            // A well-checksummed blob whose registers KVM refuses (EINVAL from KVM_SET_*) is bad
            // input, not a system failure.
            if (e.err() != EINVAL) throw;
            throw std::range_error(std::string("`cpu` holds a vCPU state KVM refuses: ") + e.what());
          }
          vm_->set_pending_output(std::move(parsed.pending));
        } else {
          vm_->boot(vmm::kPayloadImage, vmm::kPayloadSize);
        }
      });
    } catch (...) {
      Shutdown();
      throw;
    }
  }

 private:
  vmm::Vm& vm(Napi::Env env) {
    if (!vm_) throw Napi::Error::New(env, "the guest is closed");
    return *vm_;
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { vm(info.Env()).start(); });
    RefWhileRunning(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Pause(const Napi::CallbackInfo& info) {
    const uint64_t ns = guarded(info.Env(), [&] { return vm(info.Env()).pause(); });
    if (events_) events_->Unref(info.Env());
    return Napi::Number::New(info.Env(), static_cast<double>(ns));
  }

  Napi::Value Resume(const Napi::CallbackInfo& info) {
    vm(info.Env()).resume();
    RefWhileRunning(info.Env());
    return info.Env().Undefined();
  }

  void RefWhileRunning(Napi::Env env) {
    if (events_ && vm_ && !vm_->finished() && !vm_->failed() && !vm_->paused()) events_->Ref(env);
  }

  // take_dirty(bitmap: Uint8Array of ceil(pages/8) bytes) -> Uint32Array of dirty pfns
  Napi::Value TakeDirty(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vmm::Vm& v = vm(env);
    napi_util::Bytes out = napi_util::u8(info[0], "bitmap");
    const uint64_t pages = v.pages();
    if (out.length != (pages + 7) / 8) {
      throw_range(env, "`bitmap` must be " + std::to_string((pages + 7) / 8) + " bytes, got " +
                           std::to_string(out.length));
    }
    if (!v.paused()) throw Napi::Error::New(env, "takeDirty() needs a paused guest: call pause() first");
    words_.resize((pages + 63) / 64);
    const uint64_t count = guarded(env, [&] { return v.take_dirty(words_.data()); });
    // SAFETY: out.length == ceil(pages/8) <= words_.size() * 8.
    std::memcpy(out.data, words_.data(), out.length);
    // The bitmap scan kernel (SIMD, word-skipping); it may use 64 scratch slots per word.
    scratch_.resize(words_.size() * 64);
    const size_t n = kernels::active().bitmap->scan(reinterpret_cast<const uint8_t*>(words_.data()),
                                                    words_.size() * 8, 0, scratch_.data());
    if (n != count) throw Napi::Error::New(env, "internal error: dirty bitmap scan disagrees with its count");
    Napi::Uint32Array pfns = Napi::Uint32Array::New(env, n);
    // SAFETY: n <= scratch_.size() and pfns holds n entries.
    if (n) std::memcpy(pfns.Data(), scratch_.data(), n * sizeof(uint32_t));
    return pfns;
  }

  // take_output() -> { records: Uint8Array (n x 64 bytes: u64 seq, u32 len, u32 0, 48 data),
  // chains: BigUint64Array }
  Napi::Value TakeOutput(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<guest::Record> recs;
    guarded(env, [&] { vm(env).take_output(recs); });
    Napi::Uint8Array records = Napi::Uint8Array::New(env, recs.size() * 64);
    Napi::BigUint64Array chains = Napi::BigUint64Array::New(env, recs.size());
    for (size_t i = 0; i < recs.size(); ++i) {
      // SAFETY: records holds recs.size() slots of 64 bytes; each write stays inside slot i.
      uint8_t* slot = records.Data() + i * 64;
      std::memcpy(slot, &recs[i].seq, 8);
      std::memcpy(slot + 8, &recs[i].len, 4);
      std::memcpy(slot + 16, recs[i].data, US_RECORD_DATA);
      chains[i] = recs[i].chain;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", records);
    o.Set("chains", chains);
    return o;
  }

  Napi::Value SaveCpu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    vmm::Vm& v = vm(env);
    if (!v.paused()) throw Napi::Error::New(env, "saveCpu() needs a paused guest: call pause() first");
    // SAFETY: the mapping is >= US_MIN_MEMORY bytes, so the control page is inside it.
    const std::vector<uint8_t> blob =
        guarded(env, [&] { return vmm::cpu_blob::encode(v.save(), mapping_->data(), v.size(), v.pending_output()); });
    Napi::Uint8Array out = Napi::Uint8Array::New(env, blob.size());
    std::memcpy(out.Data(), blob.data(), blob.size());
    return out;
  }

  Napi::Value SetClock(const Napi::CallbackInfo& info) {
    vm(info.Env()).set_clock(big_u64(info[0], "value"));
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const vmm::VmStats s = vm(env).stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("exits", static_cast<double>(s.exits));
    o.Set("ioExits", static_cast<double>(s.io_exits));
    o.Set("doorbells", static_cast<double>(s.doorbells));
    o.Set("kicks", static_cast<double>(s.kicks));
    o.Set("ringFull", static_cast<double>(s.ring_full));
    o.Set("dirty", vm_->dirty_mode() == vmm::DirtyMode::ring ? "ring" : vm_->dirty_mode() == vmm::DirtyMode::none ? "none" : "bitmap");
    return o;
  }

  Napi::Value Error(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!vm_ || !vm_->failed()) return env.Null();
    // A failed guest runs no more: it must not keep the process alive (as Final() for a finished one).
    if (events_) events_->Unref(env);
    return Napi::String::New(env, vm_->error());
  }

  Napi::Value PanicCode(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), vm_ ? vm_->panic_code() : uint64_t{0});
  }

  Napi::Value Final(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!vm_ || !vm_->finished()) return env.Null();
    if (events_) events_->Unref(env);
    return Napi::BigInt::New(env, vm_->final_checksum());
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (vm_) {
      vm_->close();
      vm_.reset();
    }
    if (events_) {
      events_->Release();
      events_.reset();
    }
    mapping_.reset();
  }

  std::shared_ptr<runtime::Mapping> mapping_;
  std::unique_ptr<vmm::Vm> vm_;
  std::shared_ptr<napi_guest::EventChannel> events_;
  std::vector<uint64_t> words_;
  std::vector<uint32_t> scratch_;
};

Napi::FunctionReference* KvmVm::ctor = nullptr;

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto mem = napi_memory::unwrap(info[0], "memory");
  if (!info[1].IsObject()) throw_type(env, "`options` must be an object");
  if (!info[2].IsFunction()) throw_type(env, "`onEvent` must be a function");
  Napi::Object obj = KvmVm::ctor->New({});
  KvmVm::Unwrap(obj)->Init(env, std::move(mem), info[1].As<Napi::Object>(), info[2].As<Napi::Function>());
  return obj;
}

Napi::Value ProbeKvm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const vmm::Probe p = vmm::probe();
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", p.ok);
  if (!p.ok) o.Set("reason", p.reason);
  o.Set("apiVersion", p.api_version);
  o.Set("manualProtect", p.manual_protect);
  if (!p.manual_protect_reason.empty()) o.Set("manualProtectReason", p.manual_protect_reason);
  o.Set("dirtyRing", p.dirty_ring);
  o.Set("dirtyRingMaxBytes", static_cast<double>(p.dirty_ring_max_bytes));
  if (!p.dirty_ring_reason.empty()) o.Set("dirtyRingReason", p.dirty_ring_reason);
  o.Set("maxVcpus", p.max_vcpus);
  o.Set("xsaveSize", static_cast<double>(p.xsave_size));
  return o;
}

}  // namespace

void InitGuestKvm(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = KvmVm::Define(env);
  KvmVm::ctor = new Napi::FunctionReference(Napi::Persistent(cls));
  exports.Set("kvm_create", Napi::Function::New(env, Create, "kvm_create"));
  exports.Set("guest_check_state", Napi::Function::New(env, CheckState, "guest_check_state"));
  exports.Set("kvm_probe", Napi::Function::New(env, ProbeKvm, "kvm_probe"));
  exports.Set("kvm_payload_size", Napi::Number::New(env, static_cast<double>(vmm::kPayloadSize)));
}
