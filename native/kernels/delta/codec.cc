// Page codec: second stage (lz4, chosen per page when it pays) and the hostile-input-safe
// decoder of the page kinds in docs/FORMAT.md. See codec.h.
#include "kernels/delta/codec.h"

#include <lz4.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/delta/lz4_block.h"
#include "kernels/dispatch.h"

namespace kernels::delta {

Workspace::Workspace(size_t max_page)
    : max_page_(max_page),
      xor_((max_page + 63) / 64 * 64 + 64),
      mask_((max_page + 63) / 64 + 1),
      edges_(kEdgeSlots),
      words_((max_page + 63) / 64 + 8),
      eq_(4 * ((max_page + 63) / 64)),
      tmp_(max_page + 64),
      own_(5 * max_page + 128) {}

Workspace::~Workspace() {
  std::free(lz4_);
  delete own_dec_;
  delete[] dec_;
}

huff::Decoder* Workspace::own_decoder() {
  if (own_dec_ == nullptr) own_dec_ = new huff::Decoder;
  return own_dec_;
}

const huff::Decoder* Workspace::decoders(const uint8_t* tables, const char** err) {
  if (dec_ == nullptr) dec_ = new huff::Decoder[2];
  if (tables != dec_tables_) {
    dec_tables_ = tables;
    dec_err_ = huff::read_table(tables, &dec_[0]);
    if (dec_err_ == nullptr) dec_err_ = huff::read_table(tables + huff::kTableBytes, &dec_[1]);
  }
  *err = dec_err_;
  return dec_err_ == nullptr ? dec_ : nullptr;
}

void* Workspace::lz4_stream() {
  if (lz4_ == nullptr) lz4_ = std::malloc(static_cast<size_t>(LZ4_sizeofState()));
  return lz4_;
}

size_t varint_size(uint64_t v) {
  size_t k = 1;
  while (v >= 0x80) {
    v >>= 7;
    k++;
  }
  return k;
}

uint8_t* write_varint(uint8_t* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

bool read_varint(const uint8_t** pp, const uint8_t* end, uint32_t* v) {
  const uint8_t* p = *pp;
  uint64_t r = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (p >= end) return false;
    const uint8_t b = *p++;
    r |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      if (r > 0xffffffffu) return false;
      *pp = p;
      *v = static_cast<uint32_t>(r);
      return true;
    }
  }
  return false;
}

namespace {

// Adds the byte counts of p[0, len) to hist. Four tables, so that runs of one byte value (common
// in both strings) do not serialise on one counter's store-to-load latency; counters of type C
// must hold len.
template <typename C>
void count_into(const uint8_t* p, size_t len, uint32_t* hist) {
  C h[4][huff::kSymbols];
  std::memset(h, 0, sizeof h);
  size_t i = 0;
  for (; i + 4 <= len; i += 4) {
    h[0][p[i]]++;
    h[1][p[i + 1]]++;
    h[2][p[i + 2]]++;
    h[3][p[i + 3]]++;
  }
  for (; i < len; i++) h[0][p[i]]++;
  for (size_t sym = 0; sym < huff::kSymbols; sym++) {
    hist[sym] += uint32_t{h[0][sym]} + h[1][sym] + h[2][sym] + h[3][sym];
  }
}

// 16-bit counters where they suffice (a page's strings): half the tables to clear and add up.
void count_bytes(const uint8_t* p, size_t len, uint32_t* hist) {
  if (len < 65536) {
    count_into<uint16_t>(p, len, hist);
  } else {
    count_into<uint32_t>(p, len, hist);
  }
}

// lz4's speed/ratio knob: 4 skips through incompressible input ~3x faster than 1 and loses
// little on the long repeats that make lz4 worth it on a page.
constexpr int kLz4Acceleration = 4;

// lz4 of src (n bytes) into dst if the block fits in `cap` bytes; 0 otherwise. Inputs above
// 2 KiB are first probed on their first 1 KiB: if that does not shrink by 1/8, the rest is
// unlikely to pay (random or already-compressed data) and the full attempt is skipped.
size_t try_lz4(Workspace& ws, const uint8_t* src, size_t n, uint8_t* dst, size_t cap) {
  if (cap == 0 || n > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) return 0;
  void* state = ws.lz4_stream();
  if (state == nullptr) return 0;
  // A fully reset state per call (not LZ4_resetStream_fast): the output must depend only on the
  // page, so every ISA, thread count and call order gives the same bytes.
  if (n > 2048) {
    const int probe = LZ4_compress_fast_extState(state, reinterpret_cast<const char*>(src),
                                                 reinterpret_cast<char*>(dst), 1024, 1024 - 128,
                                                 kLz4Acceleration);
    if (probe <= 0) return 0;
  }
  const int r = LZ4_compress_fast_extState(state, reinterpret_cast<const char*>(src),
                                           reinterpret_cast<char*>(dst), static_cast<int>(n),
                                           static_cast<int>(cap), kLz4Acceleration);
  return r > 0 ? static_cast<size_t>(r) : 0;
}

// Smallest first-stage body worth a second stage. Fine-grained changes (a few hundred literal
// bytes in short runs) have no 4-byte repeats for lz4 to find: trying costs ~1 us per page and
// never pays, so only XRLE bodies of a third of the page or more (and RAW pages) go to lz4. XBM
// bodies go to our own block writer (lz4_block.h), which matches in the masks only and costs a
// third of lz4's time: from a sixteenth of the page (256 bytes of a 4 KiB page; a quarter before
// session 11), since the masks of real guest pages repeat (records whose fields change alike,
// and since frame version 5 the zero byte masks of repeated words) well below a quarter of the
// page: 1 s capture 16.15 % -> 15.70 % of the pages, 100 ms capture 11.17 % -> 10.78 %, for
// 1-3 % more time (docs/delta.md, session 11).
inline size_t lz4_min_body(Kind k, size_t n) {
  const size_t m = k == kXbm ? n / 16 : n / 3;
  return m > 96 ? m : 96;
}

// lz4 form of a first-stage body (XRLE: varint of its length + block; RAW: block of the page)
// in dst if it saves at least 1/16 of the body and is shorter than `limit`; returns its length,
// 0 if it does not pay or is not tried (XRLE bodies below lz4_min_body). XBM bodies have their
// own second stage (xbm_stage).
size_t lz4_body(Kind k, const uint8_t* body, size_t len, const uint8_t* next, size_t n,
                uint8_t* dst, Workspace& ws, size_t limit) {
  if (limit == 0) return 0;
  if (k == kXrle && len >= lz4_min_body(k, n)) {
    const size_t vs = varint_size(len);
    const size_t cap = std::min(len - len / 16, limit - 1);  // the whole body, varint included
    if (cap <= vs) return 0;
    const size_t c = try_lz4(ws, body, len, dst + vs, cap - vs);
    if (c == 0) return 0;
    write_varint(dst, len);
    return vs + c;
  }
  if (k == kRaw && n >= 96) return try_lz4(ws, next, n, dst, std::min(n - n / 16, limit - 1));
  return 0;
}

}  // namespace

Kind lz4_stage(Kind k, const uint8_t* next, size_t n, uint8_t* out, size_t* out_len, Workspace& ws,
               size_t limit) {
  uint8_t* tmp = ws.tmp();
  const size_t c = lz4_body(k, out, *out_len, next, n, tmp, ws, limit);
  if (c == 0) return k;
  std::memcpy(out, tmp, c);
  *out_len = c;
  return k == kXrle ? kXrleLz4 : kRawLz4;
}

namespace {

// Where xbm_stage wants rule 5's XBM+LZ4 block of the same page made from the masks' match pass
// (lz4_block_masks2): dst and cap for the block; len gets its length (0: did not fit), or stays
// SIZE_MAX if no pass was made.
struct Lz4Side {
  uint8_t* dst;
  size_t cap;
  size_t len = SIZE_MAX;
};

size_t own_body(const Ops& ops, const uint8_t* masks, size_t t, const uint8_t* lits, size_t l, size_t own_min,
                uint8_t* dst, size_t limit, Workspace& ws, Lz4Side* side) {
  if (own_min == 0 || l < own_min || limit == 0 || t == 0) return 0;
  const size_t plain = t + l;
  const size_t cap = std::min(plain - plain / 16, limit - 1);  // the longest body that pays
  uint32_t hist[huff::kSymbols] = {};
  count_bytes(lits, l, hist);
  uint8_t len[huff::kSymbols];
  ops.huf_fast_lengths(hist, static_cast<uint32_t>(std::min<size_t>(l, UINT32_MAX)), len);
  // What the code costs, known before anything is encoded: the table and the streams' bits.
  uint64_t bm[kOwnBitmap / 8];  // the table's bitmap of used values
  huff::used_bitmap(len, bm);
  size_t used = 0;
  for (size_t w = 0; w < kOwnBitmap / 8; w++) used += huff::popcount64(bm[w]);
  uint64_t bits = 0;
  for (size_t s = 0; s < huff::kSymbols; s++) bits += uint64_t{hist[s]} * len[s];
  const size_t table = kOwnBitmap + (used + 1) / 2;
  const size_t heads = varint_size(t) + varint_size(l) + 2 * varint_size(t);  // C <= T, B < T + L
  if (heads + table + bits / 8 > cap) return 0;  // even with masks of no size
  // The masks as an lz4 block where that is shorter (our writer: lz4_block.h).
  uint8_t* const sb = ws.own_scratch();
  uint8_t* const mb = sb + 2 * huff::encode_bound(ws.max_page());
  size_t c = side != nullptr ? lz4_block_masks2(masks, t, mb, t - 1, lits, l, side->dst, side->cap, &side->len)
                             : lz4_block_masks(masks, t, nullptr, 0, mb, t - 1);
  const uint8_t* mask_src = c != 0 ? mb : masks;
  if (c == 0) c = t;
  if (table + c + bits / 8 > cap) return 0;
  huff::Code code;
  ops.huf_build_code(len, &code);
  // Two streams, the first ceil(l/2) literals and the rest, so a decoder runs them interleaved.
  const size_t h1 = (l + 1) / 2;
  uint8_t* const sb2 = sb + huff::encode_bound(h1);
  size_t b2 = 0;
  const size_t b1 = ops.huf_encode2(code, lits, h1, sb, code, lits + h1, l - h1, sb2, &b2);
  const size_t total = varint_size(t) + varint_size(l) + varint_size(c) + varint_size(b1) + table + c + b1 + b2;
  if (total > cap) return 0;
  uint8_t* o = dst;
  o = write_varint(o, t);
  o = write_varint(o, l);
  o = write_varint(o, c);
  o = write_varint(o, b1);
  // The used values' lengths, listed one step per used value.
  uint8_t list[huff::kSymbols + 1];
  size_t k = 0;
  for (size_t w = 0; w < kOwnBitmap / 8; w++) {
    for (uint64_t u = bm[w]; u != 0; u &= u - 1) list[k++] = len[64 * w + static_cast<size_t>(__builtin_ctzll(u))];
  }
  list[k] = 0;  // the pad nibble of an odd count
  std::memcpy(o, bm, kOwnBitmap);
  for (size_t j = 0; j < (k + 1) / 2; j++) o[kOwnBitmap + j] = static_cast<uint8_t>(list[2 * j] | list[2 * j + 1] << 4);
  o += table;
  std::memcpy(o, mask_src, c);
  o += c;
  std::memcpy(o, sb, b1);
  std::memcpy(o + b1, sb2, b2);
  return total;
}

}  // namespace

size_t xbm_own_body(const Ops& ops, const uint8_t* masks, size_t t, const uint8_t* lits, size_t l,
                    size_t own_min, uint8_t* dst, size_t limit, Workspace& ws) {
  return own_body(ops, masks, t, lits, l, own_min, dst, limit, ws, nullptr);
}

Kind xbm_stage(const Ops& ops, const uint8_t* masks, size_t t, const uint8_t* lits, size_t l, size_t n,
               size_t own_min, uint8_t* dst, const uint8_t** body_at, size_t* len, size_t limit, Workspace& ws) {
  const size_t body = t + l;
  // Rule 5's XBM+LZ4 body (varint of the XBM length, then the block), which kind 12 has to beat
  // so that a page never comes out larger than with entropy: false. Its block comes from the
  // match pass kind 12 makes over the masks when that pass is made, else from a pass of its own.
  // The block stores the literals as they are, after at least a token: when those alone pass
  // the cap (a coded group's Huffman body is the limit), no block can pay and none is tried.
  const size_t vs = varint_size(body);
  const size_t cap11 = limit != 0 ? std::min(body - body / 16, limit - 1) : 0;  // the whole body
  const bool lz4 = body >= lz4_min_body(kXbm, n) && vs + 1 + l <= cap11;
  uint8_t* const tmp = ws.own_scratch() + 4 * ws.max_page();
  Lz4Side side{tmp + vs, lz4 ? cap11 - vs : 0};
  const size_t c12 = own_body(ops, masks, t, lits, l, own_min, dst, limit, ws, lz4 ? &side : nullptr);
  if (lz4) {
    if (side.len == SIZE_MAX) side.len = lz4_block_masks(masks, t, lits, l, side.dst, side.cap);
    const size_t c11 = side.len != 0 ? vs + side.len : 0;
    if (c11 != 0 && (c12 == 0 || c11 <= c12)) {
      write_varint(tmp, body);
      *body_at = tmp;
      *len = c11;
      return kXbmLz4;
    }
  }
  *body_at = dst;
  *len = c12;
  return c12 != 0 ? kXbmHufOwn : kXbm;
}

Kind encode_page(const Ops& ops, uint8_t* prev, const uint8_t* next, size_t n, bool update_prev,
                 bool compress, bool xbm, uint8_t* out, size_t* out_len, Workspace& ws, size_t own_min) {
  size_t mask_len = 0;
  const Kind k = ops.encode_page(prev, next, n, update_prev, xbm, out, out_len, &mask_len, ws.scratch());
  if (compress && k == kXbm) {
    // The chosen body is built apart (the XBM body in `out` is its input), then copied once.
    size_t c = 0;
    const uint8_t* at = nullptr;
    const Kind k2 = xbm_stage(ops, out, mask_len, out + mask_len, *out_len - mask_len, n, own_min, ws.tmp(), &at,
                              &c, SIZE_MAX, ws);
    if (k2 != kXbm) {
      std::memcpy(out, at, c);
      *out_len = c;
    }
    return k2;
  }
  return compress ? lz4_stage(k, next, n, out, out_len, ws) : k;
}

namespace {

// Walks an XRLE stream; with target == nullptr only checks it. With lit == nullptr the literal
// bytes follow their tokens in `body` (XRLE); otherwise body holds only the tokens and the
// literals come from lit[0, lit_len) in order, all of which must be used (the Huffman kinds).
const char* xrle_walk(uint8_t* target, const uint8_t* body, size_t len, size_t n,
                      const uint8_t* lit = nullptr, size_t lit_len = 0) {
  const uint8_t* p = body;
  const uint8_t* const end = body + len;
  const bool split = lit != nullptr;
  const uint8_t* lp = lit;
  const uint8_t* const lend = lit + lit_len;
  size_t pos = 0;
  while (p < end) {
    const uint8_t t = *p++;
    size_t skip = t & 15, run = t >> 4;
    uint32_t v;
    if (skip == 15) {
      if (!read_varint(&p, end, &v)) return "truncated or oversized skip varint";
      skip = 15 + static_cast<size_t>(v);
    }
    if (run == 0) {
      if (!read_varint(&p, end, &v)) return "truncated or oversized length varint";
      run = 16 + static_cast<size_t>(v);
    }
    if (skip > n - pos) return "skip runs past the end of the page";
    pos += skip;
    if (run > n - pos) return "literal runs past the end of the page";
    const uint8_t*& src = split ? lp : p;
    if (run > static_cast<size_t>((split ? lend : end) - src)) return "literal is truncated";
    if (target != nullptr) {
      uint8_t* d = target + pos;
      // SAFETY: pos + run <= n and src + run <= its end were checked above.
      size_t i = 0;
      for (; i + 8 <= run; i += 8) {
        uint64_t a, b;
        std::memcpy(&a, d + i, 8);
        std::memcpy(&b, src + i, 8);
        a ^= b;
        std::memcpy(d + i, &a, 8);
      }
      for (; i < run; i++) d[i] ^= src[i];
    }
    src += run;
    pos += run;
  }
  if (split && lp != lend) return "literal bytes left over";
  return nullptr;
}

// The check of xbm_walk on the body after its repeat distance d (masks from the line mask of lm
// bytes on; mask_len SIZE_MAX or the length the masks must have). kRepeats: d != 0, so a byte
// mask of 0 must repeat a set word d before it, checked a line at a time against the word masks
// of the lines before (kept only then).
template <bool kRepeats>
const char* xbm_check(const uint8_t* body, size_t len, size_t lm, size_t mask_len, unsigned d) {
  const uint8_t* const end = body + len;
  const uint8_t* p = body + lm;
  size_t lits = 0;
  // With repeats: the word masks of the 8 lines before the current one and of the current one,
  // oldest lowest (line i - 8 + k at bits 8k .. 8k + 7, line i at 64 .. 71; lines with no set
  // word are 0), so the words d before a line's words are bits 64 - d .. 71 - d.
  unsigned __int128 recent = 0;
  size_t last_line = 0;  // the line `recent` ends with
  for (size_t i = 0; i < lm; i++) {
    for (unsigned lb = body[i]; lb != 0; lb &= lb - 1) {
      if (p >= end) return "XBM masks run past the body";
      const unsigned wm = *p++;
      if (wm == 0) return "XBM word mask is zero";
      const size_t words = kPopcount8.n[wm];
      if (static_cast<size_t>(end - p) < words) return "XBM masks run past the body";
      if constexpr (!kRepeats) {
        for (size_t k = 0; k < words; k++) {
          const unsigned bm = p[k];
          if (bm == 0) return "XBM byte mask is zero";
          lits += kPopcount8.n[bm];
        }
      } else {
        const size_t line = i * 8 + static_cast<size_t>(__builtin_ctz(lb));
        const size_t gap = line - last_line;  // 0 only for line 0, the first
        recent = (gap >= 16 ? 0 : recent >> (8 * gap)) | static_cast<unsigned __int128>(wm) << 64;
        last_line = line;
        unsigned repeats = 0;  // the line's words with a byte mask of 0
        size_t k = 0;
        for (unsigned bits = wm; bits != 0; bits &= bits - 1, k++) {
          const unsigned bm = p[k];
          repeats |= static_cast<unsigned>(bm == 0) << __builtin_ctz(bits);
          lits += kPopcount8.n[bm];
        }
        const unsigned before = static_cast<unsigned>(recent >> (64 - d)) & 0xff;  // set words d back
        if ((repeats & ~before) != 0) return "XBM repeat refers to a word that is not set";
      }
      p += words;
    }
  }
  if (mask_len != SIZE_MAX && static_cast<size_t>(p - body) != mask_len) {
    return "XBM mask string does not end where its length says";
  }
  const size_t left = static_cast<size_t>(end - p);
  if (lits > left) return "XBM literals are truncated";
  if (lits < left) return "XBM literal bytes left over";
  return nullptr;
}

// Walks an XBM body (docs/FORMAT.md, "XBM"); with target == nullptr checks it, else applies a
// body that check accepted (with the same mask_len and rep) without checking it again. The masks
// start the body and the literal bytes are exactly the rest. With `rep` (frames of version 5)
// the body starts with the repeat distance d, and a byte mask of 0 takes the XOR word d before
// it. For the Huffman kinds the body is the decoded mask string followed by the literal string,
// and `mask_len` (else 0) is the length the mask string must have.
const char* xbm_walk(uint8_t* target, const uint8_t* body, size_t len, size_t n, bool rep,
                     size_t mask_len = 0) {
  const size_t lm = n / 512;  // line-mask bytes (frames only: n is a power of two >= 512)
  const size_t r = rep ? 1 : 0;  // the repeat distance byte
  if (target != nullptr) {
    // The literals start after the masks: one byte per set line, one per set word.
    size_t masks = mask_len;
    if (masks == 0) {
      masks = r + lm;
      for (size_t i = 0; i < lm; i++) {
        for (unsigned lb = body[r + i]; lb != 0; lb &= lb - 1) masks += 1 + kPopcount8.n[body[masks]];
      }
    }
    kernels::active().delta->xbm_apply(target, body + r, lm, body + masks, body + len, rep ? body[0] : 0);
    return nullptr;
  }
  if (n % 512 != 0) return "XBM page size is not a multiple of 512";
  if (len < r + lm) return "XBM line mask is truncated";
  const unsigned d = rep ? body[0] : 0;
  if (d > 64) return "XBM repeat distance out of range (0 to 64)";
  const size_t ml = mask_len == 0 ? SIZE_MAX : mask_len - r;  // mask_len >= 1 >= r when given
  return d == 0 ? xbm_check<false>(body + r, len - r, lm, ml, 0) : xbm_check<true>(body + r, len - r, lm, ml, d);
}

// Reads T and L, the lengths of the two strings of a kXrleHuf / kXbmHuf body (for the
// table-carrying kinds: the body after its tables); false if they are cut off or oversized.
bool huf_lengths(const uint8_t** p, const uint8_t* end, uint32_t* t, uint32_t* l) {
  return read_varint(p, end, t) && read_varint(p, end, l);
}

// Decodes the token (or mask) and literal strings of a Huffman-kind body (after its tables)
// into dst: the first string at [0, *tok_len), the second right after it.
const char* huf_unpack(const uint8_t* body, size_t len, size_t n, const uint8_t* tables,
                       Workspace& ws, size_t* tok_len, size_t* lit_len, uint8_t* dst) {
  if (tables == nullptr) return "Huffman page with no tables before it in the frame";
  if (len == 0 || len >= n) return "Huffman body length out of range";
  const char* err = nullptr;
  const huff::Decoder* dec = ws.decoders(tables, &err);
  if (dec == nullptr) return err;
  const uint8_t* p = body;
  const uint8_t* const end = body + len;
  uint32_t t, l, b;
  if (!huf_lengths(&p, end, &t, &l) || !read_varint(&p, end, &b)) {
    return "truncated or oversized Huffman stream lengths";
  }
  if (t == 0 || l == 0 || uint64_t{t} + l >= n) return "Huffman stream lengths out of range";
  if (b > static_cast<size_t>(end - p)) return "Huffman token stream runs past the body";
  // The decoder of the ISA in use (the page's bytes decode the same on every ISA).
  if (const char* e = kernels::active().delta->huf_decode2(dec[0], p, b, dst, t, dec[1], p + b, static_cast<size_t>(end - p) - b, dst + t, l)) {
    return e;
  }
  *tok_len = t;
  *lit_len = l;
  return nullptr;
}

// Checks (target == nullptr) or applies a body of a Huffman kind (kXrleHuf, kXbmHuf, or either
// with its tables). A check leaves the decoded strings in `keep` if given (else scratch); an
// apply with `kept` walks those instead of decoding again.
const char* huf_page(uint8_t* target, uint8_t kind, const uint8_t* body, size_t len, size_t n, bool rep,
                     const uint8_t* tables, Workspace& ws, uint8_t* keep, const uint8_t* kept) {
  if (carries_tables(kind)) {
    if (len <= kHufTables) return "Huffman tables are truncated";
    tables = body;
    body += kHufTables;
    len -= kHufTables;
  }
  size_t t = 0, l = 0;
  const uint8_t* strings = kept;
  if (kept != nullptr) {
    // Checked before (check_page with keep): the lengths read as they did then.
    const uint8_t* p = body;
    uint32_t t32 = 0, l32 = 0;
    if (!huf_lengths(&p, body + len, &t32, &l32)) return "truncated or oversized Huffman stream lengths";
    t = t32;
    l = l32;
  } else {
    uint8_t* dst = keep != nullptr ? keep : ws.tmp();
    if (const char* e = huf_unpack(body, len, n, tables, ws, &t, &l, dst)) return e;
    strings = dst;
  }
  if (is_xbm(kind)) return xbm_walk(target, strings, t + l, n, rep, t);
  return xrle_walk(target, strings, t, n, strings + t, l);
}

// Reads the four varints of a kXbmHufOwn body (T, L, C, B) and checks their ranges; *p is left
// on the code table.
const char* own_lengths(const uint8_t** p, const uint8_t* end, size_t n, uint32_t* t, uint32_t* l,
                        uint32_t* c, uint32_t* b) {
  if (!read_varint(p, end, t) || !read_varint(p, end, l) || !read_varint(p, end, c) || !read_varint(p, end, b)) {
    return "truncated or oversized XBM+HUF lengths";
  }
  if (*t == 0 || *l == 0 || uint64_t{*t} + *l >= n) return "XBM+HUF string lengths out of range";
  if (*c == 0 || *c > *t) return "XBM+HUF stored mask length out of range";
  return nullptr;
}

// Checks (target == nullptr) or applies a kXbmHufOwn body (docs/FORMAT.md). A check leaves the
// decoded masks and literals in `keep` if given (else scratch); an apply with `kept` walks those.
const char* own_page(uint8_t* target, const uint8_t* body, size_t len, size_t n, bool rep, Workspace& ws,
                     uint8_t* keep, const uint8_t* kept) {
  if (len == 0 || len >= n) return "XBM+HUF body length out of range";
  const uint8_t* p = body;
  const uint8_t* const end = body + len;
  uint32_t t, l, c, b;
  if (const char* e = own_lengths(&p, end, n, &t, &l, &c, &b)) return e;
  if (kept != nullptr) return xbm_walk(target, kept, size_t{t} + l, n, rep, t);
  // The code: a bitmap of the used byte values, then their lengths, 4 bits each.
  if (static_cast<size_t>(end - p) < kOwnBitmap) return "XBM+HUF code table is truncated";
  const uint8_t* const bitmap = p;
  p += kOwnBitmap;
  size_t used = 0;
  for (size_t i = 0; i < kOwnBitmap; i++) used += kPopcount8.n[bitmap[i]];
  if (used == 0) return "XBM+HUF code table is empty";
  if (static_cast<size_t>(end - p) < (used + 1) / 2) return "XBM+HUF code table is truncated";
  uint8_t lens[huff::kSymbols] = {};
  unsigned bad = 0;  // a listed value's length is 0 or over kMaxBits
  size_t k = 0;
  for (size_t w = 0; w < kOwnBitmap / 8; w++) {
    uint64_t bits;
    std::memcpy(&bits, bitmap + 8 * w, 8);
    for (; bits != 0; bits &= bits - 1, k++) {
      const unsigned v = (p[k >> 1] >> ((k & 1) * 4)) & 15;
      bad |= v == 0 || v > huff::kMaxBits;
      lens[64 * w + static_cast<size_t>(__builtin_ctzll(bits))] = static_cast<uint8_t>(v);
    }
  }
  if (bad != 0) return "Huffman code length out of range (1 to 11)";
  if ((used & 1) != 0 && (p[used >> 1] >> 4) != 0) return "XBM+HUF code table padding is not zero";
  p += (used + 1) / 2;
  huff::Decoder* dec = ws.own_decoder();
  if (const char* e = huff::build_decoder(lens, dec)) return e;
  if (c > static_cast<size_t>(end - p)) return "XBM+HUF masks run past the body";
  const uint8_t* const masks = p;
  p += c;
  if (b > static_cast<size_t>(end - p)) return "XBM+HUF literal stream runs past the body";
  uint8_t* const dst = keep != nullptr ? keep : ws.tmp();
  if (c == t) {
    std::memcpy(dst, masks, t);
  } else {
    const int r = LZ4_decompress_safe(reinterpret_cast<const char*>(masks), reinterpret_cast<char*>(dst),
                                      static_cast<int>(c), static_cast<int>(t));
    if (r != static_cast<int>(t)) return "XBM+HUF masks: corrupt lz4 block";
  }
  const size_t h1 = (size_t{l} + 1) / 2;
  if (const char* e = kernels::active().delta->huf_decode2(*dec, p, b, dst + t, h1, *dec, p + b,
                                                             static_cast<size_t>(end - p) - b, dst + t + h1, l - h1)) {
    return e;
  }
  return xbm_walk(target, dst, size_t{t} + l, n, rep, t);
}

// Decompresses the XRLE stream of a kXrleLz4 body into tmp; returns its length via *xlen.
const char* xrle_lz4_unpack(const uint8_t* body, size_t len, size_t n, uint8_t* tmp,
                            size_t* xlen) {
  const uint8_t* p = body;
  uint32_t v;
  if (!read_varint(&p, body + len, &v)) return "truncated or oversized lz4 length";
  if (v == 0 || v > n) return "lz4 length out of range";
  const size_t clen = static_cast<size_t>(body + len - p);
  if (clen == 0 || clen > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) return "lz4 block is empty";
  const int r = LZ4_decompress_safe(reinterpret_cast<const char*>(p), reinterpret_cast<char*>(tmp),
                                    static_cast<int>(clen), static_cast<int>(v));
  if (r != static_cast<int>(v)) return "corrupt lz4 block";
  *xlen = v;
  return nullptr;
}

}  // namespace

size_t huffman_strings(uint8_t kind, const uint8_t* body, size_t len, size_t n) {
  if (kind == kXbmHufOwn) {
    const uint8_t* p = body;
    uint32_t t = 0, l = 0, c = 0, b = 0;
    if (len >= n || own_lengths(&p, body + len, n, &t, &l, &c, &b) != nullptr) return 0;
    return size_t{t} + l;
  }
  if (carries_tables(kind)) {
    if (len <= kHufTables) return 0;
    body += kHufTables;
    len -= kHufTables;
  } else if (!uses_tables(kind)) {
    return 0;
  }
  const uint8_t* p = body;
  uint32_t t = 0, l = 0;
  if (!huf_lengths(&p, body + len, &t, &l) || t == 0 || l == 0 || uint64_t{t} + l >= n) return 0;
  return size_t{t} + l;
}

const char* check_page(uint8_t kind, const uint8_t* body, size_t len, size_t n, bool rep, Workspace& ws,
                       const uint8_t* tables, uint8_t* keep) {
  if (n > ws.max_page()) return "page larger than the workspace";
  switch (kind) {
    case kSame:
    case kZero:
      return len == 0 ? nullptr : "SAME/ZERO page with a body";
    case kRaw:
      return len == n ? nullptr : "RAW body length differs from the page size";
    case kXrle:
      if (len == 0 || len >= n) return "XRLE body length out of range";
      return xrle_walk(nullptr, body, len, n);
    case kXrleLz4:
    case kXbmLz4: {
      const bool xbm = kind == kXbmLz4;
      if (len == 0 || len >= n) return xbm ? "XBM+LZ4 body length out of range" : "XRLE+LZ4 body length out of range";
      size_t xlen = 0;
      if (const char* e = xrle_lz4_unpack(body, len, n, ws.tmp(), &xlen)) return e;
      if (!xbm) return xrle_walk(nullptr, ws.tmp(), xlen, n);
      // As for kind 8, the XBM body must be shorter than the page (kind 4 predates this and
      // takes an XRLE stream of up to n bytes).
      if (xlen >= n) return "XBM+LZ4 decompresses to a body as long as the page";
      return xbm_walk(nullptr, ws.tmp(), xlen, n, rep);
    }
    case kRawLz4: {
      if (len == 0 || len >= n || len > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) {
        return "RAW+LZ4 body length out of range";
      }
      const int r =
          LZ4_decompress_safe(reinterpret_cast<const char*>(body), reinterpret_cast<char*>(ws.tmp()),
                              static_cast<int>(len), static_cast<int>(n));
      return r == static_cast<int>(n) ? nullptr : "corrupt lz4 block";
    }
    case kXbm:
      if (len == 0 || len >= n) return "XBM body length out of range";
      return xbm_walk(nullptr, body, len, n, rep);
    case kXrleHuf:
    case kXrleHufTable:
    case kXbmHuf:
    case kXbmHufTable:
      return huf_page(nullptr, kind, body, len, n, rep, tables, ws, keep, nullptr);
    case kXbmHufOwn:
      return own_page(nullptr, body, len, n, rep, ws, keep, nullptr);
    default:
      return "unknown page kind";
  }
}

void apply_page(uint8_t* target, uint8_t kind, const uint8_t* body, size_t len, size_t n, bool rep,
                Workspace& ws, const uint8_t* tables, const uint8_t* kept) {
  if (n == 0) return;  // nothing to write (and target may be null for an empty buffer)
  switch (kind) {
    case kSame:
      return;
    case kZero:
      std::memset(target, 0, n);
      return;
    case kRaw:
      std::memcpy(target, body, n);
      return;
    case kXrle:
      xrle_walk(target, body, len, n);
      return;
    case kXrleLz4:
    case kXbmLz4: {
      size_t xlen = 0;
      if (xrle_lz4_unpack(body, len, n, ws.tmp(), &xlen) != nullptr) return;
      if (kind == kXbmLz4) {
        xbm_walk(target, ws.tmp(), xlen, n, rep);
      } else {
        xrle_walk(target, ws.tmp(), xlen, n);
      }
      return;
    }
    case kRawLz4:
      LZ4_decompress_safe(reinterpret_cast<const char*>(body), reinterpret_cast<char*>(target),
                          static_cast<int>(len), static_cast<int>(n));
      return;
    case kXbm:
      xbm_walk(target, body, len, n, rep);
      return;
    case kXrleHuf:
    case kXrleHufTable:
    case kXbmHuf:
    case kXbmHufTable:
      huf_page(target, kind, body, len, n, rep, tables, ws, nullptr, kept);
      return;
    case kXbmHufOwn:
      own_page(target, body, len, n, rep, ws, nullptr, kept);
      return;
    default:
      return;
  }
}

// ---- entropy stage over a group of pages ----

namespace {

// Makes v hold at least `want` bytes (grows by doubling; contents kept).
void reserve_bytes(std::vector<uint8_t>& v, size_t want) {
  if (v.size() < want) v.resize(std::max(want, v.size() * 2));
}

// Code lengths from a sample's histogram that give every byte value a code, so the pages after
// the sample never meet a value without one: a value the sample did not see weighs 1 against 64
// per sampled occurrence, which puts it among the longest codes.
void sample_lengths(const uint32_t* hist, uint8_t* len) {
  uint32_t h[huff::kSymbols];
  for (size_t s = 0; s < huff::kSymbols; s++) h[s] = hist[s] * 64 + 1;
  huff::build_lengths(h, len);
}

}  // namespace

GroupCoder::GroupCoder(size_t page_size) : n_(page_size) {}

void GroupCoder::reset(uint8_t* out, uint8_t* kinds, uint32_t* lens, size_t own_min) {
  own_min_ = own_min;
  pages_.clear();
  added_ = 0;
  tok_used_ = lit_used_ = 0;
  mode_ = Mode::kSampling;
  tables_out_ = false;
  out_ = out;
  written_ = 0;
  kinds_ = kinds;
  lens_ = lens;
}

void GroupCoder::add(const Ops& ops, uint8_t* shadow, const uint8_t* next, Workspace& ws) {
  const size_t i = added_++;
  ops_ = &ops;
  if (mode_ == Mode::kPlain) {
    // The sample said coding will not pay: the codec without this stage, straight to out.
    size_t len = 0;
    kinds_[i] = encode_page(ops, shadow, next, n_, true, true, true, out_ + written_, &len, ws, own_min_);
    lens_[i] = static_cast<uint32_t>(len);
    written_ += len;
    return;
  }
  // The sample's pages keep their split streams until the decision; after it, every page is
  // written at once and reuses the start of the buffers.
  if (mode_ == Mode::kCoding) tok_used_ = lit_used_ = 0;
  reserve_bytes(toks_, tok_used_ + n_ + 64);
  reserve_bytes(lits_, lit_used_ + n_ + 64);
  Page pg{};
  pg.next = next;
  pg.kind = ops.encode_page_split(shadow, next, n_, true, true, toks_.data() + tok_used_,
                                  &pg.tok_len, lits_.data() + lit_used_, &pg.lit_len, ws.scratch());
  pg.tok_off = tok_used_;  // SAME, ZERO and RAW pages split into nothing
  pg.lit_off = lit_used_;
  tok_used_ += pg.tok_len;
  lit_used_ += pg.lit_len;
  if (mode_ == Mode::kCoding) {
    write_coded(i, pg, ws);
    return;
  }
  pages_.push_back(pg);
  if (pages_.size() == kSamplePages) decide(ws);
}

void GroupCoder::decide(Workspace& ws) {
  bool code = false;
  if (lit_used_ != 0) {
    // The sample's bodies as the codec without this stage makes them (lz4 where it pays): what
    // coding has to beat. On real guest pages lz4 already takes most of what a Huffman code
    // would, and comparing with the first-stage bytes alone codes groups for little gain.
    // An XBM page's own code (kind 12) counts too, where it pays: a group code has to beat the
    // smaller of the two (kept beside the plain body, for writing the page below).
    size_t split = 0, other = 0, alt_used = 0;
    for (Page& pg : pages_) {
      if (!pg.streams()) continue;
      reserve_bytes(alt_, alt_used + 2 * (n_ + 64));
      size_t len = 0;
      pg.alt_kind = plain(pg, alt_.data() + alt_used, &len, ws);
      pg.alt_off = alt_used;
      pg.alt_len = len;
      alt_used += len;
      pg.own_off = alt_used;
      pg.own_len = 0;
      if (pg.kind == kXbm && own_min_ != 0) {
        // As encode_page would choose: kind 12 if it pays, unless rule 5's lz4 body (the plain
        // body if kind 11) is no longer.
        pg.own_len = xbm_own_body(*ops_, toks_.data() + pg.tok_off, pg.tok_len, lits_.data() + pg.lit_off,
                                  pg.lit_len, own_min_, alt_.data() + alt_used, pg.alt_kind == kXbmLz4 ? pg.alt_len : SIZE_MAX, ws);
        alt_used += pg.own_len;
      }
      other += pg.own_len != 0 ? pg.own_len : len;
      split++;
    }
    uint32_t ht[huff::kSymbols] = {}, hl[huff::kSymbols] = {};
    count_bytes(toks_.data(), tok_used_, ht);
    count_bytes(lits_.data(), lit_used_, hl);
    // Worth it only if the estimate (both strings, the tables, ~4 bytes of lengths and padding
    // per page) saves at least 1/kMinSaving of those bodies. A code fitted to the sample looks
    // better on it than it will on the group; charging the sample the whole tables roughly
    // evens that out.
    const uint64_t est = (huff::estimate_bits(ht) + huff::estimate_bits(hl)) / 8 + kHufTables + 4 * split;
    code = est + other / kMinSaving < other;
    if (code) {
      sample_lengths(ht, len_tok_);
      sample_lengths(hl, len_lit_);
      ops_->huf_build_code(len_tok_, &code_tok_);
      ops_->huf_build_code(len_lit_, &code_lit_);
    }
  }
  mode_ = code ? Mode::kCoding : Mode::kPlain;
  for (size_t i = 0; i < pages_.size(); i++) {
    const Page& pg = pages_[i];
    if (!pg.streams()) {
      write_plain(i, pg, ws);
    } else if (code) {
      write_coded(i, pg, ws, true);
    } else {
      // Written as without this stage (encode_page's choice: its own code where that paid).
      const bool own = pg.own_len != 0;
      const size_t c = own ? pg.own_len : pg.alt_len;
      std::memcpy(out_ + written_, alt_.data() + (own ? pg.own_off : pg.alt_off), c);
      kinds_[i] = own ? kXbmHufOwn : pg.alt_kind;
      lens_[i] = static_cast<uint32_t>(c);
      written_ += c;
    }
  }
  pages_.clear();
}

size_t GroupCoder::finish(Workspace& ws) {
  if (mode_ == Mode::kSampling) decide(ws);  // a group shorter than the sample
  return written_;
}

Kind GroupCoder::plain(const Page& pg, uint8_t* dst, size_t* len, Workspace& ws, size_t limit) const {
  *len = 0;
  if (pg.kind == kXbm) {
    // Rule 5 straight from the split strings (what encode_page makes of their concat, its own
    // code left out: decide() and write_coded() weigh that apart).
    const uint8_t* at = nullptr;
    const Kind k = xbm_stage(*ops_, toks_.data() + pg.tok_off, pg.tok_len, lits_.data() + pg.lit_off,
                             pg.lit_len, n_, 0, dst, &at, len, limit, ws);
    if (k == kXbm) {
      *len = body(pg, dst);
    } else if (at != dst) {
      std::memcpy(dst, at, *len);
    }
    return k;
  }
  if (pg.streams()) {
    *len = body(pg, dst);
  } else if (pg.kind == kRaw) {
    std::memcpy(dst, pg.next, n_);
    *len = n_;
  }
  return lz4_stage(pg.kind, pg.next, n_, dst, len, ws, limit);
}

void GroupCoder::write_plain(size_t i, const Page& pg, Workspace& ws) {
  size_t len = 0;
  kinds_[i] = plain(pg, out_ + written_, &len, ws);
  lens_[i] = static_cast<uint32_t>(len);
  written_ += len;
}

void GroupCoder::write_coded(size_t i, const Page& pg, Workspace& ws, bool alt) {
  if (!pg.streams()) {
    write_plain(i, pg, ws);  // SAME, ZERO, RAW (lz4 may take a RAW page)
    return;
  }
  // The Huffman body first, then the plain body and (where the codec without this stage would
  // try it) its lz4 form, which only has to beat the Huffman body.
  reserve_bytes(coded_, huff::encode_bound(pg.tok_len) + huff::encode_bound(pg.lit_len));
  uint8_t* cb = coded_.data();
  // The pair is encoded at once, so the literals' stream is made behind the tokens' room and
  // then moved down behind their stream.
  uint8_t* const lit_at = cb + huff::encode_bound(pg.tok_len);
  size_t lb = 0;
  const size_t tb = ops_->huf_encode2(code_tok_, toks_.data() + pg.tok_off, pg.tok_len, cb, code_lit_,
                                      lits_.data() + pg.lit_off, pg.lit_len, lit_at, &lb);
  std::memmove(cb + tb, lit_at, lb);
  const size_t hlen = varint_size(pg.tok_len) + varint_size(pg.lit_len) + varint_size(tb) + tb + lb;
  // The page that carries the tables must save them too, so a group never comes out larger
  // than without this stage; the pages after it only have to be smaller.
  const size_t hcost = hlen + (tables_out_ ? 0 : kHufTables);
  uint8_t* o = out_ + written_;
  size_t len = 0;
  Kind kind = pg.kind;
  if (alt) {
    kind = pg.alt_kind;
    len = pg.alt_len;
    if (hcost >= len) std::memcpy(o, alt_.data() + pg.alt_off, len);
  } else if (hcost < pg.tok_len + pg.lit_len && pg.tok_len + pg.lit_len < lz4_min_body(pg.kind, n_)) {
    len = pg.tok_len + pg.lit_len;  // Huffman wins and rule 5 would not try lz4: no plain body
  } else {
    kind = plain(pg, o, &len, ws, hcost);  // the group's code stands in for an own code
  }
  if (alt && pg.own_len != 0 && pg.own_len < hlen) {
    // A sample page may still do better with its own code (the group code was fitted to all
    // eight): kept if shorter than its plain body (so it was made) and its body in the group
    // code, tables not counted (a page that skips them only hands them to the next).
    std::memcpy(o, alt_.data() + pg.own_off, pg.own_len);
    kinds_[i] = kXbmHufOwn;
    lens_[i] = static_cast<uint32_t>(pg.own_len);
    written_ += pg.own_len;
    return;
  }
  if (hcost < len) {
    const bool xbm = pg.kind == kXbm;
    uint8_t* h = o;
    if (!tables_out_) {
      huff::write_table(len_tok_, h);
      huff::write_table(len_lit_, h + huff::kTableBytes);
      h += kHufTables;
    }
    h = write_varint(h, pg.tok_len);
    h = write_varint(h, pg.lit_len);
    h = write_varint(h, tb);
    std::memcpy(h, cb, tb + lb);
    kinds_[i] = xbm ? (tables_out_ ? kXbmHuf : kXbmHufTable) : (tables_out_ ? kXrleHuf : kXrleHufTable);
    lens_[i] = static_cast<uint32_t>(hcost);
    tables_out_ = true;
  } else {
    kinds_[i] = kind;
    lens_[i] = static_cast<uint32_t>(len);
  }
  written_ += lens_[i];
}

size_t GroupCoder::concat(const Page& pg, uint8_t* dst) const {
  std::memcpy(dst, toks_.data() + pg.tok_off, pg.tok_len);
  std::memcpy(dst + pg.tok_len, lits_.data() + pg.lit_off, pg.lit_len);
  return pg.tok_len + pg.lit_len;
}

size_t GroupCoder::interleave(const Page& pg, uint8_t* dst) const {
  // Our own first stage's output, so well formed: read_varint cannot fail here.
  const uint8_t* t = toks_.data() + pg.tok_off;
  const uint8_t* const end = t + pg.tok_len;
  const uint8_t* l = lits_.data() + pg.lit_off;
  uint8_t* o = dst;
  while (t < end) {
    const uint8_t* const token = t;
    const uint8_t tk = *t++;
    size_t run = tk >> 4;
    uint32_t v = 0;
    if ((tk & 15) == 15) read_varint(&t, end, &v);
    if (run == 0) {
      read_varint(&t, end, &v);
      run = 16 + v;
    }
    std::memcpy(o, token, static_cast<size_t>(t - token));  // the token and its varints
    o += t - token;
    // SAFETY: lits_ has 64 bytes of slack past the last page's literals and every dst (the
    // group's out, ws.tmp()) at least 32 past the stream, so the 32-byte over-copies stay in
    // bounds; only `run` bytes count.
    std::memcpy(o, l, 32);
    for (size_t k = 32; k < run; k += 32) std::memcpy(o + k, l + k, 32);
    o += run;
    l += run;
  }
  return static_cast<size_t>(o - dst);
}

}  // namespace kernels::delta
