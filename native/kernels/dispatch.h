// The kernel dispatch table: one row per ISA, best first. The first row the CPU satisfies wins
// (or the row named by UNDERSTUDY_ISA, if it is supported and not higher); `scalar` is always
// present. Each kernel family contributes its own ops struct to the row.
#pragma once

#include "cpu/features.h"
#include "kernels/bitmap/bitmap.h"
#include "kernels/copy/copy.h"
#include "kernels/delta/delta.h"
#include "kernels/hash/hash.h"

namespace kernels {

struct Table {
  const char* name;
  cpu::Isa isa;
  const bitmap::Ops* bitmap;
  const copy::Ops* copy;
  const delta::Ops* delta;
  const hash::Ops* hash;
};

// The row in use. Chosen once, on first call, from CPU features and UNDERSTUDY_ISA.
const Table& active();
// The row for `isa` (whether or not it is supported: callers check cpu::supported first).
const Table& row(cpu::Isa isa);
// Switches the active row (tests use it to run every path the machine can run). Returns false
// if the CPU cannot run `isa`.
bool select(cpu::Isa isa);
// Non-null when UNDERSTUDY_ISA was set to something unusable; says why.
const char* env_warning();

}  // namespace kernels
