// Builds the dispatch table from the per-family, per-ISA ops and picks the active row.
#include "kernels/dispatch.h"

#include <atomic>
#include <cstdlib>

namespace kernels {

namespace {

const Table kRows[] = {
    {"avx512", cpu::Isa::avx512, &bitmap::ops_avx512, &copy::ops_avx512, &delta::ops_avx512,
     &hash::ops_avx512},
    {"avx2", cpu::Isa::avx2, &bitmap::ops_avx2, &copy::ops_avx2, &delta::ops_avx2, &hash::ops_avx2},
    {"scalar", cpu::Isa::scalar, &bitmap::ops_scalar, &copy::ops_scalar, &delta::ops_scalar,
     &hash::ops_scalar},
};

const char* g_env_warning = nullptr;

const Table* initial() {
  cpu::Isa want = cpu::best();
  if (const char* env = std::getenv("UNDERSTUDY_ISA"); env != nullptr && *env != '\0') {
    cpu::Isa forced;
    if (!cpu::parse(env, &forced)) {
      g_env_warning = "UNDERSTUDY_ISA must be one of scalar, avx2, avx512; ignored";
    } else if (!cpu::supported(forced)) {
      g_env_warning = "UNDERSTUDY_ISA names an ISA this CPU cannot run; ignored";
    } else {
      want = forced;
    }
  }
  return &row(want);
}

std::atomic<const Table*>& current() {
  static std::atomic<const Table*> t{initial()};
  return t;
}

}  // namespace

const Table& row(cpu::Isa isa) {
  for (const Table& t : kRows) {
    if (t.isa == isa) return t;
  }
  return kRows[2];
}

const Table& active() { return *current().load(std::memory_order_acquire); }

bool select(cpu::Isa isa) {
  if (!cpu::supported(isa)) return false;
  current().store(&row(isa), std::memory_order_release);
  return true;
}

const char* env_warning() {
  (void)active();
  return g_env_warning;
}

}  // namespace kernels
