// CPUID + XGETBV feature tests. AVX2 needs the OS to save YMM state (XCR0 bits 1-2); AVX-512
// additionally needs opmask and ZMM state (XCR0 bits 5-7).
#include "cpu/features.h"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define UNDERSTUDY_X86 1
#endif

namespace cpu {

const char* name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "scalar";
  }
}

bool parse(const char* text, Isa* out) {
  if (std::strcmp(text, "scalar") == 0) { *out = Isa::scalar; return true; }
  if (std::strcmp(text, "avx2") == 0) { *out = Isa::avx2; return true; }
  if (std::strcmp(text, "avx512") == 0) { *out = Isa::avx512; return true; }
  return false;
}

namespace {

#ifdef UNDERSTUDY_X86
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

struct Features {
  bool avx2 = false;
  bool avx512 = false;
};

Features detect() {
  Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool avx = c & (1u << 28);
  const bool fma = c & (1u << 12);
  const bool popcnt = c & (1u << 23);
  if (!osxsave || !avx) return f;
  const unsigned long long xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool bmi1 = b & (1u << 3);
  const bool bmi2 = b & (1u << 8);
  const bool avx512f = b & (1u << 16);
  const bool avx512dq = b & (1u << 17);
  const bool avx512bw = b & (1u << 30);
  const bool avx512vl = b & (1u << 31);
  unsigned ea = 0, eb = 0, ec = 0, ed = 0;
  const bool lzcnt = __get_cpuid(0x80000001, &ea, &eb, &ec, &ed) && (ec & (1u << 5));
  f.avx2 = ymm_state && avx2 && fma && bmi1 && bmi2 && lzcnt && popcnt;
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}
#endif

}  // namespace

bool supported(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#ifdef UNDERSTUDY_X86
    case Isa::avx2: return features().avx2;
    case Isa::avx512: return features().avx512;
#endif
    default: return false;
  }
}

Isa best() {
  if (supported(Isa::avx512)) return Isa::avx512;
  if (supported(Isa::avx2)) return Isa::avx2;
  return Isa::scalar;
}

}  // namespace cpu
