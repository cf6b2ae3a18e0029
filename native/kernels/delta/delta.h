// Kernel family "delta": the first stage of the page delta codec (see docs/FORMAT.md).
//
// Every ISA variant provides encode_page: XOR a page against its previous version, classify it
// (SAME / ZERO / XRLE / RAW) and emit the XOR-RLE token stream. The XOR and the zero-byte masks
// are the SIMD part (per ISA); walking the masks into tokens is shared code (generic.inc)
// compiled once per ISA so it gets that target's tzcnt/auto-vectorisation. The optional second
// stage (lz4) and the frame layout are ISA independent (codec.h, frame.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels::delta {

namespace huff {
struct Code;
struct Decoder;
}

// Per-page encodings. The numeric values are part of the wire format (docs/FORMAT.md).
enum Kind : uint8_t {
  kSame = 0,     // unchanged: no body
  kZero = 1,     // all zero bytes: no body
  kXrle = 2,     // XOR-RLE token stream
  kRaw = 3,      // the new bytes verbatim (body length == page length)
  kXrleLz4 = 4,  // varint(XOR-RLE length) + lz4 block of the XOR-RLE stream
  kRawLz4 = 5,   // lz4 block of the new bytes (decompresses to exactly the page length)
  kXrleHuf = 6,  // XOR-RLE split into token and literal streams, each Huffman coded with the
                 // tables of the nearest kXrleHufTable page before it in the frame
  kXrleHufTable = 7,  // the two Huffman tables (2 x 128 bytes), then a kXrleHuf body
  kXbm = 8,      // XOR byte masks: line mask, word masks, byte masks, then the non-zero XOR bytes
  kXbmHuf = 9,   // kXbm split into mask and literal strings, Huffman coded like kXrleHuf
  kXbmHufTable = 10,  // the two Huffman tables, then a kXbmHuf body
  kXbmLz4 = 11,  // varint(XBM length) + lz4 block of the XBM body
  kXbmHufOwn = 12,  // XBM with its literals Huffman coded by the page's own code (in the body),
                    // its masks as they are or as an lz4 block
};
constexpr uint8_t kKindCount = 13;

// Which first-stage form the split streams of a Huffman kind hold.
inline bool is_xbm(uint8_t kind) { return kind >= kXbm && kind <= kXbmHufOwn; }
// Pages that carry Huffman tables, and pages that use the nearest such page's tables.
inline bool carries_tables(uint8_t kind) { return kind == kXrleHufTable || kind == kXbmHufTable; }
inline bool uses_tables(uint8_t kind) { return kind == kXrleHuf || kind == kXbmHuf; }

// pshufb indices that pack the bytes of a 64-bit word selected by an 8-bit mask: row m lists
// the positions of the set bits of m in order, then 0x80 (a zero byte) for the rest. Used by
// the SIMD variants' pack8 (the XBM encoder).
struct Pack8Table {
  alignas(8) uint8_t idx[256][8];
  constexpr Pack8Table() : idx{} {
    for (unsigned m = 0; m < 256; m++) {
      unsigned p = 0;
      for (unsigned k = 0; k < 8; k++) {
        if ((m >> k) & 1) idx[m][p++] = static_cast<uint8_t>(k);
      }
      for (; p < 8; p++) idx[m][p] = 0x80;
    }
  }
};
inline constexpr Pack8Table kPack8{};

// The inverse, for applying XBM: row m moves packed bytes back to the positions of m's set bits
// (byte k takes packed byte "set bits of m below k"; 0x80, a zero byte, where bit k is clear).
struct Unpack8Table {
  alignas(8) uint8_t idx[256][8];
  constexpr Unpack8Table() : idx{} {
    for (unsigned m = 0; m < 256; m++) {
      unsigned p = 0;
      for (unsigned k = 0; k < 8; k++) idx[m][k] = ((m >> k) & 1) ? static_cast<uint8_t>(p++) : 0x80;
    }
  }
};
inline constexpr Unpack8Table kUnpack8{};

// Each bit of a byte value spread to a whole byte: bit k of m gives byte k of v[m] = 0xff. The
// XBM encoder turns a line's mask of repeated words into their byte masks' bits with it.
struct Expand8Table {
  uint64_t v[256];
  constexpr Expand8Table() : v{} {
    for (unsigned m = 0; m < 256; m++) {
      for (unsigned k = 0; k < 8; k++) {
        if ((m >> k) & 1) v[m] |= uint64_t{0xff} << (8 * k);
      }
    }
  }
};
inline constexpr Expand8Table kExpand8{};

// The repeat distances an XBM encoder chooses from (docs/FORMAT.md, "XBM"), in words.
constexpr unsigned kRepeatDistances[4] = {1, 2, 4, 8};

// Set bits of each byte value. The scalar build is baseline x86-64, where __builtin_popcount is
// a library call: a table is several times faster on the per-mask counts.
struct Popcount8 {
  uint8_t n[256];
  constexpr Popcount8() : n{} {
    for (unsigned v = 0; v < 256; v++) {
      unsigned c = 0;
      for (unsigned k = 0; k < 8; k++) c += (v >> k) & 1;
      n[v] = static_cast<uint8_t>(c);
    }
  }
};
inline constexpr Popcount8 kPopcount8{};

// repeat_scan's bookkeeping for line b of `lines` (generic.inc has the contract): e[k] is the
// line's mask of words that repeat the word kRepeatDistances[k] before them.
// Counts go to a local array of the caller's (kept in registers; cnt is written once at the end).
// Static: each ISA unit keeps its own copy, compiled with its flags.
static inline void note_repeats(uint8_t* eq, size_t lines, size_t b, const unsigned (&e)[4], size_t (&c)[4]) {
  for (size_t k = 0; k < 4; k++) {
    eq[k * lines + b] = static_cast<uint8_t>(e[k]);
    c[k] += kPopcount8.n[e[k] & 0xff];
  }
}

// Scratch a caller hands to encode_page (one per thread; sized for the largest page).
struct Scratch {
  uint8_t* xor_buf;    // n rounded up to 64, plus 64 bytes of slack
  uint64_t* mask;      // (n + 63) / 64 words
  uint32_t* edges;     // kEdgeSlots entries: run edges of a group of words (run walk)
  uint8_t* words;      // (n + 63) / 64 + 8 bytes: per 64-byte line, its non-zero 8-byte words (XBM)
  uint8_t* eq;         // 4 * ((n + 63) / 64) bytes: per repeat distance and line, its repeated words
};

// The run walk lists the run edges of kEdgeWords mask words at a time (at most 64 per word,
// plus the open run carried in, plus 8 entries written past the last by the unrolled loop).
constexpr size_t kEdgeWords = 16;
constexpr size_t kEdgeSlots = kEdgeWords * 64 + 16;

struct Ops {
  const char* isa;
  // Encodes `next` against `prev` (both n bytes) into `out` (capacity n + 64 bytes: literals
  // are copied in 16/32-byte blocks) and returns the
  // kind; *out_len gets the body length (0 for SAME/ZERO, n for RAW, < n for XRLE).
  // When `update_prev` is true, prev is overwritten with next (only the 64-byte blocks that
  // differ are written), which is how encodePages keeps its shadow in step.
  // With `xbm` (page frames only; n must then be a multiple of 512) the page may come out as
  // kXbm instead of kXrle, by the canonical rule of docs/FORMAT.md; *mask_len then gets the
  // bytes of masks at the start of its body (mask_len may be nullptr).
  Kind (*encode_page)(uint8_t* prev, const uint8_t* next, size_t n, bool update_prev, bool xbm,
                      uint8_t* out, size_t* out_len, size_t* mask_len, const Scratch& scratch);
  // The same with the XRLE stream split in two (the entropy stage's input): token bytes (with
  // their extension varints) to `toks`, literal bytes to `lits` (each of capacity n + 64); for
  // a kXbm page the masks go to `toks` and the literal bytes to `lits`.
  // Same kinds; for a RAW page nothing is written (*tok_len and *lit_len 0: the body is `next`).
  Kind (*encode_page_split)(uint8_t* prev, const uint8_t* next, size_t n, bool update_prev, bool xbm,
                            uint8_t* toks, size_t* tok_len, uint8_t* lits, size_t* lit_len,
                            const Scratch& scratch);
  // huff::build_code built for this ISA (huffman_code.inc): the same codes, with POPCNT where
  // the ISA has it.
  void (*huf_build_code)(const uint8_t* len, huff::Code* code);
  // huff::fast_lengths built for this ISA (huffman_code.inc): the same lengths, with its widest
  // vectors.
  void (*huf_fast_lengths)(const uint32_t* hist, uint32_t total, uint8_t* len);
  // The Huffman encoder of two streams built for this ISA (huffman_encode.inc; huffman.h has
  // the contract).
  size_t (*huf_encode2)(const huff::Code& ca, const uint8_t* sa, size_t na, uint8_t* oa, const huff::Code& cb,
                        const uint8_t* sb, size_t nb, uint8_t* ob, size_t* lb);
  // The Huffman decoder of two streams built for this ISA (huffman_decode.inc; huffman.h).
  const char* (*huf_decode2)(const huff::Decoder& da, const uint8_t* ia, size_t la, uint8_t* oa,
                             size_t ca, const huff::Decoder& db, const uint8_t* ib, size_t lb,
                             uint8_t* ob, size_t cb);
  // XORs a checked XBM body into the page at target: the masks from body (the line mask of lm
  // bytes first, after the repeat distance d of a repeating body), the literals from lit up to
  // end; d is that distance (0: no repeats) (xbm_apply.inc).
  void (*xbm_apply)(uint8_t* target, const uint8_t* body, size_t lm, const uint8_t* lit, const uint8_t* end,
                    unsigned d);
};

extern const Ops ops_scalar;
extern const Ops ops_avx2;
extern const Ops ops_avx512;

}  // namespace kernels::delta
