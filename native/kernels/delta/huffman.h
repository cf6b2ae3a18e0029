// Canonical, length-limited Huffman coding of bytes: the entropy stage of the page codec
// (page kinds XRLE+HUF, docs/FORMAT.md). ISA independent and free of N-API.
//
// A code is carried as 256 code lengths of 4 bits (kTableBytes). Codes are canonical (shorter
// codes first, then by symbol, as in deflate) and written least significant bit first, so a
// decoder reads kMaxBits bits and looks the symbol up in one table. The decoder treats tables and
// streams as hostile: over-subscribed or empty tables, codes that are not in the table, streams
// that end early and bits left over are all errors, never out-of-bounds reads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels::delta::huff {

constexpr unsigned kMaxBits = 11;

// Set bits of x. Units built for baseline x86-64 have no POPCNT (__builtin_popcountll is a
// library call there): a few shifts and adds in line are faster. Static, because its body
// depends on the including unit's target flags: each unit keeps its own.
static inline unsigned popcount64(uint64_t x) {
#if defined(__POPCNT__)
  return static_cast<unsigned>(__builtin_popcountll(x));
#else
  x = x - ((x >> 1) & 0x5555555555555555u);
  x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fu;
  return static_cast<unsigned>((x * 0x0101010101010101u) >> 56);
#endif
}
constexpr size_t kSymbols = 256;
constexpr size_t kTableBytes = kSymbols / 2;

// Worst-case encoded size of `count` symbols, plus the 8 bytes of slack the writer needs.
inline size_t encode_bound(size_t count) { return (count * kMaxBits + 7) / 8 + 8; }

// Code lengths (0 = symbol unused, else 1..kMaxBits) for a histogram of symbol counts. An
// optimal Huffman code; when that is deeper than kMaxBits, codes are clamped and the least
// frequent short codes lengthened until the lengths form a prefix code again. A single used
// symbol gets length 1. Deterministic: ties break by symbol.
void build_lengths(const uint32_t* hist, uint8_t* len);

// Code lengths as build_lengths gives them (a prefix code, 0 for unused symbols, 1..kMaxBits),
// near-optimal rather than optimal, in about a third of its time: for one page's literals, where
// the code is built for a few thousand symbols and its cost shows. `total` is the sum of hist.
// Each used symbol's length is log2(total / count) rounded down from three quarters of a bit up
// (taken from ten thresholds, no per-symbol loop), clamped to 1..kMaxBits; code space left over
// goes to the shortest codes first (in symbol order within a length), one bit each. Where the
// rounding over-subscribes (about 3 % of real pages) or `total` passes 32767, the lengths are
// build_lengths'. On real guest pages the literals take ~0.8 % more bits than with
// build_lengths. Deterministic: the same histogram gives the same lengths on every machine.
void fast_lengths(const uint32_t* hist, uint32_t total, uint8_t* len);

// About the bits a Huffman code would spend on the histogram (its entropy, plus a little), cheap
// enough to decide whether building the code is worth it.
uint64_t estimate_bits(const uint32_t* hist);

// Bit-reversed canonical codes for the lengths (which build_lengths or fast_lengths made: valid
// by construction): the code bits of each symbol and, apart, its length.
struct Code {
  uint16_t bits[kSymbols];
  uint8_t len[kSymbols];
};
void build_code(const uint8_t* len, Code* code);
// The same is built per ISA (huffman_code.inc) and reached through Ops::huf_build_code.

// Bit s of used[s >> 6] set when len[s] != 0: the used symbols of a code.
void used_bitmap(const uint8_t* len, uint64_t* used);

// The table bytes: byte i holds the length of symbol 2i in its low nibble, 2i+1 in its high one.
void write_table(const uint8_t* len, uint8_t* out);

// The encoder of two streams, size_t encode2(const Code& ca, const uint8_t* sa, size_t na,
// uint8_t* oa, const Code& cb, const uint8_t* sb, size_t nb, uint8_t* ob, size_t* lb), is built
// per ISA from huffman_encode.inc and reached through Ops::huf_encode2: it encodes sa[0, na)
// with code ca into oa (capacity encode_bound(na)) and sb[0, nb) with cb into ob (capacity
// encode_bound(nb); apart from oa), pads each stream's last byte with zero bits, returns stream
// a's bytes and puts stream b's in *lb. Two streams at once, as the page kinds always have two.

// Lookup table of a decoder: entry = code length << 8 | symbol, kNoCode where no code starts.
constexpr uint16_t kNoCode = 0x8000;
struct Decoder {
  uint16_t entry[1u << kMaxBits];
};

// Reads a kTableBytes table into a decoder; nullptr or the reason it is invalid.
const char* read_table(const uint8_t* table, Decoder* dec);

// Builds a decoder from 256 code lengths, each 0 (unused) or 1..kMaxBits (checked by the
// caller); nullptr, or the reason they are not a code (none used, or over-subscribed).
const char* build_decoder(const uint8_t* len, Decoder* dec);

// The decoder, const char* decode2(const Decoder& da, const uint8_t* ia, size_t la, uint8_t* oa,
// size_t ca, const Decoder& db, const uint8_t* ib, size_t lb, uint8_t* ob, size_t cb), is built
// per ISA from huffman_decode.inc and reached through Ops::huf_decode2: it decodes two
// independent streams, exactly `ca` symbols from ia[0, la) into oa with decoder da and `cb` from
// ib[0, lb) into ob with db. Each stream must end there: only the zero padding of its last byte
// may be left. Returns nullptr or the reason one is corrupt (stream a's first).

constexpr uint64_t kCodeMask = (1u << kMaxBits) - 1;

// Tops the bit accumulator up from p byte by byte while bytes remain (the bits of acc above
// `bits` must be zero).
inline void refill_bytes(const uint8_t*& p, const uint8_t* end, uint64_t& acc, unsigned& bits) {
  while (bits <= 56 && p < end) {
    acc |= uint64_t{*p++} << bits;
    bits += 8;
  }
}

// Decodes exactly `count` symbols from in[0, len) symbol by symbol, checking each: the slow
// path that names what is wrong with a stream the fast decoder refused.
const char* decode_exact(const Decoder& dec, const uint8_t* in, size_t len, uint8_t* out, size_t count);

}  // namespace kernels::delta::huff
