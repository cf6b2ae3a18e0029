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
// length 0 and data nullptr. Views over a SharedArrayBuffer work too: their data pointer comes
// from napi_get_typedarray_info / napi_get_dataview_info, which (unlike napi_get_arraybuffer_info)
// accept a shared buffer behind the view.
inline Bytes bytes(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  Bytes b;
  void* data = nullptr;
  if (v.IsTypedArray()) {
    napi_typedarray_type type;
    size_t elems = 0, offset = 0;
    if (napi_get_typedarray_info(env, v, &type, &elems, &data, nullptr, &offset) != napi_ok) {
      throw_type(env, std::string("`") + name + "` must be a Uint8Array");
    }
    b.length = elems * v.As<Napi::TypedArray>().ElementSize();
  } else if (v.IsDataView()) {
    size_t len = 0, offset = 0;
    if (napi_get_dataview_info(env, v, &len, &data, nullptr, &offset) != napi_ok) {
      throw_type(env, std::string("`") + name + "` must be a Uint8Array");
    }
    b.length = len;
  } else if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    b.length = ab.ByteLength();
    data = b.length ? ab.Data() : nullptr;
  } else {
    throw_type(env, std::string("`") + name + "` must be a Uint8Array");
  }
  b.data = b.length ? static_cast<uint8_t*>(data) : nullptr;
  return b;
}

// True when [a, a + alen) and [b, b + blen) share a byte (addresses only, never dereferenced).
inline bool overlaps(const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  if (alen == 0 || blen == 0) return false;
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a0 < b0 + blen && b0 < a0 + alen;
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
