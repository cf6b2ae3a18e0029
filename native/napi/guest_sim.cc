// N-API bindings for the simulated guest: sim_create(memory, dirtyTracking, onEvent) and
// sim_restore(memory, cpu, dirtyTracking, onEvent) return a handle with start/pause/resume/
// set_clock/take_dirty/take_output/save_cpu/close. The memory's control page is set up by
// guest_setup (fresh) or is a restored image, validated here.
//
// Events from the vCPU threads reach JS through a ThreadSafeFunction calling
// onEvent(kind: 'exit' | 'error', final: string, message: string, panicCode: bigint). The TSFN
// holds the event loop open only while the guest runs (ref on start/resume, unref on pause, on
// the final event and on close), so a finished or paused guest never keeps the process alive.
#include <napi.h>

#include <memory>

#include "common/napi_util.h"
#include "guest/control.h"
#include "napi/guest_common.h"
#include "napi/memory.h"
#include "sim/sim.h"

namespace {

class SimHandle : public Napi::ObjectWrap<SimHandle> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "SimGuest",
                       {InstanceMethod("start", &SimHandle::Start), InstanceMethod("pause", &SimHandle::Pause),
                        InstanceMethod("resume", &SimHandle::Resume), InstanceMethod("set_clock", &SimHandle::SetClock),
                        InstanceMethod("take_dirty", &SimHandle::TakeDirty),
                        InstanceMethod("take_output", &SimHandle::TakeOutput),
                        InstanceMethod("save_cpu", &SimHandle::SaveCpu), InstanceMethod("close", &SimHandle::Close),
                        InstanceMethod("progress", &SimHandle::Progress),
                        InstanceMethod("unref", &SimHandle::UnrefMethod)});
  }

  explicit SimHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SimHandle>(info) {}
  ~SimHandle() override { Shutdown(); }

  // Builds the guest over `mem` (control page ready) and, for a restore, its pending records.
  void Init(Napi::Env env, std::shared_ptr<runtime::Mapping> mem, bool tracking, Napi::Function on_event,
            std::vector<guest::Record> pending) {
    events_ = napi_guest::EventChannel::Create(env, on_event, "understudy-sim");
    std::shared_ptr<napi_guest::EventChannel> events = events_;
    guest_ = std::make_unique<sim::SimGuest>(std::move(mem), tracking, [events](const sim::Event& ev) {
      auto* copy = new sim::Event(ev);
      const bool queued = events->Call(copy, [](Napi::Env env, Napi::Function fn, sim::Event* e) {
        std::unique_ptr<sim::Event> own(e);
        napi_guest::EventChannel::Deliver(env, fn, [&] {
          return std::vector<napi_value>{Napi::String::New(env, e->kind == sim::Event::kExit ? "exit" : "error"),
                                         Napi::String::New(env, guest::hex16(e->final)),
                                         Napi::String::New(env, e->message), Napi::BigInt::New(env, e->panic_code)};
        });
      });
      if (!queued) delete copy;
    });
    if (!pending.empty()) guest_->set_pending(std::move(pending));
  }

 private:
  sim::SimGuest& G(Napi::Env env) {
    if (!guest_) throw Napi::Error::New(env, "the guest is closed");
    return *guest_;
  }
  void Ref(Napi::Env env) {
    if (events_) events_->Ref(env);
  }
  void Unref(Napi::Env env) {
    if (events_) events_->Unref(env);
  }
  void Shutdown() {
    if (guest_) {
      guest_->close();
      guest_.reset();
    }
    if (events_) {
      events_->Release();
      events_.reset();
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    G(info.Env()).start();
    if (!G(info.Env()).paused()) Ref(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value Pause(const Napi::CallbackInfo& info) {
    G(info.Env()).pause();
    Unref(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    G(info.Env()).resume();
    if (!info[0].ToBoolean().Value()) Ref(info.Env());  // resume(true): already finished, stay unref'd
    return info.Env().Undefined();
  }
  Napi::Value SetClock(const Napi::CallbackInfo& info) {
    G(info.Env()).set_clock(napi_guest::u64_arg(info[0], "clock"));
    return info.Env().Undefined();
  }
  // take_dirty() -> { bitmap: Uint8Array, pfns: Uint32Array }
  Napi::Value TakeDirty(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    sim::SimGuest& g = G(env);
    Napi::Uint8Array bitmap = Napi::Uint8Array::New(env, (g.pages() + 7) / 8);
    g.take_dirty(bitmap.Data(), bitmap.ByteLength(), &pfns_);
    Napi::Uint32Array pfns = Napi::Uint32Array::New(env, pfns_.size());
    if (!pfns_.empty()) std::memcpy(pfns.Data(), pfns_.data(), pfns_.size() * 4);
    Napi::Object o = Napi::Object::New(env);
    o.Set("bitmap", bitmap);
    o.Set("pfns", pfns);
    return o;
  }
  Napi::Value TakeOutput(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<guest::Record> recs;
    const std::string err = G(env).take_output(&recs);
    if (!err.empty()) throw Napi::Error::New(env, err);
    return napi_guest::records_to_js(env, recs);
  }
  Napi::Value SaveCpu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    sim::SimGuest& g = G(env);
    if (!g.paused()) throw Napi::Error::New(env, "saveCpu() needs a paused guest: call pause() first");
    const std::vector<uint8_t> blob = g.save_cpu();
    Napi::Uint8Array out = Napi::Uint8Array::New(env, blob.size());
    std::memcpy(out.Data(), blob.data(), blob.size());
    return out;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Unref(info.Env());
    Shutdown();
    return info.Env().Undefined();
  }
  // unref(): the guest finished or failed; stop holding the event loop.
  Napi::Value UnrefMethod(const Napi::CallbackInfo& info) {
    Unref(info.Env());
    return info.Env().Undefined();
  }
  // progress() -> [steps done (all vCPUs), steps total]
  Napi::Value Progress(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env, 2);
    if (!guest_) return a;
    a.Set(0u, Napi::Number::New(env, static_cast<double>(guest_->steps_done())));
    a.Set(1u, Napi::Number::New(env, static_cast<double>(guest_->steps_total())));
    return a;
  }

  std::unique_ptr<sim::SimGuest> guest_;
  std::shared_ptr<napi_guest::EventChannel> events_;
  std::vector<uint32_t> pfns_;
};

Napi::FunctionReference* SimHandle::ctor = nullptr;

Napi::Function event_fn(const Napi::Value& v) {
  if (!v.IsFunction()) napi_util::throw_type(v.Env(), "`onEvent` must be a function");
  return v.As<Napi::Function>();
}

// sim_create(memory, dirtyTracking, onEvent): the control page must be set up (guest_setup).
Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto mem = napi_memory::unwrap(info[0], "memory");
  const std::string err = guest::check_control(mem->data(), mem->size(), "memory");
  if (!err.empty()) napi_util::throw_range(env, err);
  Napi::Object obj = SimHandle::ctor->New({});
  SimHandle::Unwrap(obj)->Init(env, std::move(mem), info[1].ToBoolean().Value(), event_fn(info[2]), {});
  return obj;
}

// sim_restore(memory, cpu, dirtyTracking, onEvent): memory holds the image; cpu is a sim blob.
Napi::Value Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto mem = napi_memory::unwrap(info[0], "memory");
  const napi_util::Bytes cpu = napi_util::u8(info[1], "cpu");
  std::string err = guest::check_control(mem->data(), mem->size(), "memoryImage");
  if (!err.empty()) napi_util::throw_range(env, err);
  std::vector<guest::Record> pending;
  err = sim::decode_cpu(cpu.data, cpu.length, mem->data(), mem->size(), &pending);
  if (!err.empty()) napi_util::throw_range(env, err);
  Napi::Object obj = SimHandle::ctor->New({});
  SimHandle::Unwrap(obj)->Init(env, std::move(mem), info[2].ToBoolean().Value(), event_fn(info[3]), std::move(pending));
  return obj;
}

}  // namespace

void InitGuestSim(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = SimHandle::Define(env);
  SimHandle::ctor = new Napi::FunctionReference(Napi::Persistent(cls));
  exports.Set("sim_create", Napi::Function::New(env, Create, "sim_create"));
  exports.Set("sim_restore", Napi::Function::New(env, Restore, "sim_restore"));
}
