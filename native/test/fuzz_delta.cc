// Fuzz and round-trip harness for the delta codec (native/kernels/delta), built by
// scripts/sanitize.mjs with AddressSanitizer + UndefinedBehaviorSanitizer.
//
// Two entry points over the same checks:
//   LLVMFuzzerTestOneInput  for clang -fsanitize=fuzzer (define UNDERSTUDY_LIBFUZZER);
//   main()                  a deterministic driver for g++ builds: seeded mutations of valid
//                           deltas and frames (truncations, bit flips, random bytes, huge lengths
//                           and counts, with and without a repaired checksum so the body parsers
//                           are reached), for UNDERSTUDY_FUZZ_SECONDS (default 20) seconds.
// Plus round trips: every ISA variant the CPU can run must encode byte-identically to scalar,
// and decoding must give back the new contents. Any mismatch aborts (non-zero exit).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <lz4.h>

#include "cpu/features.h"
#include "kernels/delta/codec.h"
#include "kernels/delta/frame.h"
#include "kernels/delta/huffman.h"
#include "kernels/delta/lz4_block.h"
#include "kernels/dispatch.h"

namespace kd = kernels::delta;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_delta: FAILED: %s\n", what);
  std::abort();
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

// Page size of the frames made and fuzzed: 4096 (the real case; the Huffman stage needs pages
// large enough for one to save its 256 table bytes) and 512 (every XBM line of a page in one
// line-mask byte, short bodies) in turn. 24 replica pages, so frames run past the 8-page sample
// of the entropy stage into its streaming part.
size_t g_page = 4096;
constexpr size_t kReplicaPages = 24;
// Coverage of the entropy stage and of the XBM kinds among the frames made.
uint64_t g_frames_made = 0, g_huffman_frames = 0, g_huffman_pages = 0, g_xbm_pages = 0;
// XBM+LZ4 pages among them, and blocks of our lz4 writer checked against liblz4's decoder.
uint64_t g_xbm_lz4_pages = 0, g_lz4_blocks = 0, g_own_pages = 0;
// Kind-8 pages whose body has a repeat distance (frame version 5).
uint64_t g_repeat_pages = 0;

// Applies `d` to a copy of `target` only if check_delta accepts it; a rejected delta must leave
// the target untouched (nothing was written).
void exercise_delta(const uint8_t* d, size_t len, size_t n) {
  // Exactly n bytes (new[0] is a valid, non-dereferenceable pointer), so ASan sees any byte of
  // overrun; the copy proves a rejected delta wrote nothing.
  std::unique_ptr<uint8_t[]> target(new uint8_t[n]);
  std::memset(target.get(), 0x5a, n);
  std::string reason;
  if (kd::check_delta(d, len, n, &reason)) {
    kd::apply_delta(target.get(), n, d, len);
  } else {
    for (size_t i = 0; i < n; i++) {
      if (target[i] != 0x5a) fail("rejected delta changed the target");
    }
  }
}

void exercise_frame(const uint8_t* f, size_t len) {
  std::vector<uint8_t> replica(kReplicaPages * g_page, 0xa5);
  std::vector<uint8_t> before = replica;
  kd::FrameView view;
  std::string reason;
  if (kd::check_frame(f, len, g_page, kReplicaPages, 1, &view, &reason)) {
    kd::apply_frame(replica.data(), view, 1);
  } else if (replica != before) {
    fail("rejected frame changed the replica");
  }
  kd::FrameView any;
  kd::check_frame(f, len, 0, uint64_t{1} << 32, 2, &any, &reason);
}

void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void repair_delta_checksum(std::vector<uint8_t>& d) {
  if (d.size() < kd::kDeltaHeader) return;
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, d.data(), 16);
  XXH3_64bits_update(&st, d.data() + kd::kDeltaHeader, d.size() - kd::kDeltaHeader);
  put64(d.data() + 16, XXH3_64bits_digest(&st));
}

void repair_frame_checksum(std::vector<uint8_t>& f) {
  if (f.size() < kd::kFrameHeader) return;
  put64(f.data() + 24, XXH3_64bits(f.data() + kd::kFrameHeader, f.size() - kd::kFrameHeader));
}

// Page pairs with realistic-ish changes: sparse bytes, short runs, bulk copies, zero, same.
// skewed: only fine-grained changes by small XOR values (counters), the pages on which the
// Huffman stage pays, so frames of them carry its page kinds and tables.
void make_pair(Rng& r, std::vector<uint8_t>& prev, std::vector<uint8_t>& next, size_t n,
               bool skewed = false) {
  prev.resize(n);
  next.resize(n);
  for (auto& b : prev) b = (r.below(3) == 0) ? 0 : static_cast<uint8_t>(r.next());
  next = prev;
  if (skewed) {
    if (r.below(2) == 0) {  // dense: a third of the bytes change by a small power of two (kind 12)
      for (size_t i = 0; i < n; i++) {
        if (r.below(3) == 0) next[i] ^= static_cast<uint8_t>(1u << r.below(r.below(4) == 0 ? 8 : 2));
      }
      return;
    }
    const size_t runs = 1 + r.below(n / 8 + 1);
    for (size_t k = 0; k < runs && n; k++) {
      const size_t at = r.below(n), len = 1 + r.below(6);
      for (size_t i = at; i < at + len && i < n; i++) next[i] ^= static_cast<uint8_t>(1 + r.below(3));
    }
    return;
  }
  switch (r.below(8)) {
    case 0:
      break;
    case 4: {  // an array of records whose fields change alike: XBM masks that repeat (kind 11)
      const size_t stride = 8 << r.below(3), fields = 1 + r.below(3);
      size_t at[3];
      for (size_t k = 0; k < fields; k++) at[k] = r.below(stride);
      for (size_t i = 0; i + stride <= n; i += stride) {
        for (size_t k = 0; k < fields; k++) next[i + at[k]] ^= static_cast<uint8_t>(1 + r.below(3));
      }
      break;
    }
    case 5: {  // records whose fields change identically: XBM words that repeat (frame version 5)
      const size_t stride = 8 << r.below(4), fields = 1 + r.below(3);
      size_t at[3];
      uint8_t v[3];
      for (size_t k = 0; k < fields; k++) at[k] = r.below(stride), v[k] = static_cast<uint8_t>(1 + r.below(255));
      const size_t from = r.below(n), to = from + r.below(n - from + 1);
      for (size_t i = from - from % stride; i + stride <= to; i += stride) {
        for (size_t k = 0; k < fields; k++) next[i + at[k]] ^= v[k];
      }
      break;
    }
    case 1:
      std::fill(next.begin(), next.end(), 0);
      break;
    case 2:
      for (auto& b : next) b = static_cast<uint8_t>(r.next());
      break;
    case 3:  // repetitive content: lz4 pays
      for (size_t i = 0; i < n; i++) next[i] = static_cast<uint8_t>("abcdefgh"[i & 7]);
      break;
    default: {
      const size_t runs = 1 + r.below(n / 8 + 1);
      for (size_t k = 0; k < runs && n; k++) {
        const size_t at = r.below(n), len = 1 + r.below(r.below(4) == 0 ? 64 : 4);
        for (size_t i = at; i < at + len && i < n; i++) next[i] ^= static_cast<uint8_t>(1 + r.below(255));
      }
    }
  }
}

std::vector<const kd::Ops*> runnable_ops() {
  std::vector<const kd::Ops*> v;
  for (cpu::Isa isa : {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (cpu::supported(isa)) v.push_back(kernels::row(isa).delta);
  }
  return v;
}

std::vector<uint8_t> encode_delta_vec(const kd::Ops& ops, const std::vector<uint8_t>& prev,
                                      const std::vector<uint8_t>& next, bool compress) {
  std::vector<uint8_t> out(kd::delta_bound(next.size()));
  static const uint8_t kEmpty[1] = {0};
  const size_t len = kd::encode_delta(ops, prev.empty() ? kEmpty : prev.data(),
                                      next.empty() ? kEmpty : next.data(), next.size(), compress,
                                      out.data());
  out.resize(len);
  return out;
}

// Every ISA encodes identically to scalar and the result decodes to `next`.
void round_trip_delta(const std::vector<uint8_t>& prev, const std::vector<uint8_t>& next) {
  const auto ops = runnable_ops();
  for (bool compress : {false, true}) {
    const auto want = encode_delta_vec(*ops[0], prev, next, compress);
    for (const kd::Ops* o : ops) {
      if (encode_delta_vec(*o, prev, next, compress) != want) fail("ISA variant differs from scalar");
    }
    std::string reason;
    if (!kd::check_delta(want.data(), want.size(), next.size(), &reason)) fail(reason.c_str());
    std::unique_ptr<uint8_t[]> t(new uint8_t[prev.size()]);
    if (!prev.empty()) std::memcpy(t.get(), prev.data(), prev.size());
    kd::apply_delta(t.get(), next.size(), want.data(), want.size());
    if (!next.empty() && std::memcmp(t.get(), next.data(), next.size()) != 0) fail("delta round trip");
  }
}

std::vector<uint8_t> make_frame(Rng& r, const kd::Ops& ops, std::vector<uint8_t>* shadow_out,
                                std::vector<uint8_t>* new_shadow, unsigned threads, bool compress) {
  const size_t count = r.below(kReplicaPages + 1);
  std::vector<uint32_t> pfns;
  for (uint32_t p = 0; p < kReplicaPages; p++) pfns.push_back(p);
  for (size_t i = kReplicaPages; i > 1; i--) std::swap(pfns[i - 1], pfns[r.below(i)]);
  pfns.resize(count);
  std::vector<uint8_t> shadow(kReplicaPages * g_page), pages(count * g_page + 1);
  std::vector<uint8_t> a, b;
  const bool skewed = r.below(2) == 0;
  for (size_t p = 0; p < kReplicaPages; p++) {
    make_pair(r, a, b, g_page);
    std::memcpy(shadow.data() + p * g_page, a.data(), g_page);
  }
  for (size_t i = 0; i < count; i++) {
    std::vector<uint8_t> prev(shadow.begin() + pfns[i] * g_page, shadow.begin() + (pfns[i] + 1) * g_page);
    make_pair(r, a, b, g_page, skewed);
    // Re-derive a change of this page's old contents with the same mutation style.
    // Skewed pages keep their small XOR values: the same bytes change by the same amounts.
    for (size_t j = 0; j < g_page; j++) b[j] = (a[j] == b[j]) ? prev[j] : skewed ? prev[j] ^ a[j] ^ b[j] : b[j];
    std::memcpy(pages.data() + i * g_page, b.data(), g_page);
  }
  *shadow_out = shadow;
  kd::Encoded enc;
  g_frames_made++;
  // Own literal codes on all compressed frames but every fourth (a seed bit of the page data's
  // stream, so every ISA and thread count of one round trip agrees), from 1, 256 or the default
  // number of literals in turn.
  const size_t own = !compress || (count % 4) == 3 ? 0 : count % 3 == 0 ? 1 : count % 3 == 1 ? 256 : kd::kOwnMinLiterals;
  if (kd::encode_pages(ops, shadow.data(), pages.data(), pfns.data(), count, g_page, threads, compress, compress, own, &enc)) {
    fail("encode_pages out of memory");
  }
  std::vector<uint8_t> f(enc.data, enc.data + enc.length);
  size_t huffman = 0;
  size_t body = kd::kFrameHeader + count * kd::kIndexEntry;
  for (size_t i = 0; i < count; i++) {
    const uint8_t* e = f.data() + kd::kFrameHeader + i * kd::kIndexEntry;
    const uint8_t kind = e[4];
    g_repeat_pages += kind == kd::kXbm && f[4] >= 5 && f[body] != 0;
    body += e[5] | size_t{e[6]} << 8 | size_t{e[7]} << 16;
    huffman += kd::carries_tables(kind) || kd::uses_tables(kind);
    g_xbm_pages += kd::is_xbm(kind);
    g_xbm_lz4_pages += kind == kd::kXbmLz4;
    g_own_pages += kind == kd::kXbmHufOwn;
  }
  g_huffman_pages += huffman;
  g_huffman_frames += huffman != 0;
  std::free(enc.data);
  *new_shadow = shadow;
  return f;
}

void round_trip_frame(Rng& r) {
  const auto ops = runnable_ops();
  const uint64_t seed = r.next();
  const bool compress = (seed & 1) != 0;
  std::vector<uint8_t> old0, new0;
  Rng r0(seed);
  const auto want = make_frame(r0, *ops[0], &old0, &new0, 1, compress);
  for (const kd::Ops* o : ops) {
    for (unsigned threads : {1u, 2u}) {
      Rng ri(seed);
      std::vector<uint8_t> old1, new1;
      if (make_frame(ri, *o, &old1, &new1, threads, compress) != want) fail("frame differs across ISA/threads");
      if (new1 != new0) fail("shadow differs across ISA/threads");
    }
  }
  kd::FrameView view;
  std::string reason;
  if (!kd::check_frame(want.data(), want.size(), g_page, kReplicaPages, 2, &view, &reason)) fail(reason.c_str());
  // Gathered (the staged copies of applyPagesAsync): only the frame's pages, in frame order, in a
  // buffer of exactly that size, so AddressSanitizer sees any write past it.
  std::vector<uint8_t> gathered(size_t{view.count} * g_page);
  for (size_t i = 0; i < view.count; i++) {
    std::memcpy(gathered.data() + i * g_page, old0.data() + size_t{kd::entry_pfn(view, i)} * g_page, g_page);
  }
  kd::apply_frame(gathered.data(), view, 2, true);
  for (size_t i = 0; i < view.count; i++) {
    if (std::memcmp(gathered.data() + i * g_page, new0.data() + size_t{kd::entry_pfn(view, i)} * g_page, g_page) != 0) {
      fail("gathered frame round trip");
    }
  }
  kd::apply_frame(old0.data(), view, 2);
  if (old0 != new0) fail("frame round trip");
}

// Our lz4 block writer against liblz4's decoder: masks with repeats (a few units, repeated and
// sometimes changed), random literals, and a capacity that is ample or random. A block must fit
// its capacity, decode to exactly masks + literals, and never be refused when the room is ample.
void round_trip_lz4_block(Rng& r) {
  const size_t mlen = r.below(64) == 0 ? 60000 + r.below(10000) : r.below(r.below(4) == 0 ? 5000 : 700);
  const size_t llen = r.below(4) == 0 ? 0 : r.below(3000);
  // Masks and literals in separate buffers of exactly their size, so AddressSanitizer sees any
  // read past either one.
  std::vector<uint8_t> masks(mlen), lits(llen);
  const size_t unit = 1 + r.below(24);
  for (size_t i = 0; i < mlen; i++) {
    masks[i] = i < unit || r.below(16) == 0 ? static_cast<uint8_t>(r.below(r.below(2) ? 4 : 256)) : masks[i - unit];
  }
  for (size_t i = 0; i < llen; i++) lits[i] = static_cast<uint8_t>(r.next());
  const size_t total = mlen + llen, ample = total + total / 255 + 16;
  const bool roomy = r.below(2) == 0;
  const size_t cap = roomy ? ample : r.below(ample);
  std::vector<uint8_t> block(cap);  // exactly cap: a write past it is an ASan error
  const size_t c = kd::lz4_block_masks(mlen ? masks.data() : nullptr, mlen, llen ? lits.data() : nullptr, llen,
                                       cap ? block.data() : nullptr, cap);
  g_lz4_blocks++;
  if (c > cap) fail("lz4 writer: block past its capacity");
  {
    // One match pass for the masks alone and for masks + literals gives what two passes give.
    const size_t acap = mlen + mlen / 255 + 16;
    std::vector<uint8_t> a(acap), a1(acap), b(cap);
    size_t len2 = SIZE_MAX;
    const size_t la = kd::lz4_block_masks2(mlen ? masks.data() : nullptr, mlen, a.data(), acap,
                                           llen ? lits.data() : nullptr, llen, cap ? b.data() : nullptr, cap, &len2);
    const size_t l1 = kd::lz4_block_masks(mlen ? masks.data() : nullptr, mlen, nullptr, 0, a1.data(), acap);
    if (la != l1 || (la != 0 && std::memcmp(a.data(), a1.data(), la) != 0)) fail("lz4 writer: masks2 first block differs");
    if (len2 != SIZE_MAX && (len2 != c || (c != 0 && std::memcmp(b.data(), block.data(), c) != 0))) {
      fail("lz4 writer: masks2 second block differs");
    }
  }
  if (c == 0) {
    if (roomy) fail("lz4 writer: refused a block with ample room");
    return;
  }
  std::vector<uint8_t> in(masks);
  in.insert(in.end(), lits.begin(), lits.end());
  std::vector<char> out(total + 1);
  const int got = LZ4_decompress_safe(reinterpret_cast<const char*>(block.data()), out.data(),
                                      static_cast<int>(c), static_cast<int>(total));
  if (got != static_cast<int>(total) || (total != 0 && std::memcmp(out.data(), in.data(), total) != 0)) {
    fail("lz4 writer: block does not decode to its input");
  }
  // The end rules: the block ends with a literal run of at least 5 bytes (or holds no match).
  if (total >= 5 && c >= 1) {
    // Walk the sequences and check every match ends 5+ bytes before the end and starts 12+ before.
    size_t ip = 0, op = 0;
    while (ip < c) {
      const uint8_t token = block[ip++];
      size_t lit = token >> 4;
      if (lit == 15) {
        uint8_t b;
        do { b = block[ip++]; lit += b; } while (b == 255);
      }
      ip += lit;
      op += lit;
      if (ip >= c) break;
      ip += 2;
      size_t ml = (token & 15) + 4;
      if ((token & 15) == 15) {
        uint8_t b;
        do { b = block[ip++]; ml += b; } while (b == 255);
      }
      if (op + 12 > total) fail("lz4 writer: a match starts in the last 12 bytes");
      op += ml;
      if (op > mlen) fail("lz4 writer: a match runs past the masks");
      if (op + 5 > total) fail("lz4 writer: a match ends in the last 5 bytes");
    }
  }
}

// Known answers: the hand-checked blocks of test/delta.test.ts ("the XBM lz4 writer"), from the
// native writer, so the C++ and the TypeScript reference are held to the same bytes.
void lz4_block_known_answers() {
  auto block = [](const std::vector<uint8_t>& m, const std::vector<uint8_t>& l) {
    std::vector<uint8_t> out(m.size() + l.size() + 16);
    const size_t c = kd::lz4_block_masks(m.data(), m.size(), l.data(), l.size(), out.data(), out.size());
    out.resize(c);
    return out;
  };
  std::vector<uint8_t> abc;
  for (int k = 0; k < 5; k++) abc.insert(abc.end(), {'a', 'b', 'c', 'd'});
  std::vector<uint8_t> l16(16);
  for (size_t i = 0; i < 16; i++) l16[i] = static_cast<uint8_t>(i + 1);
  std::vector<uint8_t> want{0x47, 'a', 'b', 'c', 'd', 0x04, 0x00, 0xf0, 0x06, 'd', 'a', 'b', 'c', 'd'};
  want.insert(want.end(), l16.begin(), l16.end());
  if (block(abc, l16) != want) fail("lz4 writer: known answer 1 (abcd x5 + 16 literals)");
  if (block(abc, {}) != std::vector<uint8_t>{0x47, 'a', 'b', 'c', 'd', 0x04, 0x00, 0x50, 'd', 'a', 'b', 'c', 'd'}) {
    fail("lz4 writer: known answer 1b (abcd x5 alone)");
  }
  // One pass for both blocks gives the same bytes as two.
  {
    std::vector<uint8_t> a(64), b2(64);
    size_t len2 = SIZE_MAX;
    const size_t la = kd::lz4_block_masks2(abc.data(), abc.size(), a.data(), a.size(), l16.data(), l16.size(),
                                           b2.data(), b2.size(), &len2);
    a.resize(la);
    b2.resize(len2 == SIZE_MAX ? 0 : len2);
    if (a != block(abc, {}) || b2 != want) fail("lz4 writer: lz4_block_masks2 differs from two passes");
  }
  const std::vector<uint8_t> short7(abc.begin(), abc.begin() + 7);
  if (block(short7, {}) != std::vector<uint8_t>{0x70, 'a', 'b', 'c', 'd', 'a', 'b', 'c'}) {
    fail("lz4 writer: known answer 2 (7 bytes, no match)");
  }
  const std::vector<uint8_t> nines(270, 9);
  std::vector<uint8_t> want3{0xf0, 0xff, 0x00};
  want3.insert(want3.end(), nines.begin(), nines.end());
  if (block({}, nines) != want3) fail("lz4 writer: known answer 3 (270 literals)");
}

// huff::fast_lengths (the own code's lengths): known answers, then on random histograms of
// several shapes (flat, skewed, powers of two, a few large counts, totals past 32767 where it
// takes build_lengths' lengths) a valid code for exactly the used symbols that the decoder
// accepts, within half a bit a symbol of build_lengths' cost (2M random histograms stayed
// within 0.26).
uint64_t g_fast_codes = 0;
void fast_lengths_known_answers() {
  namespace huff = kd::huff;
  uint32_t h[huff::kSymbols] = {};
  uint8_t len[huff::kSymbols];
  h[0x10] = 2;  // docs/FORMAT.md's kind-12 example: lengths 1, 2, 2
  h[0x05] = 1;
  h[0x40] = 1;
  huff::fast_lengths(h, 4, len);
  for (size_t s = 0; s < huff::kSymbols; s++) {
    const uint8_t want = s == 0x10 ? 1 : (s == 0x05 || s == 0x40) ? 2 : 0;
    if (len[s] != want) fail("fast_lengths: known answer 1 (2, 1, 1)");
  }
  for (auto& c : h) c = 16;  // flat: every value 8 bits
  huff::fast_lengths(h, 4096, len);
  for (uint8_t l : len) {
    if (l != 8) fail("fast_lengths: known answer 2 (256 x 16)");
  }
  std::memset(h, 0, sizeof h);
  h[7] = 5;  // one value: one bit
  huff::fast_lengths(h, 5, len);
  for (size_t s = 0; s < huff::kSymbols; s++) {
    if (len[s] != (s == 7 ? 1 : 0)) fail("fast_lengths: known answer 3 (one value)");
  }
}

void fast_lengths_check(Rng& r) {
  namespace huff = kd::huff;
  uint32_t h[huff::kSymbols] = {};
  const size_t shape = r.below(4), want = 1 + r.below(huff::kSymbols);
  const uint32_t limit = r.below(3) == 0 ? 40000 : 4096;
  uint32_t total = 0;
  for (size_t k = 0; k < want; k++) {
    const uint32_t c = shape == 0   ? static_cast<uint32_t>(1 + r.below(16))
                       : shape == 1 ? static_cast<uint32_t>(1 + (r.below(1000) >> r.below(10)))
                       : shape == 2 ? uint32_t{1} << r.below(12)
                                    : static_cast<uint32_t>(1 + r.below(limit));
    if (total + c > limit) break;
    h[r.below(huff::kSymbols)] += c;
    total += c;
  }
  if (total == 0) return;
  uint8_t fast[huff::kSymbols], opt[huff::kSymbols];
  huff::fast_lengths(h, total, fast);
  huff::build_lengths(h, opt);
  uint32_t kraft = 0;
  uint64_t bits_fast = 0, bits_opt = 0;
  for (size_t s = 0; s < huff::kSymbols; s++) {
    if ((h[s] != 0) != (fast[s] != 0) || fast[s] > huff::kMaxBits) fail("fast_lengths: a length for an unused value or none for a used one");
    if (fast[s] != 0) kraft += (1u << huff::kMaxBits) >> fast[s];
    bits_fast += uint64_t{h[s]} * fast[s];
    bits_opt += uint64_t{h[s]} * opt[s];
  }
  if (kraft > (1u << huff::kMaxBits)) fail("fast_lengths: over-subscribed");
  huff::Decoder dec;
  if (huff::build_decoder(fast, &dec) != nullptr) fail("fast_lengths: the decoder refuses the lengths");
  if (2 * bits_fast > 2 * bits_opt + total) fail("fast_lengths: more than half a bit a symbol over build_lengths");
  // Every ISA's own build of the lengths and of the canonical codes (Ops::huf_fast_lengths,
  // huf_build_code) gives exactly the baseline's.
  huff::Code base;
  huff::build_code(fast, &base);
  for (const kd::Ops* o : runnable_ops()) {
    uint8_t isa_len[huff::kSymbols];
    o->huf_fast_lengths(h, total, isa_len);
    if (std::memcmp(isa_len, fast, sizeof fast) != 0) fail("fast_lengths: an ISA's lengths differ from the baseline's");
    huff::Code c;
    o->huf_build_code(fast, &c);
    if (std::memcmp(c.len, base.len, sizeof base.len) != 0) fail("build_code: an ISA's lengths differ");
    for (size_t s = 0; s < huff::kSymbols; s++) {
      if (fast[s] != 0 && c.bits[s] != base.bits[s]) fail("build_code: an ISA's codes differ from the baseline's");
    }
  }
  g_fast_codes++;
}

// Mutates a valid container in one of several hostile ways.
void mutate(Rng& r, std::vector<uint8_t>& v, bool frame) {
  switch (r.below(6)) {
    case 0:  // truncate
      v.resize(r.below(v.size() + 1));
      return;
    case 1: {  // bit flips
      const size_t flips = 1 + r.below(4);
      for (size_t i = 0; i < flips && !v.empty(); i++) v[r.below(v.size())] ^= static_cast<uint8_t>(1u << r.below(8));
      break;
    }
    case 2:  // random bytes over a window
      for (size_t i = 0, at = r.below(v.size() + 1); i < 16 && at + i < v.size(); i++) v[at + i] = static_cast<uint8_t>(r.next());
      break;
    case 3: {  // huge lengths and counts in the header / index
      const size_t field = frame ? (r.below(2) ? 8 : 32 + 8 * r.below(4) + 5) : 8 + 4 * r.below(2);
      for (size_t i = 0; i < 3 && field + i < v.size(); i++) v[field + i] = 0xff;
      break;
    }
    case 4:  // extend with junk
      for (size_t i = 0, k = r.below(64); i < k; i++) v.push_back(static_cast<uint8_t>(r.next()));
      break;
    default: {  // body bytes only
      const size_t start = frame ? kd::kFrameHeader : kd::kDeltaHeader;
      if (v.size() > start) v[start + r.below(v.size() - start)] = static_cast<uint8_t>(r.next());
    }
  }
  if (r.below(4) != 0) frame ? repair_frame_checksum(v) : repair_delta_checksum(v);
}

}  // namespace

// Input: byte 0 selects the container; the rest is the container (or, for 2, a page pair).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t sel = data[0] % 3;
  const uint8_t* p = data + 1;
  const size_t n = size - 1;
  if (sel == 0) {
    std::vector<uint8_t> d(p, p + n);
    if (d.size() >= 12) {
      const size_t target = (size_t{d[8]} | size_t{d[9]} << 8) % 4096;
      exercise_delta(d.data(), d.size(), target);
    } else {
      exercise_delta(d.data(), d.size(), 16);
    }
  } else if (sel == 1) {
    std::vector<uint8_t> f(p, p + n);
    exercise_frame(f.data(), f.size());
  } else {
    std::vector<uint8_t> prev(p, p + n / 2), next(p + n / 2, p + (n / 2) * 2);
    round_trip_delta(prev, next);
  }
  return 0;
}

#ifndef UNDERSTUDY_LIBFUZZER
int main() {
  const char* env = std::getenv("UNDERSTUDY_FUZZ_SECONDS");
  const double seconds = env ? std::atof(env) : 20.0;
  lz4_block_known_answers();
  fast_lengths_known_answers();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  Rng r(20261123);
  uint64_t iters = 0, deltas = 0, frames = 0, trips = 0;
  std::vector<uint8_t> prev, next;
  while (std::chrono::steady_clock::now() < deadline || iters < 200) {
    iters++;
    g_page = (iters / 4) % 2 != 0 ? 512 : 4096;  // round trips (every 4th) alternate too
    // Round trips over sizes 0..4097 (all ISAs vs scalar).
    const size_t n = r.below(8) == 0 ? r.below(4098) : r.below(300);
    make_pair(r, prev, next, n);
    round_trip_delta(prev, next);
    round_trip_lz4_block(r);
    fast_lengths_check(r);
    if (iters % 4 == 0) {
      round_trip_frame(r);
      trips++;
    }
    // Hostile deltas: valid ones, mutated.
    {
      auto d = encode_delta_vec(*kernels::row(cpu::Isa::scalar).delta, prev, next, r.below(2));
      for (int k = 0; k < 8; k++) {
        auto m = d;
        mutate(r, m, false);
        const size_t target = r.below(8) == 0 ? r.below(5000) : n;
        exercise_delta(m.empty() ? nullptr : m.data(), m.size(), target);
        deltas++;
      }
    }
    // Hostile frames.
    {
      std::vector<uint8_t> old0, new0;
      auto f = make_frame(r, *kernels::row(cpu::Isa::scalar).delta, &old0, &new0, 1, r.below(2));
      for (int k = 0; k < 8; k++) {
        auto m = f;
        mutate(r, m, true);
        exercise_frame(m.empty() ? nullptr : m.data(), m.size());
        frames++;
      }
    }
    // Pure random input through the libFuzzer entry point.
    {
      std::vector<uint8_t> junk(r.below(700));
      for (auto& b : junk) b = static_cast<uint8_t>(r.next());
      LLVMFuzzerTestOneInput(junk.data(), junk.size());
    }
  }
  std::printf("fuzz_delta: ok: %llu iterations, %llu hostile deltas, %llu hostile frames, %llu frame round trips (isas:",
              static_cast<unsigned long long>(iters), static_cast<unsigned long long>(deltas),
              static_cast<unsigned long long>(frames), static_cast<unsigned long long>(trips));
  for (const kd::Ops* o : runnable_ops()) std::printf(" %s", o->isa);
  std::printf("); %llu of %llu frames made used the Huffman stage (%llu pages); %llu XBM pages (%llu XBM+LZ4, "
              "%llu XBM+HUF with their own code, %llu XBM with repeats); %llu lz4 writer blocks decoded; %llu fast_lengths codes checked\n",
              static_cast<unsigned long long>(g_huffman_frames), static_cast<unsigned long long>(g_frames_made),
              static_cast<unsigned long long>(g_huffman_pages), static_cast<unsigned long long>(g_xbm_pages),
              static_cast<unsigned long long>(g_xbm_lz4_pages), static_cast<unsigned long long>(g_own_pages),
              static_cast<unsigned long long>(g_repeat_pages),
              static_cast<unsigned long long>(g_lz4_blocks), static_cast<unsigned long long>(g_fast_codes));
  std::fflush(stdout);
  if (g_huffman_frames == 0) fail("no frame used the Huffman stage: its decoder was not fuzzed");
  if (g_xbm_pages == 0) fail("no frame had an XBM page: its decoder was not fuzzed");
  if (g_xbm_lz4_pages == 0) fail("no frame had an XBM+LZ4 page: our lz4 writer's blocks were not fuzzed");
  if (g_own_pages == 0) fail("no frame had an XBM+HUF page with its own code (kind 12): its decoder was not fuzzed");
  if (g_repeat_pages == 0) fail("no frame had an XBM page with repeated words: their decoder was not fuzzed");
  return 0;
}
#endif
