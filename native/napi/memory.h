// N-API side of guest memory: other bindings (VMM, sim, store) unwrap a JS memory handle into
// the shared runtime::Mapping they keep alive while they use it.
#pragma once

#include <napi.h>

#include <memory>

#include "runtime/memory.h"

namespace napi_memory {

// The mapping behind a handle returned by memory_allocate / memory_map_file.
// Throws TypeError naming `name` if `v` is not such a handle, or Error if it was closed.
std::shared_ptr<runtime::Mapping> unwrap(const Napi::Value& v, const char* name);

// A new handle object for `m` (as memory_allocate returns).
Napi::Value wrap(Napi::Env env, std::shared_ptr<runtime::Mapping> m);

}  // namespace napi_memory
