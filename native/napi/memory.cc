// N-API bindings for guest memory: memory_allocate(bytes, maxBytes) and
// memory_map_file(path, writable, maxBytes)
// return a handle object { buffer: ArrayBuffer (external, zero-copy), fd, close() }. close()
// detaches the ArrayBuffer, so every view over it reads as length 0 (never a dangling pointer),
// and drops this handle's reference to the mapping.
#include "napi/memory.h"

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <string>

#include "common/napi_util.h"

namespace napi_memory {

namespace {

class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeMemory",
                       {InstanceMethod("close", &Handle::Close),
                        InstanceAccessor("fd", &Handle::Fd, nullptr),
                        InstanceAccessor("closed", &Handle::Closed, nullptr),
                        InstanceAccessor("byteLength", &Handle::ByteLength, nullptr),
                        InstanceAccessor("buffer", &Handle::Buffer, nullptr)});
  }

  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {}

  void Attach(Napi::Env env, std::shared_ptr<runtime::Mapping> m) {
    mapping_ = std::move(m);
    Napi::ArrayBuffer ab;
    if (mapping_->size() == 0) {
      ab = Napi::ArrayBuffer::New(env, 0);
    } else {
      // The ArrayBuffer holds its own reference: the pages stay mapped while V8 may touch them.
      auto* keep = new std::shared_ptr<runtime::Mapping>(mapping_);
      ab = Napi::ArrayBuffer::New(
          env, mapping_->data(), mapping_->size(),
          [](Napi::Env, void*, std::shared_ptr<runtime::Mapping>* k) { delete k; }, keep);
    }
    buffer_ = Napi::Persistent(ab);
  }

  std::shared_ptr<runtime::Mapping> mapping() const { return mapping_; }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (mapping_) {
      Napi::ArrayBuffer ab = buffer_.Value();
      if (ab.ByteLength() > 0 && !ab.IsDetached()) ab.Detach();
      buffer_.Reset();
      mapping_.reset();
    }
    return info.Env().Undefined();
  }
  Napi::Value Fd(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), mapping_ ? mapping_->fd() : -1);
  }
  Napi::Value Closed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !mapping_);
  }
  Napi::Value ByteLength(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), mapping_ ? static_cast<double>(mapping_->size()) : 0);
  }
  Napi::Value Buffer(const Napi::CallbackInfo& info) {
    if (!mapping_) return Napi::ArrayBuffer::New(info.Env(), 0);
    return buffer_.Value();
  }

  std::shared_ptr<runtime::Mapping> mapping_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

Napi::FunctionReference* Handle::ctor = nullptr;

[[noreturn]] void throw_sys(Napi::Env env, const runtime::SysError& e, const std::string& what) {
  Napi::Error err = Napi::Error::New(
      env, what + ": " + (e.message != nullptr ? std::string(e.message) : std::string(e.syscall) + " failed: " + std::strerror(e.err)));
  err.Set("errno", Napi::Number::New(env, e.err));
  err.Set("syscall", Napi::String::New(env, e.syscall));
  const char* code = e.err == ENOENT ? "ENOENT" : e.err == EACCES ? "EACCES" : e.err == ENOMEM ? "ENOMEM"
                     : e.err == EINVAL ? "EINVAL" : e.err == EPERM ? "EPERM" : e.err == EISDIR ? "EISDIR"
                     : e.err == EFBIG ? "EFBIG" : "ESYS";
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

// The largest ArrayBuffer this Node.js makes (buffer.constants.MAX_LENGTH, passed by
// lib/kernels/memory.ts: 4 GiB on Node 20). Node refuses a larger external buffer, and on Node 20
// that refusal frees the finalizer's data twice, so a larger mapping must never reach wrap().
uint64_t max_bytes(const Napi::Value& v) {
  return v.IsNumber() ? napi_util::uint(v, "maxBytes", 1ull << 53) : uint64_t{1} << 32;
}

Napi::Value Allocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint64_t limit = std::min<uint64_t>(max_bytes(info[1]), 1ull << 46);
  const uint64_t bytes = napi_util::uint(info[0], "bytes", limit);
  if ((bytes + runtime::Mapping::page_size() - 1) / runtime::Mapping::page_size() * runtime::Mapping::page_size() > limit) {
    napi_util::throw_range(env, "`bytes` rounded up to whole pages must be at most " + std::to_string(limit) +
                                    ", got " + std::to_string(bytes));
  }
  runtime::SysError e;
  auto m = runtime::Mapping::allocate(static_cast<size_t>(bytes), &e);
  if (!m) throw_sys(env, e, "allocateMemory(" + std::to_string(bytes) + ")");
  return wrap(env, std::move(m));
}

Napi::Value MapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) napi_util::throw_type(env, "`path` must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.find('\0') != std::string::npos) napi_util::throw_type(env, "`path` must not contain a NUL byte");
  const bool writable = info[1].ToBoolean().Value();
  const uint64_t limit = max_bytes(info[2]);
  runtime::SysError e;
  auto m = runtime::Mapping::map_file(path, writable, static_cast<size_t>(limit), &e);
  if (!m && e.err == EFBIG) {
    napi_util::throw_range(env, "`path` (" + path + ") is larger than the largest buffer this Node.js can make (" +
                                    std::to_string(limit) + " bytes)");
  }
  if (!m) throw_sys(env, e, "mapFile(" + path + ")");
  return wrap(env, std::move(m));
}

}  // namespace

Napi::Value wrap(Napi::Env env, std::shared_ptr<runtime::Mapping> m) {
  Napi::Object obj = Handle::ctor->New({});
  Handle::Unwrap(obj)->Attach(env, std::move(m));
  return obj;
}

std::shared_ptr<runtime::Mapping> unwrap(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Handle::ctor->Value())) {
    napi_util::throw_type(env, std::string("`") + name + "` must be guest memory from allocateMemory() or mapFile()");
  }
  auto m = Handle::Unwrap(v.As<Napi::Object>())->mapping();
  if (!m) throw Napi::Error::New(env, std::string("`") + name + "` was closed");
  return m;
}

}  // namespace napi_memory

void InitMemory(Napi::Env env, Napi::Object exports) {
  using namespace napi_memory;
  Napi::Function cls = Handle::Define(env);
  Handle::ctor = new Napi::FunctionReference(Napi::Persistent(cls));
  exports.Set("memory_allocate", Napi::Function::New(env, Allocate, "memory_allocate"));
  exports.Set("memory_map_file", Napi::Function::New(env, MapFile, "memory_map_file"));
}
