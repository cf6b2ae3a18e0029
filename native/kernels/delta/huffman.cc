// Canonical Huffman coder for the page codec's entropy stage (see huffman.h).
#include "kernels/delta/huffman.h"

#include <algorithm>
#include <cmath>
#include <cstring>

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
    if (hist[s] != 0) {
      sym[m] = static_cast<uint16_t>(s);
      w[m++] = hist[s];
    }
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
    uint16_t spare[kSymbols];
    uint16_t* a = order;
    uint16_t* b = spare;
    for (unsigned shift = 0; shift < 64 && (top >> shift) != 0; shift += 8) {
      uint32_t at[257] = {};
      for (size_t i = 0; i < m; i++) at[((w[a[i]] >> shift) & 255) + 1]++;
      for (size_t d = 1; d <= 256; d++) at[d] += at[d - 1];
      for (size_t i = 0; i < m; i++) b[at[(w[a[i]] >> shift) & 255]++] = a[i];
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

// First canonical code of each length (deflate's rule); false if the lengths over-subscribe
// the code space or use none of it.
bool first_codes(const uint8_t* len, uint32_t* next) {
  uint32_t count[kMaxBits + 1] = {};
  for (size_t s = 0; s < kSymbols; s++) count[len[s]]++;
  count[0] = 0;
  uint32_t code = 0, kraft = 0;
  for (unsigned l = 1; l <= kMaxBits; l++) {
    code = (code + count[l - 1]) << 1;
    next[l] = code;
    kraft += count[l] << (kMaxBits - l);
  }
  return kraft != 0 && kraft <= (1u << kMaxBits);
}

// The low `bits` bits of v (bits <= 16) in reverse order.
uint32_t reverse(uint32_t v, unsigned bits) {
  static const struct Rev8 {
    uint8_t r[256];
    Rev8() {
      for (unsigned i = 0; i < 256; i++) {
        unsigned x = 0;
        for (unsigned k = 0; k < 8; k++) x |= ((i >> k) & 1u) << (7 - k);
        r[i] = static_cast<uint8_t>(x);
      }
    }
  } rev;
  return (uint32_t{rev.r[v & 255]} << 8 | rev.r[(v >> 8) & 255]) >> (16 - bits);
}

}  // namespace

void build_code(const uint8_t* len, Code* code) {
  uint32_t next[kMaxBits + 1] = {};
  first_codes(len, next);
  for (size_t s = 0; s < kSymbols; s++) {
    const unsigned l = len[s];
    code->bits[s] = static_cast<uint16_t>(l == 0 ? 0 : reverse(next[l]++, l));
    code->len[s] = static_cast<uint8_t>(l);
  }
}

void write_table(const uint8_t* len, uint8_t* out) {
  for (size_t i = 0; i < kTableBytes; i++) out[i] = static_cast<uint8_t>(len[2 * i] | len[2 * i + 1] << 4);
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
  uint32_t next[kMaxBits + 1] = {};
  if (!first_codes(len, next)) return "Huffman table is empty or over-subscribed";
  for (uint16_t& e : dec->entry) e = kNoCode;
  for (size_t s = 0; s < kSymbols; s++) {
    const unsigned l = len[s];
    if (l == 0) continue;
    const uint16_t e = static_cast<uint16_t>(l << 8 | s);
    // Not over-subscribed, so no two codes share an entry.
    for (uint32_t k = reverse(next[l]++, l); k < (1u << kMaxBits); k += 1u << l) dec->entry[k] = e;
  }
  return nullptr;
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
