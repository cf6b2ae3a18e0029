// CPU feature detection and ISA selection, done once at load time.
//
// The best path the CPU *and the OS* support (CPUID for the instructions, XGETBV for the saved
// register state) is chosen; UNDERSTUDY_ISA may force a lower one, never a higher one.
#pragma once

namespace cpu {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };

const char* name(Isa isa);
// Parses "scalar" | "avx2" | "avx512"; returns false for anything else.
bool parse(const char* text, Isa* out);
// True when this CPU and OS can run code compiled for `isa`.
bool supported(Isa isa);
// The best supported ISA.
Isa best();

}  // namespace cpu
