// Kernel family "bitmap", AVX2 variant. Zero blocks of 64 bytes are skipped with one vptest; in
// the others only the nonzero words are visited (vpcmpeqq + movemask gives their mask); a
// nonzero word with few bits is walked with tzcnt/blsr (eight unconditional stores, no branch per
// bit); a dense word goes through a byte lookup table, one 32-byte store per bitmap byte, so high
// densities run at the speed of writing the output. Counting uses the vpshufb nibble popcount.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/bitmap/bitmap.h"

namespace kernels::bitmap {
namespace avx2_isa {
namespace {
#include "kernels/bitmap/generic.inc"

// kPos[b] lists the positions of the set bits of byte b, ascending, padded with zeros.
struct PosTable {
  alignas(64) uint8_t pos[256][8];
  constexpr PosTable() : pos() {
    for (int b = 0; b < 256; b++) {
      int k = 0;
      for (int bit = 0; bit < 8; bit++) {
        if (b & (1 << bit)) pos[b][k++] = static_cast<uint8_t>(bit);
      }
    }
  }
};
constexpr PosTable kPos{};

inline size_t emit_word(uint64_t w, uint32_t bit0, uint32_t* out, size_t n) {
  const unsigned cnt = static_cast<unsigned>(_mm_popcnt_u64(w));
  // SAFETY: the caller reserved 64 entries per word (see Ops::scan), and n counts only bits
  // before this word, so every store below stays inside out[0, 8 * nbytes).
  uint32_t* o = out + n;
  if (cnt <= 8) {
    // Four unconditional stores, four more only when needed: short dependency chains for the
    // common one-or-two-bit word.
    for (int k = 0; k < 4; k++) {
      o[k] = bit0 + static_cast<uint32_t>(_tzcnt_u64(w));
      w = _blsr_u64(w);
    }
    if (cnt > 4) {
      for (int k = 4; k < 8; k++) {
        o[k] = bit0 + static_cast<uint32_t>(_tzcnt_u64(w));
        w = _blsr_u64(w);
      }
    }
  } else {
    __m256i at = _mm256_set1_epi32(static_cast<int>(bit0));
    const __m256i eight = _mm256_set1_epi32(8);
    for (int j = 0; j < 8; j++) {
      const unsigned byte = static_cast<unsigned>(w >> (8 * j)) & 0xffu;
      const __m128i p = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kPos.pos[byte]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm256_add_epi32(_mm256_cvtepu8_epi32(p), at));
      o += _mm_popcnt_u32(byte);
      at = _mm256_add_epi32(at, eight);
    }
  }
  return n + cnt;
}

size_t scan_avx2(const uint8_t* bits, size_t nbytes, uint32_t base, uint32_t* out) {
  size_t n = 0, i = 0;
  for (; i + 64 <= nbytes; i += 64) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + i + 32));
    const __m256i o = _mm256_or_si256(a, b);
    if (_mm256_testz_si256(o, o)) continue;
    // Mask of the nonzero words of the block: one loop trip per nonzero word, so a mid-density
    // bitmap costs one mispredicted branch per block instead of one per word.
    const __m256i zero = _mm256_setzero_si256();
    unsigned m = ~static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(a, zero))) |
                                        (_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(b, zero))) << 4)) & 0xffu;
    while (m != 0) {
      const unsigned k = _tzcnt_u32(m);
      m = _blsr_u32(m);
      n = emit_word(load64(bits + i + 8 * k), base + static_cast<uint32_t>((i + 8 * k) * 8), out, n);
    }
  }
  for (; i + 8 <= nbytes; i += 8) {
    const uint64_t w = load64(bits + i);
    if (w != 0) n = emit_word(w, base + static_cast<uint32_t>(i * 8), out, n);
  }
  return scan_tail(bits, i, nbytes, base, out, n);
}

uint64_t count_avx2(const uint8_t* bits, size_t nbytes) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i acc = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 64 <= nbytes; i += 64) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + i + 32));
    const __m256i ca = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(a, low)),
                                       _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(a, 4), low)));
    const __m256i cb = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(b, low)),
                                       _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(b, 4), low)));
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_add_epi8(ca, cb), _mm256_setzero_si256()));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  uint64_t c = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i + 8 <= nbytes; i += 8) c += static_cast<uint64_t>(_mm_popcnt_u64(load64(bits + i)));
  return c + count_tail(bits, i, nbytes);
}

}  // namespace
}  // namespace avx2_isa

extern const Ops ops_avx2 = {"avx2", avx2_isa::scan_avx2, avx2_isa::count_avx2};

}  // namespace kernels::bitmap
