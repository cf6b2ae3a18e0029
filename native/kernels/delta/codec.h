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

  Scratch scratch() { return Scratch{xor_.data(), mask_.data(), edges_.data(), words_.data(), eq_.data()}; }
  uint8_t* tmp() { return tmp_.data(); }
  void* lz4_stream();  // lz4 state (LZ4_sizeofState bytes), allocated on first use
  size_t max_page() const { return max_page_; }
  // Decoders for the Huffman tables at `tables` (kHufTables bytes), built on first use and kept
  // while the same tables are asked for again (the pages of one group); nullptr on bad tables
  // with the reason in *err.
  const huff::Decoder* decoders(const uint8_t* tables, const char** err);
  // The decoder of a kXbmHufOwn page's own code (rebuilt for every such page).
  huff::Decoder* own_decoder();
  // Room for building a kXbmHufOwn body and the XBM+LZ4 body it is compared with (5 * max_page
  // + 128 bytes: two literal streams, the masks' lz4 block, then from 4 * max_page the other).
  uint8_t* own_scratch() { return own_.data(); }

 private:
  size_t max_page_;
  std::vector<uint8_t> xor_;
  std::vector<uint64_t> mask_;
  std::vector<uint32_t> edges_;
  std::vector<uint8_t> words_;
  std::vector<uint8_t> eq_;
  std::vector<uint8_t> tmp_;
  void* lz4_ = nullptr;
  std::vector<uint8_t> own_;
  huff::Decoder* own_dec_ = nullptr;
  huff::Decoder* dec_ = nullptr;  // [0] tokens, [1] literals
  const uint8_t* dec_tables_ = nullptr;
  const char* dec_err_ = nullptr;
};

// Encodes one n-byte page (n <= ws.max_page()) into `out` (capacity >= n + 64). With `compress`,
// XRLE and RAW bodies are replaced by their lz4 form when that saves at least 1/16 of the body.
// With `xbm` (page frames) the first stage may choose kXbm (lz4 may then make it kXbmLz4); with
// own_min != 0 too, an XBM body of at least own_min literals that pay for a code of their own
// may become kXbmHufOwn (xbm_stage).
Kind encode_page(const Ops& ops, uint8_t* prev, const uint8_t* next, size_t n, bool update_prev,
                 bool compress, bool xbm, uint8_t* out, size_t* out_len, Workspace& ws,
                 size_t own_min = 0);

// The kXbmHufOwn body (docs/FORMAT.md, "XBM+HUF with its own code") of the XBM body masks[0, t)
// + lits[0, l), in dst (capacity t + l), if it saves at least 1/16 of that body and is shorter
// than `limit`; returns its length, 0 if it does not pay (then dst holds nothing of use).
// Pages with fewer than own_min literals are refused before anything is counted. A code costs
// ~1.5-2.5 us a page whatever it saves, so the default, kOwnMinLiterals, is a count at which
// real guest pages of fine-grained changes still encode at 2 GB/s a thread with a margin
// (docs/delta.md, session 9: ~2.2 GB/s from 1280 literals, ~2.1 from 1024).
constexpr size_t kOwnMinLiterals = 1280;
constexpr size_t kOwnBitmap = 32;  // a kXbmHufOwn table's bitmap of the used byte values

// The second stage of an XBM body (masks[0, t) + lits[0, l) of an n-byte page): with own_min != 0,
// the kXbmHufOwn body if it pays (xbm_own_body), then the kXbmLz4 body where rule 5 tries it,
// which is kept instead if it is no longer. The chosen body, shorter than `limit`, is at *body_at
// (dst, capacity t + l, for kXbmHufOwn; workspace scratch for kXbmLz4, valid until ws is used
// again) with its length in *len; returns kXbm (no body) if none pays.
Kind xbm_stage(const Ops& ops, const uint8_t* masks, size_t t, const uint8_t* lits, size_t l, size_t n,
               size_t own_min, uint8_t* dst, const uint8_t** body_at, size_t* len, size_t limit, Workspace& ws);
size_t xbm_own_body(const Ops& ops, const uint8_t* masks, size_t t, const uint8_t* lits, size_t l,
                    size_t own_min, uint8_t* dst, size_t limit, Workspace& ws);

// The lz4 second stage alone, for an XRLE or RAW body the first stage made (`next` is the page
// itself): the lz4 form replaces the body if it saves 1/16 of it and is shorter than `limit`
// bytes. (XBM bodies: xbm_stage.)
Kind lz4_stage(Kind k, const uint8_t* next, size_t n, uint8_t* out, size_t* out_len, Workspace& ws,
               size_t limit = SIZE_MAX);

// Returns nullptr when `body` (len bytes) is a well-formed body of `kind` for an n-byte page,
// else a short reason. `rep`: XBM bodies carry a repeat distance (frames of version 5). Never reads outside body[0, len). Uses ws.tmp() for lz4 and Huffman
// kinds. `tables` is the start of the table-carrying body (kXrleHufTable or kXbmHufTable)
// whose tables a kXrleHuf or kXbmHuf page uses (nullptr: none; the kind is then refused); a
// table-carrying page uses its own.
// For a Huffman kind, a check given `keep` (huffman_strings() bytes) leaves the decoded strings
// there, and an apply given them as `kept` does not decode again.
const char* check_page(uint8_t kind, const uint8_t* body, size_t len, size_t n, bool rep, Workspace& ws,
                       const uint8_t* tables = nullptr, uint8_t* keep = nullptr);

// Bytes of the two decoded strings (T + L) of a Huffman-kind body, read from its lengths; 0 for
// other kinds or lengths check_page would refuse.
size_t huffman_strings(uint8_t kind, const uint8_t* body, size_t len, size_t n);

// Applies a body that check_page accepted (with the same rep and tables) to the n-byte `target`.
void apply_page(uint8_t* target, uint8_t kind, const uint8_t* body, size_t len, size_t n, bool rep,
                Workspace& ws, const uint8_t* tables = nullptr, const uint8_t* kept = nullptr);

// The entropy stage over a group of pages (encode_pages with compress): the first stage writes
// each page's first-stage body (XRLE or XBM) split into token/mask bytes and literal bytes. The
// group's first kSamplePages pages are a sample: if the entropy of their two byte strings says
// coding pays, one Huffman code per string is built from the sample (every byte value gets a
// code, so later pages never meet a symbol without one) and every page of the group, sample
// included, is then coded as it comes, keeping the smallest of its plain, lz4 and Huffman bodies;
// the first page that keeps a Huffman body carries the tables. If coding does not pay, the group
// is written exactly as without this stage. Pages are written as they come: no group buffer.
class GroupCoder {
 public:
  explicit GroupCoder(size_t page_size);
  // Begins a group whose bodies go to out (capacity: pages * (page size + 64) + kHufTables),
  // kinds and lengths to kinds[i] and lens[i] for its i-th page; XBM pages of at least own_min
  // literals may take their own literal code (kXbmHufOwn; 0: none may).
  void reset(uint8_t* out, uint8_t* kinds, uint32_t* lens, size_t own_min);
  // Encodes `next` against `shadow` (updating the shadow) as the group's next page.
  void add(const Ops& ops, uint8_t* shadow, const uint8_t* next, Workspace& ws);
  // Writes what is still pending; returns the bytes the group wrote to out.
  size_t finish(Workspace& ws);

 private:
  // Pages of a group sampled to decide whether to code it and to build its codes.
  static constexpr size_t kSamplePages = 8;
  // The stage is used only where the sample's estimate saves at least 1/kMinSaving of its
  // first-stage bytes. On real guest pages (1 s capture) a 1/8 rule gave 8 % smaller frames for
  // ~35 % more time, while on pages whose XOR bytes are small (counters) coding saves ~40 %: a
  // quarter keeps the stage to where it is needed.
  static constexpr size_t kMinSaving = 4;
  struct Page {
    Kind kind;
    const uint8_t* next;
    size_t tok_off, tok_len, lit_off, lit_len;  // split first-stage streams (in toks_ / lits_)
    // Sample pages: the body the codec without this stage writes (plain or lz4), in alt_.
    Kind alt_kind;
    size_t alt_off, alt_len;
    // Sample XBM pages: the kXbmHufOwn body where it pays against the plain one (own_len 0 if
    // not), in alt_ after it.
    size_t own_off, own_len;
    // XRLE and XBM pages have split streams (the ones this stage codes).
    bool streams() const { return kind == kXrle || kind == kXbm; }
  };
  enum class Mode { kSampling, kCoding, kPlain };
  // Writes the XRLE stream of a page (tokens and literals interleaved again) to dst.
  size_t interleave(const Page& pg, uint8_t* dst) const;
  // Writes the XBM body of a page (masks, then literals) to dst.
  size_t concat(const Page& pg, uint8_t* dst) const;
  // Writes the first-stage body of split page pg to dst; returns its length.
  size_t body(const Page& pg, uint8_t* dst) const { return pg.kind == kXbm ? concat(pg, dst) : interleave(pg, dst); }
  // Writes to dst the body the codec without this stage gives split page pg (SAME, ZERO, RAW,
  // XRLE, XBM, or their lz4 form where it pays and is shorter than `limit`; an XBM page's own
  // code is weighed by the callers); returns its kind.
  Kind plain(const Page& pg, uint8_t* dst, size_t* len, Workspace& ws, size_t limit = SIZE_MAX) const;
  // plain() as the group's page i.
  void write_plain(size_t i, const Page& pg, Workspace& ws);
  // Writes split page pg as page i with the group's codes where that is its smallest body. For
  // a sample page (`alt`) the other body is already made, in alt_.
  void write_coded(size_t i, const Page& pg, Workspace& ws, bool alt = false);
  // Decides on the sample: codes built and the sample written coded, or the sample written plain.
  void decide(Workspace& ws);

  size_t n_;
  const Ops* ops_ = nullptr;  // the ISA of the pages added (its Huffman encoder)
  size_t added_ = 0;          // pages added to the group (its page index)
  std::vector<Page> pages_;  // the sample's split pages
  size_t tok_used_ = 0, lit_used_ = 0;
  Mode mode_ = Mode::kSampling;
  bool tables_out_ = false;  // a page of this group already carries the tables
  size_t own_min_ = kOwnMinLiterals;  // XBM pages of this many literals may take their own code
  uint8_t* out_ = nullptr;
  size_t written_ = 0;
  uint8_t* kinds_ = nullptr;
  uint32_t* lens_ = nullptr;
  std::vector<uint8_t> toks_, lits_, coded_, alt_;
  huff::Code code_tok_, code_lit_;
  uint8_t len_tok_[huff::kSymbols], len_lit_[huff::kSymbols];
};

// LEB128 helpers shared with frame.cc. read_varint returns false on truncation or a value that
// does not fit in 32 bits (at most 5 bytes).
size_t varint_size(uint64_t v);
uint8_t* write_varint(uint8_t* p, uint64_t v);
bool read_varint(const uint8_t** p, const uint8_t* end, uint32_t* v);

}  // namespace kernels::delta
