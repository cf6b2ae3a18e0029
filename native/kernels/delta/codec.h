// Page codec: the first stage (kernels::delta::Ops::encode_page, per ISA) plus the optional lz4
// second stage, and the decoder side: checking a page body against hostile input and applying
// it. ISA independent and free of N-API, so the sanitizer/fuzz harness links it directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/delta/delta.h"
#include "kernels/delta/huffman.h"

namespace kernels::delta {

// Bytes of the two Huffman tables (tokens, then literals) at the start of a kXrleHufTable body.
constexpr size_t kHufTables = 2 * huff::kTableBytes;

// Per-thread buffers for encoding or decoding pages of up to `max_page` bytes.
class Workspace {
 public:
  explicit Workspace(size_t max_page);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  Scratch scratch() { return Scratch{xor_.data(), mask_.data(), edges_.data()}; }
  uint8_t* tmp() { return tmp_.data(); }
  void* lz4_stream();  // lz4 state (LZ4_sizeofState bytes), allocated on first use
  size_t max_page() const { return max_page_; }
  // Decoders for the Huffman tables at `tables` (kHufTables bytes), built on first use and kept
  // while the same tables are asked for again (the pages of one group); nullptr on bad tables
  // with the reason in *err.
  const huff::Decoder* decoders(const uint8_t* tables, const char** err);

 private:
  size_t max_page_;
  std::vector<uint8_t> xor_;
  std::vector<uint64_t> mask_;
  std::vector<uint32_t> edges_;
  std::vector<uint8_t> tmp_;
  void* lz4_ = nullptr;
  huff::Decoder* dec_ = nullptr;  // [0] tokens, [1] literals
  const uint8_t* dec_tables_ = nullptr;
  const char* dec_err_ = nullptr;
};

// Encodes one n-byte page (n <= ws.max_page()) into `out` (capacity >= n + 64). With `compress`,
// XRLE and RAW bodies are replaced by their lz4 form when that saves at least 1/16 of the body.
// With `xbm` (page frames) the first stage may choose kXbm (lz4 may then make it kXbmLz4).
Kind encode_page(const Ops& ops, uint8_t* prev, const uint8_t* next, size_t n, bool update_prev,
                 bool compress, bool xbm, uint8_t* out, size_t* out_len, Workspace& ws);

// The lz4 second stage alone, for a body the first stage made (`next` is the page itself).
Kind lz4_stage(Kind k, const uint8_t* next, size_t n, uint8_t* out, size_t* out_len, Workspace& ws);

// Returns nullptr when `body` (len bytes) is a well-formed body of `kind` for an n-byte page,
// else a short reason. Never reads outside body[0, len). Uses ws.tmp() for lz4 and Huffman
// kinds. `tables` is the start of the kXrleHufTable body whose tables a kXrleHuf page uses
// (nullptr: none; the kind is then refused); a kXrleHufTable page uses its own.
const char* check_page(uint8_t kind, const uint8_t* body, size_t len, size_t n, Workspace& ws,
                       const uint8_t* tables = nullptr);

// Applies a body that check_page accepted (with the same tables) to the n-byte `target`.
void apply_page(uint8_t* target, uint8_t kind, const uint8_t* body, size_t len, size_t n,
                Workspace& ws, const uint8_t* tables = nullptr);

// The entropy stage over a group of pages (encode_pages with compress): the first stage writes
// each page's XRLE stream split into token bytes and literal bytes, one Huffman code is built
// for each from the whole group, and each page keeps the smaller of its Huffman and plain body
// (with lz4 tried on the same pages as without this stage). The group's first Huffman page
// carries the tables (kXrleHufTable).
class GroupCoder {
 public:
  explicit GroupCoder(size_t page_size);
  // Begins a group whose bodies go to out (capacity: pages * (page size + 64) + kHufTables),
  // kinds and lengths to kinds[i] and lens[i] for its i-th page.
  void reset(uint8_t* out, uint8_t* kinds, uint32_t* lens);
  // Encodes `next` against `shadow` (updating the shadow) as the group's next page.
  void add(const Ops& ops, uint8_t* shadow, const uint8_t* next, Workspace& ws);
  // Writes what is still pending; returns the bytes the group wrote to out.
  size_t finish(Workspace& ws);

 private:
  // Pages of a group sampled before deciding whether the group is worth splitting.
  static constexpr size_t kSamplePages = 4;
  // The stage is used only where its estimate saves at least 1/kMinSaving of a group's XRLE
  // bytes. It costs about as much time as the first stage; measured on real guest pages (1 s
  // capture) a 1/8 rule gave 8 % smaller frames for ~35 % more time, while on pages whose XOR
  // bytes are small (counters) it saves ~40 %: a quarter keeps it to where it is needed.
  static constexpr size_t kMinSaving = 4;
  struct Page {
    Kind kind;
    const uint8_t* next;
    size_t tok_off, tok_len, lit_off, lit_len;  // split XRLE streams (XRLE pages)
    size_t lz4_len, lz4_off;                    // lz4 body in lz4_ (0: not tried or no gain)
    size_t huf_len, huf_off, huf_tok;           // Huffman body (0: not smaller than the others)
  };
  // Writes the XRLE stream of a page (tokens and literals interleaved again) to dst.
  size_t interleave(const Page& pg, uint8_t* dst) const;
  // Writes the XBM body of a page (masks, then literals) to dst.
  size_t concat(const Page& pg, uint8_t* dst) const;
  // Writes split page i as the codec without this stage would (XRLE, RAW, or their lz4 forms).
  void write_plain(size_t i, Workspace& ws);
  // Adds what was split since the last call to the histograms.
  void histogram();
  // True if coding everything split so far would save 1/kMinSaving of its bytes after
  // `overhead` bytes (estimated from the histograms' entropy).
  bool pays(size_t overhead);

  size_t n_;
  size_t added_ = 0;           // pages added to the group (its page index)
  std::vector<Page> pages_;    // the split pages: the sample, or the whole group
  size_t tok_used_ = 0, lit_used_ = 0;
  bool plain_ = false;  // the sample said no: later pages go straight to out
  uint8_t* out_ = nullptr;
  size_t written_ = 0;
  uint8_t* kinds_ = nullptr;
  uint32_t* lens_ = nullptr;
  std::vector<uint8_t> toks_, lits_, coded_, lz4_;
  size_t hist_tok_done_ = 0, hist_lit_done_ = 0;  // bytes already counted
  uint32_t hist_tok_[huff::kSymbols];
  uint32_t hist_lit_[huff::kSymbols];
};

// LEB128 helpers shared with frame.cc. read_varint returns false on truncation or a value that
// does not fit in 32 bits (at most 5 bytes).
size_t varint_size(uint64_t v);
uint8_t* write_varint(uint8_t* p, uint64_t v);
bool read_varint(const uint8_t** p, const uint8_t* end, uint32_t* v);

}  // namespace kernels::delta
