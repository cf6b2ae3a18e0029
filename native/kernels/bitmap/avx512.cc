// Kernel family "bitmap", AVX-512 variant. One vptestmq per 64-byte block yields the mask of its
// nonzero words, so zero words are never loaded twice; dense words are expanded 16 bits at a time
// with vpcompressd (indices of the set lanes of an iota vector), sparse ones with tzcnt/blsr.
// Counting uses the vpshufb nibble popcount on 64-byte vectors (AVX512BW; VPOPCNTDQ is not
// assumed).
// GCC 12 reports _mm512_undefined_* inside its own intrinsic headers as uninitialised (a false
// positive when they are inlined); silence that for this unit only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/bitmap/bitmap.h"

namespace kernels::bitmap {
namespace avx512_isa {
namespace {
#include "kernels/bitmap/generic.inc"

inline size_t emit_word(uint64_t w, uint32_t bit0, uint32_t* out, size_t n) {
  const unsigned cnt = static_cast<unsigned>(_mm_popcnt_u64(w));
  // SAFETY: 64 entries are reserved per word (see Ops::scan); every store below writes at most
  // 16 entries starting no further than 48 entries past n.
  uint32_t* o = out + n;
  if (cnt <= 8) {
    for (int k = 0; k < 8; k++) {
      o[k] = bit0 + static_cast<uint32_t>(_tzcnt_u64(w));
      w = _blsr_u64(w);
    }
  } else {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i at = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int>(bit0)));
    const __m512i sixteen = _mm512_set1_epi32(16);
    for (int q = 0; q < 4; q++) {
      const __mmask16 m = static_cast<__mmask16>(w >> (16 * q));
      _mm512_storeu_si512(o, _mm512_maskz_compress_epi32(m, at));
      o += _mm_popcnt_u32(m);
      at = _mm512_add_epi32(at, sixteen);
    }
  }
  return n + cnt;
}

size_t scan_avx512(const uint8_t* bits, size_t nbytes, uint32_t base, uint32_t* out) {
  size_t n = 0, i = 0;
  for (; i + 64 <= nbytes; i += 64) {
    const __m512i v = _mm512_loadu_si512(bits + i);
    unsigned m = _mm512_test_epi64_mask(v, v);
    while (m != 0) {
      const unsigned k = static_cast<unsigned>(__builtin_ctz(m));
      m &= m - 1;
      n = emit_word(load64(bits + i + 8 * k), base + static_cast<uint32_t>((i + 8 * k) * 8), out, n);
    }
  }
  for (; i + 8 <= nbytes; i += 8) {
    const uint64_t w = load64(bits + i);
    if (w != 0) n = emit_word(w, base + static_cast<uint32_t>(i * 8), out, n);
  }
  return scan_tail(bits, i, nbytes, base, out, n);
}

uint64_t count_avx512(const uint8_t* bits, size_t nbytes) {
  const __m512i lut = _mm512_set4_epi32(0x04030302, 0x03020201, 0x03020201, 0x02010100);
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512i acc = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 64 <= nbytes; i += 64) {
    const __m512i v = _mm512_loadu_si512(bits + i);
    const __m512i c = _mm512_add_epi8(_mm512_shuffle_epi8(lut, _mm512_and_si512(v, low)),
                                      _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(v, 4), low)));
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(c, _mm512_setzero_si512()));
  }
  uint64_t c = static_cast<uint64_t>(_mm512_reduce_add_epi64(acc));
  for (; i + 8 <= nbytes; i += 8) c += static_cast<uint64_t>(_mm_popcnt_u64(load64(bits + i)));
  return c + count_tail(bits, i, nbytes);
}

}  // namespace
}  // namespace avx512_isa

extern const Ops ops_avx512 = {"avx512", avx512_isa::scan_avx512, avx512_isa::count_avx512};

}  // namespace kernels::bitmap
