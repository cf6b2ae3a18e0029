// lz4 block writer for XBM bodies: see lz4_block.h. The block format (sequences of a token,
// literal length, literals, 16-bit offset and match length; the end rules) is lz4's, as its
// documentation gives it; the match finder is ours, sized for the masks of one page.
#include "kernels/delta/lz4_block.h"

#include <cstring>

namespace kernels::delta {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the match finder compares and hashes little-endian loads; lz4 offsets are little-endian");

namespace {

constexpr size_t kMinMatch = 4;
constexpr size_t kLastLiterals = 5;  // the last 5 bytes of a block are literals
constexpr size_t kNoMatchTail = 12;  // and no match starts in its last 12
constexpr size_t kMaxOffset = 65535;
constexpr size_t kMaxHashBits = 12;

inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Bytes a length field takes beyond its token nibble (v already less the nibble's base).
inline size_t ext_bytes(size_t v) { return v >= 15 ? (v - 15) / 255 + 1 : 0; }

inline uint8_t* put_ext(uint8_t* o, size_t v) {
  if (v < 15) return o;
  v -= 15;
  for (; v >= 255; v -= 255) *o++ = 255;
  *o++ = static_cast<uint8_t>(v);
  return o;
}

// Writes sequences into dst[0, cap), refusing (ok() false) any that would not fit.
class Writer {
 public:
  Writer(uint8_t* dst, size_t cap) : begin_(dst), o_(dst), end_(dst + cap) {}

  // A sequence: `ll` literals from lit, then a match of `ml` >= 4 bytes `offset` back.
  void sequence(const uint8_t* lit, size_t ll, size_t offset, size_t ml) {
    const size_t need = 1 + ext_bytes(ll) + ll + 2 + ext_bytes(ml - kMinMatch);
    if (!room(need)) return;
    *o_++ = static_cast<uint8_t>((ll < 15 ? ll : 15) << 4 | (ml - kMinMatch < 15 ? ml - kMinMatch : 15));
    o_ = put_ext(o_, ll);
    std::memcpy(o_, lit, ll);
    o_ += ll;
    *o_++ = static_cast<uint8_t>(offset);
    *o_++ = static_cast<uint8_t>(offset >> 8);
    o_ = put_ext(o_, ml - kMinMatch);
  }

  // The last sequence: literals only, a[0, la) then b[0, lb).
  void last(const uint8_t* a, size_t la, const uint8_t* b, size_t lb) {
    const size_t ll = la + lb;
    if (!room(1 + ext_bytes(ll) + ll)) return;
    *o_++ = static_cast<uint8_t>((ll < 15 ? ll : 15) << 4);
    o_ = put_ext(o_, ll);
    if (la != 0) std::memcpy(o_, a, la);
    if (lb != 0) std::memcpy(o_ + la, b, lb);
    o_ += ll;
  }

  // Bytes already in lz4 form (the sequences of another block).
  void raw(const uint8_t* p, size_t len) {
    if (len == 0 || !room(len)) return;
    std::memcpy(o_, p, len);
    o_ += len;
  }

  bool ok() const { return !full_; }
  size_t length() const { return static_cast<size_t>(o_ - begin_); }

 private:
  bool room(size_t need) {
    if (full_ || need > static_cast<size_t>(end_ - o_)) full_ = true;
    return !full_;
  }

  uint8_t* begin_;
  uint8_t* o_;
  uint8_t* end_;
  bool full_ = false;
};

// Length of the common prefix of a and b (b before a), from `from` bytes (known equal) up to
// `limit` bytes, comparing 8 bytes at a time.
inline size_t common_length(const uint8_t* a, const uint8_t* b, size_t from, size_t limit) {
  size_t ml = from;
  for (; ml + 8 <= limit; ml += 8) {
    const uint64_t x = load64(a + ml) ^ load64(b + ml);
    if (x != 0) return ml + (static_cast<size_t>(__builtin_ctzll(x)) >> 3);
  }
  while (ml < limit && a[ml] == b[ml]) ml++;
  return ml;
}

inline uint32_t hash4(uint32_t v, unsigned bits) { return (v * 2654435761u) >> (32 - bits); }

// The match pass over the masks: writes their sequences (all but the last, literal-only one) to
// w and returns the anchor, where the masks' trailing literals start. The end rules are those of
// a block that ends with the masks (no match ends in their last 5 bytes or starts in their last
// 12), so the same sequences serve a block of the masks alone and one where literals follow.
size_t mask_sequences(const uint8_t* masks, size_t mlen, Writer& w) {
  size_t anchor = 0;
  // A match ends by match_end (inside the masks, before their last 5 bytes, within the 16-bit
  // positions of the table) and starts before start_end.
  size_t match_end = mlen > kLastLiterals ? mlen - kLastLiterals : 0;
  if (match_end > kMaxOffset) match_end = kMaxOffset;
  const size_t start_end = mlen > kNoMatchTail ? mlen - kNoMatchTail : 0;
  if (match_end < 2 * kMinMatch) return 0;
  unsigned bits = 8;
  while (bits < kMaxHashBits && (size_t{1} << bits) < match_end) bits++;
  uint16_t table[size_t{1} << kMaxHashBits];  // position + 1 of the last 4 bytes with this hash
  std::memset(table, 0, sizeof(uint16_t) << bits);
  size_t ip = 0;
  unsigned misses = 1u << 6;  // the step grows by one every 64 misses in a row (lz4's skip)
  while (ip + kMinMatch <= match_end && ip < start_end) {
    const uint32_t v = load32(masks + ip);
    const uint32_t h = hash4(v, bits);
    const size_t c = table[h];
    table[h] = static_cast<uint16_t>(ip + 1);
    if (c == 0 || load32(masks + c - 1) != v) {
      ip += misses >> 6;
      misses++;
      continue;
    }
    size_t cand = c - 1;
    size_t ml = common_length(masks + ip, masks + cand, kMinMatch, match_end - ip);
    while (ip > anchor && cand > 0 && masks[ip - 1] == masks[cand - 1]) {
      ip--;
      cand--;
      ml++;
    }
    w.sequence(masks + anchor, ip - anchor, ip - cand, ml);
    if (!w.ok()) return anchor;
    ip += ml;
    anchor = ip;
    misses = 1u << 6;
    if (ip + kMinMatch <= match_end + 2) {  // the 4 bytes at ip - 2 lie in the masks
      table[hash4(load32(masks + ip - 2), bits)] = static_cast<uint16_t>(ip - 1);
    }
  }
  return anchor;
}

}  // namespace

size_t lz4_block_masks(const uint8_t* masks, size_t mlen, const uint8_t* lits, size_t llen,
                       uint8_t* dst, size_t cap) {
  Writer w(dst, cap);
  const size_t anchor = mask_sequences(masks, mlen, w);
  if (!w.ok()) return 0;
  w.last(masks + anchor, mlen - anchor, lits, llen);
  return w.ok() ? w.length() : 0;
}

size_t lz4_block_masks2(const uint8_t* masks, size_t mlen, uint8_t* dst, size_t cap,
                        const uint8_t* lits, size_t llen, uint8_t* dst2, size_t cap2, size_t* len2) {
  Writer w(dst, cap);
  const size_t anchor = mask_sequences(masks, mlen, w);
  if (!w.ok()) return 0;  // *len2 untouched: the caller makes the second block itself
  const size_t seq = w.length();
  *len2 = 0;
  if (seq <= cap2) {
    Writer w2(dst2, cap2);
    w2.raw(dst, seq);
    w2.last(masks + anchor, mlen - anchor, lits, llen);
    if (w2.ok()) *len2 = w2.length();
  }
  w.last(masks + anchor, mlen - anchor, nullptr, 0);
  return w.ok() ? w.length() : 0;
}

}  // namespace kernels::delta
