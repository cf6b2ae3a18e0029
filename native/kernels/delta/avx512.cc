// Kernel family "delta", AVX-512 variant: one 64-byte XOR per block and _mm512_test_epi8_mask
// gives the block's non-zero mask directly; masked stores update the shadow. Compiled on every
// build; selected only on CPUs with AVX-512F/BW (cpu::supported).
#include <immintrin.h>

// GCC 12 takes the "undefined" pass-through source that some AVX-512 intrinsics hand the
// builtins (valignq in repeat_scan, vpermq in fast_lengths_of) for a value that may be used
// uninitialised; those lanes are never read (the intrinsics are unmasked). The warning is
// reported at the intrinsics' lines in GCC's headers, so this has to come before the includes
// and covers the whole unit (this unit only).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstring>

#include "kernels/delta/delta.h"
#include "kernels/delta/huffman.h"

namespace kernels::delta {
namespace avx512_impl {

static void xor_blocks(uint8_t* prev, const uint8_t* next, size_t blocks, bool update,
                       uint8_t* xo, uint64_t* mask, uint64_t* diff, uint64_t* nonzero) {
  __m512i z = _mm512_setzero_si512();
  uint64_t d = 0;
  for (size_t b = 0; b < blocks; b++) {
    // SAFETY: b < blocks, so the 64 bytes at 64b are inside both pages and the xor buffer.
    const __m512i a = _mm512_loadu_si512(prev + b * 64);
    const __m512i c = _mm512_loadu_si512(next + b * 64);
    const __m512i x = _mm512_xor_si512(a, c);
    _mm512_storeu_si512(xo + b * 64, x);
    z = _mm512_or_si512(z, c);
    const uint64_t m = _mm512_test_epi8_mask(x, x);
    mask[b] = m;
    d |= m;
    if (update && m != 0) _mm512_storeu_si512(prev + b * 64, c);
  }
  *diff |= d;
  *nonzero |= _mm512_test_epi64_mask(z, z) ? 1 : 0;
}

// generic.inc's contract. A line and the one before it, as loaded (same size and place as
// xor_blocks stored them, so the loads forward from those stores); the words d before are one
// valignq of the two. Lines with no non-zero word are skipped, 64 at a time from a mask of them.
static void repeat_scan(const uint8_t* xo, const uint8_t* words, size_t lines, uint8_t* eq, size_t* cnt) {
  std::memset(eq, 0, 4 * lines);
  size_t c[4] = {};
  for (size_t b0 = 0; b0 < lines; b0 += 64) {
    const size_t left = lines - b0;
    const __mmask64 in = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
    // SAFETY: the masked load reads only words[b0, b0 + min(64, left)).
    uint64_t set = _mm512_test_epi8_mask(_mm512_maskz_loadu_epi8(in, words + b0), _mm512_set1_epi8(-1));
    for (; set != 0; set &= set - 1) {
      const size_t b = b0 + static_cast<size_t>(__builtin_ctzll(set));
      const __mmask8 nzw = static_cast<__mmask8>(words[b]);
      const __m512i x = _mm512_loadu_si512(xo + 64 * b);
      const __m512i p = b != 0 ? _mm512_loadu_si512(xo + 64 * (b - 1)) : _mm512_setzero_si512();
      const unsigned e[4] = {_mm512_mask_cmpeq_epi64_mask(nzw, x, _mm512_alignr_epi64(x, p, 7)),
                             _mm512_mask_cmpeq_epi64_mask(nzw, x, _mm512_alignr_epi64(x, p, 6)),
                             _mm512_mask_cmpeq_epi64_mask(nzw, x, _mm512_alignr_epi64(x, p, 4)),
                             _mm512_mask_cmpeq_epi64_mask(nzw, x, p)};
      note_repeats(eq, lines, b, e, c);
    }
  }
  for (size_t k = 0; k < 4; k++) cnt[k] = c[k];
}

#include "kernels/delta/shuffle8.inc"

#include "kernels/delta/generic.inc"

#include "kernels/delta/huffman_encode.inc"
namespace {
#include "kernels/delta/huffman_code.inc"
}  // namespace
#include "kernels/delta/huffman_decode.inc"

#include "kernels/delta/xbm_apply.inc"

}  // namespace avx512_impl

extern const Ops ops_avx512 = {"avx512", avx512_impl::encode_page_impl, avx512_impl::encode_page_split_impl,
                             avx512_impl::build_code_of, avx512_impl::fast_lengths_of, avx512_impl::encode2, avx512_impl::decode2, avx512_impl::xbm_apply};

}  // namespace kernels::delta
