// Canonical Huffman coder for the page codec's entropy stage (see huffman.h).
#include "kernels/delta/huffman.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kernels::delta::huff {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "encode() reads eight symbols as one little-endian word");

namespace {

// log2(1 + i / 256) for i < 256, in 1/2^16 bits.
struct Log2Table {
  uint32_t frac[256];
  Log2Table() {
    for (int i = 0; i < 256; i++) frac[i] = static_cast<uint32_t>(std::lround(std::log2(1.0 + i / 256.0) * 65536.0));
  }
};

// log2(x) for x >= 1 in 1/2^16 bits, within ~0.006 bits.
uint64_t log2_fixed(uint64_t x) {
  static const Log2Table table;
  const unsigned e = 63u - static_cast<unsigned>(__builtin_clzll(x));
  const uint64_t mant = e >= 8 ? (x >> (e - 8)) & 255 : (x << (8 - e)) & 255;
  return uint64_t{e} << 16 | table.frac[mant];
}

}  // namespace

uint64_t estimate_bits(const uint32_t* hist) {
  uint64_t total = 0;
  for (size_t s = 0; s < kSymbols; s++) total += hist[s];
  if (total == 0) return 0;
  const uint64_t lt = log2_fixed(total);
  uint64_t bits = 0;  // in 1/2^16 bits
  for (size_t s = 0; s < kSymbols; s++) {
    if (hist[s] != 0) bits += uint64_t{hist[s]} * (lt - log2_fixed(hist[s]));
  }
  // The entropy, plus 1/32 bit per symbol for what a Huffman code loses to it, plus one bit per
  // symbol when there is only one (a code is at least a bit long).
  return (bits >> 16) + total / 32 + (bits == 0 ? total : 0);
}

void build_lengths(const uint32_t* hist, uint8_t* len) {
  std::memset(len, 0, kSymbols);
  uint16_t sym[kSymbols];
  uint64_t w[kSymbols];
  size_t m = 0;
  for (size_t s = 0; s < kSymbols; s++) {
    // Branch free: which values are used follows no pattern a predictor could learn.
    sym[m] = static_cast<uint16_t>(s);
    w[m] = hist[s];
    m += hist[s] != 0;
  }
  if (m == 0) return;
  if (m == 1) {
    len[sym[0]] = 1;
    return;
  }
  uint16_t order[kSymbols];
  uint64_t nw[2 * kSymbols];
  uint16_t parent[2 * kSymbols];
  uint8_t depth[2 * kSymbols];
  {
    // Sort the leaves by (weight, index): a stable LSD radix sort on the weight, 8 bits a pass,
    // from index order; only as many passes as the largest weight has bytes (two for a group
    // of pages). std::sort here cost several times the rest of the build.
    uint64_t top = 0;
    for (size_t i = 0; i < m; i++) {
      order[i] = static_cast<uint16_t>(i);
      top |= w[i];
    }
    // Digits as narrow as the passes allow: weights below 2^12 (one page) take two passes of
    // 6 bits, 64 buckets each, rather than two of 8 bits over 256.
    const unsigned wbits = 64u - static_cast<unsigned>(__builtin_clzll(top | 1));
    const unsigned passes = (wbits + 7) / 8;
    const unsigned digit = (wbits + passes - 1) / passes;
    const uint64_t dmask = (uint64_t{1} << digit) - 1;
    uint16_t spare[kSymbols];
    uint16_t* a = order;
    uint16_t* b = spare;
    // Each pass works on the input's four quarters side by side, each with its own counts and
    // write positions (a quarter's items of one digit go after the earlier quarters' ones, so the
    // sort stays stable): most weights are small and repeat, and one count or position per digit
    // would make each item wait on the store of the one before it.
    constexpr size_t kLanes = 4;
    const size_t q = (m + kLanes - 1) / kLanes;  // lane j holds items [j q, min((j + 1) q, m))
    for (unsigned pass = 0, shift = 0; pass < passes; pass++, shift += digit) {
      const size_t buckets = static_cast<size_t>(dmask) + 1;
      uint32_t at[kLanes][257];
      for (size_t j = 0; j < kLanes; j++) std::memset(at[j], 0, buckets * sizeof at[j][0]);
      for (size_t i = 0; i < q; i++) {
        for (size_t j = 0; j < kLanes; j++) {
          const size_t x = j * q + i;
          if (x < m) at[j][(w[a[x]] >> shift) & dmask]++;
        }
      }
      uint32_t pos = 0;  // exclusive prefix over (digit, lane)
      for (size_t d = 0; d < buckets; d++) {
        for (size_t j = 0; j < kLanes; j++) {
          const uint32_t c = at[j][d];
          at[j][d] = pos;
          pos += c;
        }
      }
      for (size_t i = 0; i < q; i++) {
        for (size_t j = 0; j < kLanes; j++) {
          const size_t x = j * q + i;
          if (x < m) b[at[j][(w[a[x]] >> shift) & dmask]++] = a[x];
        }
      }
      std::swap(a, b);
    }
    if (a != order) std::memcpy(order, a, m * sizeof order[0]);
    for (size_t i = 0; i < m; i++) nw[i] = w[order[i]];
    // Two queues: the sorted leaves and the internal nodes, whose weights are made in
    // non-decreasing order; each ends in a sentinel, and the choice is a select, not a branch
    // (a branch here mispredicts about half the time). Leaves are nodes [0, m), internal
    // nodes [m, 2m - 1); on equal weights a leaf is taken first.
    uint64_t iw[kSymbols + 1];
    nw[m] = ~uint64_t{0};
    iw[0] = ~uint64_t{0};
    size_t li = 0, ii = 0;
    const size_t root = 2 * m - 2;
    for (size_t k = 0; k + 1 < m; k++) {
      uint64_t sum = 0;
      for (int half = 0; half < 2; half++) {
        const uint64_t a = nw[li], b = iw[ii];
        const bool leaf = a <= b;
        const size_t node = leaf ? li : m + ii;
        sum += leaf ? a : b;
        parent[node] = static_cast<uint16_t>(m + k);
        li += leaf;
        ii += !leaf;
      }
      iw[k] = sum;
      iw[k + 1] = ~uint64_t{0};
    }
    depth[root] = 0;
    unsigned deepest = 0;
    for (size_t i = root; i-- > 0;) {  // a parent always has a higher index than its children
      depth[i] = static_cast<uint8_t>(depth[parent[i]] + 1);
      if (i < m && depth[i] > deepest) deepest = depth[i];
    }
    if (deepest > kMaxBits) {
      // Clamp to kMaxBits, then pay back the code space that took (the Kraft sum, in units of
      // 2^-kMaxBits, must not pass 2^kMaxBits) by lengthening the least frequent codes that are
      // still short, one bit at a time. Leaves are in ascending weight, so depths are
      // non-increasing and the clamped ones come first.
      uint32_t kraft = 0;
      for (size_t i = 0; i < m; i++) {
        if (depth[i] > kMaxBits) depth[i] = kMaxBits;
        kraft += 1u << (kMaxBits - depth[i]);
      }
      for (size_t i = 0; kraft > (1u << kMaxBits);) {
        while (depth[i] == kMaxBits) i++;  // m <= 2^kMaxBits, so this ends before i == m
        kraft -= 1u << (kMaxBits - depth[i] - 1);
        depth[i]++;
      }
    }
    for (size_t i = 0; i < m; i++) len[sym[order[i]]] = depth[i];
    return;
  }
}

namespace {

// Every kMaxBits-bit value in reverse bit order.
struct Reverse {
  uint16_t r[1u << kMaxBits];
  constexpr Reverse() : r() {
    for (unsigned i = 0; i < (1u << kMaxBits); i++) {
      unsigned x = 0;
      for (unsigned k = 0; k < kMaxBits; k++) x |= ((i >> k) & 1u) << (kMaxBits - 1 - k);
      r[i] = static_cast<uint16_t>(x);
    }
  }
};
constexpr Reverse kReverse;

// The low `bits` bits of v (v < 2^bits, bits <= kMaxBits) in reverse order; 0 for bits = 0.
inline uint32_t reverse(uint32_t v, unsigned bits) {
  return kReverse.r[(v << (kMaxBits - bits)) & ((1u << kMaxBits) - 1)];
}

// Bit s of out[l][s >> 6] set when len[s] == l, for l in 1..kMaxBits: the symbols of each length
// in symbol order, which is the order their canonical codes are given in.
void length_masks(const uint8_t* len, uint64_t (*out)[kSymbols / 64]) {
#if defined(__SSE2__)
  // Sixteen compares at a time: no per-symbol chain through memory.
  for (unsigned l = 1; l <= kMaxBits; l++) {
    const __m128i want = _mm_set1_epi8(static_cast<char>(l));
    for (size_t w = 0; w < kSymbols / 64; w++) {
      uint64_t m = 0;
      for (size_t q = 0; q < 4; q++) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(len + 64 * w + 16 * q));
        m |= uint64_t{static_cast<uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, want)))} << (16 * q);
      }
      out[l][w] = m;
    }
  }
#else
  std::memset(out, 0, sizeof(uint64_t) * (kMaxBits + 1) * (kSymbols / 64));
  for (size_t s = 0; s < kSymbols; s++) {
    if (len[s] != 0 && len[s] <= kMaxBits) out[len[s]][s >> 6] |= uint64_t{1} << (s & 63);
  }
#endif
}

// Canonical codes (deflate's rule: consecutive within a length, in symbol order; the first code
// of the next length is the one after the last, shifted left by one), from masks of
// length_masks: calls start(l) as each length l = 1..kMaxBits begins, then each(s, l, r) for
// its symbols s, r being the code bit-reversed (as streams are read, least significant first).
template <typename Start, typename Each>
void canonical_codes(const uint64_t (*masks)[kSymbols / 64], Start&& start, Each&& each) {
  uint32_t next = 0;
  for (unsigned l = 1; l <= kMaxBits; l++) {
    start(l);
    for (size_t w = 0; w < kSymbols / 64; w++) {
      for (uint64_t m = masks[l][w]; m != 0; m &= m - 1) {
        each(64 * w + static_cast<size_t>(__builtin_ctzll(m)), l, reverse(next++, l));
      }
    }
    next <<= 1;
  }
}

}  // namespace

void build_code(const uint8_t* len, Code* code) {
  std::memcpy(code->len, len, kSymbols);
  std::memset(code->bits, 0, sizeof code->bits);
  uint64_t masks[kMaxBits + 1][kSymbols / 64];
  length_masks(len, masks);
  canonical_codes(masks, [](unsigned) {}, [&](size_t s, unsigned, uint32_t r) { code->bits[s] = static_cast<uint16_t>(r); });
}

void write_table(const uint8_t* len, uint8_t* out) {
  for (size_t i = 0; i < kTableBytes; i++) out[i] = static_cast<uint8_t>(len[2 * i] | len[2 * i + 1] << 4);
}

const char* build_decoder(const uint8_t* len, Decoder* dec) {
  uint64_t masks[kMaxBits + 1][kSymbols / 64];
  length_masks(len, masks);
  uint32_t kraft = 0;  // in units of 2^-kMaxBits
  for (unsigned l = 1; l <= kMaxBits; l++) {
    for (size_t w = 0; w < kSymbols / 64; w++) kraft += static_cast<uint32_t>(__builtin_popcountll(masks[l][w])) << (kMaxBits - l);
  }
  if (kraft == 0 || kraft > (1u << kMaxBits)) return "Huffman table is empty or over-subscribed";
  // Entry k of a table over l bits is the symbol whose bit-reversed code is the low bits of k.
  // Built by doubling: the table over l - 1 bits, copied to the upper half, is the table over l
  // bits for every code shorter than l; each code of length l then takes its one entry, which
  // no shorter code covers (the lengths are not over-subscribed). Entries no code covers keep
  // kNoCode. About 2^kMaxBits copied entries and one store per symbol, rather than a store per
  // entry a code covers after a clear of the table.
  uint16_t* const e = dec->entry;
  e[0] = kNoCode;
  canonical_codes(
      masks, [&](unsigned l) { std::memcpy(e + (size_t{1} << (l - 1)), e, (size_t{1} << (l - 1)) * sizeof e[0]); },
      [&](size_t s, unsigned l, uint32_t r) { e[r] = static_cast<uint16_t>(l << 8 | s); });
  return nullptr;
}

const char* read_table(const uint8_t* table, Decoder* dec) {
  uint8_t len[kSymbols];
  for (size_t i = 0; i < kTableBytes; i++) {
    len[2 * i] = table[i] & 15;
    len[2 * i + 1] = table[i] >> 4;
  }
  for (size_t s = 0; s < kSymbols; s++) {
    if (len[s] > kMaxBits) return "Huffman table has a code longer than 11 bits";
  }
  return build_decoder(len, dec);
}

const char* decode_exact(const Decoder& dec, const uint8_t* in, size_t len, uint8_t* out, size_t count) {
  const uint8_t* p = in;
  const uint8_t* const end = in + len;
  uint64_t acc = 0;
  unsigned bits = 0;
  for (size_t i = 0; i < count; i++) {
    if (bits < kMaxBits) refill_bytes(p, end, acc, bits);
    const uint16_t e = dec.entry[acc & kCodeMask];
    const unsigned l = (e >> 8) & 15;
    if (l == 0) return "Huffman stream has a code that is not in its table";
    if (l > bits) return "Huffman stream is truncated";
    out[i] = static_cast<uint8_t>(e);
    acc >>= l;
    bits -= l;
  }
  if (p != end || bits >= 8 || acc != 0) return "Huffman stream has bits left over";
  return nullptr;
}

}  // namespace kernels::delta::huff
