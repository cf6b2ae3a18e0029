// A small persistent worker pool for batch kernels (encodePages, hashPages, ...).
//
// parallel_for splits [0, n) into `parts` contiguous chunks and runs fn(begin, end) on up to
// `threads` threads; the calling thread does one share itself and returns when all are done.
// Safe to call from several threads at once (each call waits only for its own chunks). Never
// calls into N-API: callers run it inside AsyncWorker::Execute or a plain native thread.
#pragma once

#include <cstddef>
#include <functional>

namespace runtime {

// Number of hardware threads (at least 1).
unsigned hardware_threads();

void parallel_for(std::size_t n, unsigned threads,
                  const std::function<void(std::size_t begin, std::size_t end)>& fn);

}  // namespace runtime
