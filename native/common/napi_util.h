// Small helpers for the N-API layer: argument unwrapping that throws TypeError/RangeError naming
// the argument, and a byte-span view of any TypedArray/Buffer/ArrayBuffer.
//
// The TypeScript layer validates first; these are the cheap backstop so that no input, however
// wrong, can make native code touch memory it does not own.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace napi_util {

struct Bytes {
  uint8_t* data = nullptr;
  size_t length = 0;
};

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}
[[noreturn]] inline void throw_range(Napi::Env env, const std::string& msg) {
  throw Napi::RangeError::New(env, msg);
}

// Any ArrayBufferView (TypedArray, DataView, Buffer) or ArrayBuffer. A detached buffer yields
// length 0 and data nullptr.
inline Bytes bytes(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  Bytes b;
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    const size_t elem = ta.ElementSize();
    b.length = ta.ElementLength() * elem;
    b.data = b.length ? static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset() : nullptr;
    return b;
  }
  if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    b.length = dv.ByteLength();
    b.data = b.length ? static_cast<uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset() : nullptr;
    return b;
  }
  if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    b.length = ab.ByteLength();
    b.data = b.length ? static_cast<uint8_t*>(ab.Data()) : nullptr;
    return b;
  }
  throw_type(env, std::string("`") + name + "` must be a Uint8Array");
}

// A Uint8Array (or Buffer) specifically.
inline Bytes u8(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw_type(v.Env(), std::string("`") + name + "` must be a Uint8Array");
  }
  return bytes(v, name);
}

// A Uint32Array specifically; returns element pointer and count.
inline uint32_t* u32(const Napi::Value& v, const char* name, size_t* count) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    throw_type(v.Env(), std::string("`") + name + "` must be a Uint32Array");
  }
  Bytes b = bytes(v, name);
  *count = b.length / 4;
  return reinterpret_cast<uint32_t*>(b.data);
}

// A non-negative integer Number no larger than `max`.
inline uint64_t uint(const Napi::Value& v, const char* name, uint64_t max) {
  Napi::Env env = v.Env();
  if (!v.IsNumber()) throw_type(env, std::string("`") + name + "` must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != static_cast<double>(static_cast<uint64_t>(d)) ||
      d > static_cast<double>(max)) {
    throw_range(env, std::string("`") + name + "` must be an integer from 0 to " +
                         std::to_string(max) + ", got " + v.ToString().Utf8Value());
  }
  return static_cast<uint64_t>(d);
}

// Page size: a power of two from 512 to 1 MiB (4096 is the norm).
inline size_t page_size(const Napi::Value& v, const char* name = "pageSize") {
  const uint64_t p = uint(v, name, 1u << 20);
  if (p < 512 || (p & (p - 1)) != 0) {
    throw_range(v.Env(), std::string("`") + name + "` must be a power of two from 512 to 1048576, got " +
                             std::to_string(p));
  }
  return static_cast<size_t>(p);
}

}  // namespace napi_util
