// Canonical Huffman coder for the page codec's entropy stage (see huffman.h).
#include "kernels/delta/huffman.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kernels::delta::huff {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the streams' bits are stored and read as little-endian words");

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

namespace {

// The used symbols of a histogram in symbol order: sym[i] and its count w[i]; returns how many,
// and in *top the OR of their counts.
size_t used_symbols(const uint32_t* hist, uint16_t* sym, uint32_t* w, uint32_t* top) {
  size_t m = 0;
  uint32_t t = 0;
  for (size_t c = 0; c < kSymbols; c += 64) {
    // Which of 64 counts are not zero, as one word (sixteen compares at a time with SSE2); then
    // one step per used symbol, not one per symbol.
    uint64_t used = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (size_t j = 0; j < 64; j += 16) {
      const __m128i* at = reinterpret_cast<const __m128i*>(hist + c + j);
      const __m128i z01 = _mm_packs_epi32(_mm_cmpeq_epi32(_mm_loadu_si128(at), zero),
                                          _mm_cmpeq_epi32(_mm_loadu_si128(at + 1), zero));
      const __m128i z23 = _mm_packs_epi32(_mm_cmpeq_epi32(_mm_loadu_si128(at + 2), zero),
                                          _mm_cmpeq_epi32(_mm_loadu_si128(at + 3), zero));
      used |= uint64_t{static_cast<uint16_t>(~_mm_movemask_epi8(_mm_packs_epi16(z01, z23)))} << j;
    }
#else
    for (size_t j = 0; j < 64; j++) used |= uint64_t{hist[c + j] != 0} << j;
#endif
    for (; used != 0; used &= used - 1) {
      const size_t s = c + static_cast<size_t>(__builtin_ctzll(used));
      sym[m] = static_cast<uint16_t>(s);
      w[m] = hist[s];
      t |= hist[s];
      m++;
    }
  }
  *top = t;
  return m;
}

// A stable LSD radix sort of order[0, m) (indices into w) by weight: only as many passes as the
// largest weight (top) needs, digits as narrow as the passes allow. Each pass works on the
// input's four quarters side by side, each with its own counts and write positions (a quarter's
// items of one digit go after the earlier quarters' ones, so the sort stays stable): most
// weights are small and repeat, and one count or position per digit would make each item wait
// on the store of the one before it.
constexpr size_t kLanes = 4;

void radix_sort(const uint32_t* w, size_t m, uint32_t top, uint16_t* order) {
  const unsigned wbits = 32u - static_cast<unsigned>(__builtin_clz(top | 1));
  const unsigned passes = (wbits + 7) / 8;
  const unsigned digit = (wbits + passes - 1) / passes;
  const uint32_t dmask = (uint32_t{1} << digit) - 1;
  uint16_t spare[kSymbols];
  uint16_t* a = order;
  uint16_t* b = spare;
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
}

// order[0, m) = the indices 0..m-1 sorted by (w, index). One page's histogram has few large
// counts: one counting pass with the counts capped at kCap (four lanes, as in radix_sort), then
// an insertion sort of the capped bucket, about a third cheaper than the radix sort's two passes;
// histograms with many large counts (a group's) take the radix sort.
void sort_leaves(const uint32_t* w, size_t m, uint32_t top, uint16_t* order) {
  constexpr uint32_t kCap = 63;
  constexpr size_t kMaxCapped = 32;  // insertion sort beyond this: the radix sort instead
  uint8_t key[kSymbols];
  for (size_t i = 0; i < m; i++) key[i] = static_cast<uint8_t>(w[i] < kCap ? w[i] : kCap);
  const size_t q = (m + kLanes - 1) / kLanes;
  // at[d * kLanes + j]: lane j's count of key d, then its first position: in the order of the
  // exclusive prefix sum, which so runs over one array (four sums a step with SSE2).
  alignas(16) uint32_t at[(kCap + 1) * kLanes];
  std::memset(at, 0, sizeof at);
  for (size_t i = 0; i < q; i++) {
    for (size_t j = 0; j < kLanes; j++) {
      const size_t x = j * q + i;
      if (x < m) at[key[x] * kLanes + j]++;
    }
  }
  const size_t capped = at[kCap * kLanes] + at[kCap * kLanes + 1] + at[kCap * kLanes + 2] + at[kCap * kLanes + 3];
  if (capped > kMaxCapped) {
    for (size_t i = 0; i < m; i++) order[i] = static_cast<uint16_t>(i);
    radix_sort(w, m, top, order);
    return;
  }
#if defined(__SSE2__)
  static_assert(kLanes == 4, "one SSE2 register holds a key's four lane counts");
  __m128i carry = _mm_setzero_si128();  // the sum so far, in every lane
  for (size_t d = 0; d <= kCap; d++) {
    __m128i* const p = reinterpret_cast<__m128i*>(at + d * kLanes);
    const __m128i v = _mm_load_si128(p);
    __m128i inc = _mm_add_epi32(v, _mm_slli_si128(v, 4));
    inc = _mm_add_epi32(inc, _mm_slli_si128(inc, 8));  // inclusive sums within the four
    _mm_store_si128(p, _mm_add_epi32(carry, _mm_sub_epi32(inc, v)));
    carry = _mm_add_epi32(carry, _mm_shuffle_epi32(inc, 0xff));
  }
#else
  uint32_t pos = 0;
  for (size_t d = 0; d < (kCap + 1) * kLanes; d++) {
    const uint32_t c = at[d];
    at[d] = pos;
    pos += c;
  }
#endif
  const size_t first = m - capped;
  for (size_t i = 0; i < q; i++) {
    for (size_t j = 0; j < kLanes; j++) {
      const size_t x = j * q + i;
      if (x < m) order[at[key[x] * kLanes + j]++] = static_cast<uint16_t>(x);
    }
  }
  for (size_t i = first + 1; i < m; i++) {  // stable: an item passes only larger weights
    const uint16_t x = order[i];
    size_t j = i;
    for (; j > first && w[order[j - 1]] > w[x]; j--) order[j] = order[j - 1];
    order[j] = x;
  }
}

}  // namespace

void build_lengths(const uint32_t* hist, uint8_t* len) {
  std::memset(len, 0, kSymbols);
  uint16_t sym[kSymbols];
  uint32_t w[kSymbols];
  uint32_t top = 0;
  const size_t m = used_symbols(hist, sym, w, &top);
  if (m == 0) return;
  if (m == 1) {
    len[sym[0]] = 1;
    return;
  }
  uint16_t order[kSymbols];
  sort_leaves(w, m, top, order);
  // Two queues: the sorted leaves and the internal nodes, whose weights are made in
  // non-decreasing order. Leaves are nodes [0, m), internal nodes [m, 2m - 1); on equal weights
  // a leaf is taken first. The two heads of each queue live in registers (a0 <= a1, b0 <= b1),
  // so the choice of a step is made from them with selects (branches here mispredict about
  // half the time); the entries that may become heads next are loaded while it is made, and
  // the node just made is passed on in a register, so no step waits on a load or on the store
  // of the one before it. Past either queue's end its entries read kNone.
  constexpr uint64_t kNone = ~uint64_t{0};
  uint64_t nw[kSymbols + 4];
  for (size_t i = 0; i < m; i++) nw[i] = w[order[i]];
  nw[m] = nw[m + 1] = nw[m + 2] = nw[m + 3] = kNone;
  uint64_t iw[kSymbols + 4];
  std::memset(iw, 0xff, sizeof iw);  // kNone
  uint16_t parent[2 * kSymbols];
  size_t li = 0, ii = 0;  // the heads' indices
  uint64_t a0 = nw[0], a1 = nw[1], b0 = kNone, b1 = kNone;
  for (size_t k = 0; k + 1 < m; k++) {
    const uint64_t a2 = nw[li + 2], a3 = nw[li + 3];
    const uint64_t b2 = iw[ii + 2], b3 = iw[ii + 3];  // kNone from k on (not yet made)
    const bool f = a0 <= b0;                            // the first child is a leaf
    const bool s = f ? a1 <= b0 : a0 <= b1;             // so is the second
    const size_t nl = size_t{f} + size_t{s};
    const size_t ni = 2 - nl;
    const size_t n1 = f ? li : m + ii;
    const size_t n2 = f ? (s ? li + 1 : m + ii) : (s ? li : m + ii + 1);
    const uint64_t x = (f ? a0 : b0) + (f ? (s ? a1 : b0) : (s ? a0 : b1));
    parent[n1] = static_cast<uint16_t>(m + k);
    parent[n2] = static_cast<uint16_t>(m + k);
    iw[k] = x;
    const uint64_t na0 = nl == 0 ? a0 : nl == 1 ? a1 : a2;
    const uint64_t na1 = nl == 0 ? a1 : nl == 1 ? a2 : a3;
    const uint64_t s0 = ni == 0 ? b0 : ni == 1 ? b1 : b2;
    const uint64_t s1 = ni == 0 ? b1 : ni == 1 ? b2 : b3;
    const size_t h = ii + ni;  // the new head's index, <= k
    b0 = s0 < x ? s0 : x;      // x is no lighter than any node made before it
    b1 = h + 1 < k ? s1 : (h + 1 == k ? x : kNone);
    a0 = na0;
    a1 = na1;
    li += nl;
    ii = h;
  }
  uint8_t depth[2 * kSymbols];
  const size_t root = 2 * m - 2;
  depth[root] = 0;
  for (size_t i = root; i-- > 0;) depth[i] = static_cast<uint8_t>(depth[parent[i]] + 1);  // parents come later
  // Leaves are in ascending weight, so depths are non-increasing: the first is the deepest.
  if (depth[0] > kMaxBits) {
    // Clamp to kMaxBits, then pay back the code space that took (the Kraft sum, in units of
    // 2^-kMaxBits, must not pass 2^kMaxBits) by lengthening the least frequent codes that are
    // still short, one bit at a time; the clamped ones come first.
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
}

namespace {
// length_masks, code_bases, used_bitmap_of and build_code_of (also built per ISA for
// Ops::huf_build_code), and fast_lengths_of (Ops::huf_fast_lengths).
#include "kernels/delta/huffman_code.inc"

}  // namespace

void fast_lengths(const uint32_t* hist, uint32_t total, uint8_t* len) { fast_lengths_of(hist, total, len); }

void used_bitmap(const uint8_t* len, uint64_t* used) { used_bitmap_of(len, used); }

void build_code(const uint8_t* len, Code* code) { build_code_of(len, code); }

void write_table(const uint8_t* len, uint8_t* out) {
  for (size_t i = 0; i < kTableBytes; i++) out[i] = static_cast<uint8_t>(len[2 * i] | len[2 * i + 1] << 4);
}

const char* build_decoder(const uint8_t* len, Decoder* dec) {
  uint64_t masks[kMaxBits + 1][kSymbols / 64];
  length_masks(len, masks);
  uint32_t base[kMaxBits + 1][kSymbols / 64];
  const uint32_t kraft = code_bases(masks, base);
  if (kraft == 0 || kraft > (1u << kMaxBits)) return "Huffman table is empty or over-subscribed";
  // Entry k of a table over l bits is the symbol whose bit-reversed code is the low bits of k.
  // Built by doubling: the table over l - 1 bits, copied to the upper half, is the table over l
  // bits for every code shorter than l; each code of length l then takes its one entry, which
  // no shorter code covers (the lengths are not over-subscribed). Entries no code covers keep
  // kNoCode. About 2^kMaxBits copied entries and one store per symbol, rather than a store per
  // entry a code covers after a clear of the table.
  uint16_t* const e = dec->entry;
  e[0] = kNoCode;
  for (unsigned l = 1; l <= kMaxBits; l++) {
    std::memcpy(e + (size_t{1} << (l - 1)), e, (size_t{1} << (l - 1)) * sizeof e[0]);
    for (size_t w = 0; w < kSymbols / 64; w++) {
      uint32_t code = base[l][w];
      for (uint64_t m = masks[l][w]; m != 0; m &= m - 1) {
        e[reverse(code++, l)] = static_cast<uint16_t>(l << 8 | (64 * w + static_cast<size_t>(__builtin_ctzll(m))));
      }
    }
  }
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
