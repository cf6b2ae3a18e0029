// Kernel family "hash": per-page XXH3-64 (seeded), XXH3-128 fingerprints and all-zero detection.
//
// The hashes are Debian's libxxhash (xxhash.h, header-only with XXH_INLINE_ALL), compiled once per
// ISA translation unit with XXH_VECTOR fixed to that ISA's accumulator (SSE2 baseline, AVX2,
// AVX-512), so our own dispatch table picks the variant and every variant is the reference code,
// bit-exact with xxhsum and every other XXH3 implementation.
//
// Kernels work on a range of whole pages; the N-API layer checks sizes and splits big inputs
// across threads (zero-page ranges start at a multiple of 8 pages, so no two threads share a
// bitmap byte).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels::hash {

struct Ops {
  const char* isa;
  // out[i] = XXH3_64bits_withSeed(data + i * page_size, page_size, seed) for i < n.
  void (*hash64)(const uint8_t* data, size_t n, size_t page_size, uint64_t seed, uint64_t* out);
  // out[16 i, +16) = XXH128_canonicalFromHash(XXH3_128bits(page i)): high 64 bits first, each
  // half big-endian (the byte order xxhsum prints).
  void (*hash128)(const uint8_t* data, size_t n, size_t page_size, uint8_t* out);
  // For pages [first, first + n): sets bit (p & 7) of bitmap[p >> 3] when page p is all zero and
  // clears it otherwise. `first` is a multiple of 8; bytes holding pages outside the range are
  // left alone.
  void (*zero)(const uint8_t* data, size_t first, size_t n, size_t page_size, uint8_t* bitmap);
  // One XXH3-64 over a whole buffer (the ceiling the benchmarks compare against).
  uint64_t (*xxh3_64)(const uint8_t* data, size_t len, uint64_t seed);
};

extern const Ops ops_scalar;
extern const Ops ops_avx2;
extern const Ops ops_avx512;

}  // namespace kernels::hash
