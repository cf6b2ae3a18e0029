// Delta and frame containers: build, validate completely, apply (layouts in docs/FORMAT.md and
// frame.h). The frame checksum is XXH3-64 (seed 0) from Debian's header-only libxxhash
// (XXH_INLINE_ALL: no library to link, and the same function hashPages exposes).
#include "kernels/delta/frame.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "runtime/pool.h"

namespace kernels::delta {

namespace {

constexpr uint8_t kDeltaMagic[4] = {'U', 'D', 'L', 'T'};
constexpr uint8_t kFrameMagic[4] = {'U', 'D', 'P', 'F'};

void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t get64(const uint8_t* p) { return uint64_t{get32(p)} | uint64_t{get32(p + 4)} << 32; }

// XXH3-64 of header[0, 16) followed by the body: the delta checksum.
uint64_t delta_checksum(const uint8_t* header16, const uint8_t* body, size_t len) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, header16, 16);
  if (len != 0) XXH3_64bits_update(&st, body, len);
  return XXH3_64bits_digest(&st);
}

}  // namespace

// ---- single delta ----

size_t encode_delta(const Ops& ops, const uint8_t* prev, const uint8_t* next, size_t n,
                    bool compress, uint8_t* out) {
  Workspace ws(n);
  size_t body = 0;
  // SAFETY: update_prev is false, so encode_page only reads prev; the cast drops const for the
  // shared signature. out has delta_bound(n) bytes: the body is at most n.
  const Kind k = encode_page(ops, const_cast<uint8_t*>(prev), next, n, false, compress, false,
                             out + kDeltaHeader, &body, ws);
  std::memcpy(out, kDeltaMagic, 4);
  out[4] = kVersion;
  out[5] = k;
  out[6] = out[7] = 0;
  put32(out + 8, static_cast<uint32_t>(n));
  put32(out + 12, static_cast<uint32_t>(body));
  put64(out + 16, delta_checksum(out, out + kDeltaHeader, body));
  return kDeltaHeader + body;
}

namespace {

const char* check_delta_header(const uint8_t* d, size_t len, size_t n) {
  if (len < kDeltaHeader) return "is shorter than the 24-byte header";
  if (std::memcmp(d, kDeltaMagic, 4) != 0) return "has a bad magic (not a delta)";
  if (d[4] != kVersion) return "has an unsupported version";
  if (d[5] >= kXrleHuf) return "has an unknown encoding kind";  // 6-11: frames only
  if (d[6] != 0 || d[7] != 0) return "has non-zero reserved bytes";
  if (get32(d + 8) != n) return "was made for a target of a different length";
  if (get32(d + 12) != len - kDeltaHeader) return "has a body length that does not match its size";
  if (get64(d + 16) != delta_checksum(d, d + kDeltaHeader, len - kDeltaHeader)) {
    return "fails its checksum";
  }
  return nullptr;
}

}  // namespace

bool check_delta(const uint8_t* d, size_t len, size_t n, std::string* reason) {
  if (const char* e = check_delta_header(d, len, n)) {
    *reason = e;
    if (len >= 12 && std::memcmp(d, kDeltaMagic, 4) == 0 && get32(d + 8) != n &&
        e[0] == 'w') {
      *reason += " (" + std::to_string(get32(d + 8)) + " bytes, target has " + std::to_string(n) + ")";
    }
    return false;
  }
  Workspace ws(n);
  if (const char* e = check_page(d[5], d + kDeltaHeader, len - kDeltaHeader, n, false, ws)) {
    *reason = std::string("is corrupt: ") + e;
    return false;
  }
  return true;
}

void apply_delta(uint8_t* target, size_t n, const uint8_t* d, size_t len) {
  Workspace ws(n);
  apply_page(target, d[5], d + kDeltaHeader, len - kDeltaHeader, n, false, ws);
}

// ---- frames ----

const char* parse_frame(const uint8_t* f, size_t len, size_t page_size, FrameView* out) {
  if (len < kFrameHeader) return "is shorter than the 32-byte header";
  if (std::memcmp(f, kFrameMagic, 4) != 0) return "has a bad magic (not a page frame)";
  if (f[4] < 1 || f[4] > kFrameVersion) return "has an unsupported version";
  if (f[5] != 0) return "has unknown flags";
  const uint8_t shift = f[6];
  if (shift < 9 || shift > 20) return "has an invalid page size";
  if (page_size != 0 && (size_t{1} << shift) != page_size) return "was made for a different page size";
  if (f[7] != 0 || get32(f + 12) != 0) return "has non-zero reserved bytes";
  const uint64_t count = get32(f + 8);
  const uint64_t payload = get64(f + 16);
  if (count * kIndexEntry > len - kFrameHeader) return "is truncated (index)";
  if (payload != len - kFrameHeader - count * kIndexEntry) {
    return "has a payload length that does not match its size";
  }
  if (get64(f + 24) != XXH3_64bits(f + kFrameHeader, len - kFrameHeader)) return "fails its checksum";
  out->version = f[4];
  out->page_size = uint32_t{1} << shift;
  out->count = static_cast<uint32_t>(count);
  out->payload_length = payload;
  out->index = f + kFrameHeader;
  out->payload = f + kFrameHeader + count * kIndexEntry;
  uint64_t total = 0;
  const uint8_t kinds = frame_kinds(out->version);
  for (size_t i = 0; i < count; i++) {
    if (entry_kind(*out, i) >= kinds) return "has an unknown page kind in its index";
    total += entry_length(*out, i);
  }
  if (total != payload) return "has index lengths that do not add up to the payload";
  return nullptr;
}

bool check_frame(const uint8_t* f, size_t len, size_t page_size, uint64_t replica_pages,
                 unsigned threads, FrameView* out, std::string* reason) {
  if (const char* e = parse_frame(f, len, page_size, out)) {
    *reason = e;
    return false;
  }
  const size_t count = out->count;
  std::vector<uint32_t> pfns(count);
  for (size_t i = 0; i < count; i++) pfns[i] = entry_pfn(*out, i);
  if (!check_pfns(pfns.data(), count, replica_pages, reason)) return false;
  out->offsets.assign(count, 0);
  out->tables.assign(count, nullptr);
  uint64_t off = 0;
  const uint8_t* tables = nullptr;  // the latest kXrleHufTable / kXbmHufTable body
  for (size_t i = 0; i < count; i++) {
    out->offsets[i] = off;
    const uint8_t kind = entry_kind(*out, i);
    if (carries_tables(kind)) {
      if (entry_length(*out, i) <= kHufTables) {
        *reason = "has a bad page " + std::to_string(i) + " (pfn " + std::to_string(pfns[i]) +
                  "): Huffman tables are truncated";
        return false;
      }
      tables = out->payload + off;
    } else if (uses_tables(kind)) {
      out->tables[i] = tables;
    }
    off += entry_length(*out, i);
  }
  // Room for the Huffman pages' decoded strings, so applying them does not decode them again.
  // Sizes come from each body's own lengths; a body they do not fit is refused by its check.
  out->kept.assign(count, FrameView::kNone);
  size_t kept_bytes = 0;
  for (size_t i = 0; i < count; i++) {
    const size_t s = huffman_strings(entry_kind(*out, i), out->payload + out->offsets[i],
                                     entry_length(*out, i), out->page_size);
    if (s == 0) continue;
    out->kept[i] = kept_bytes;
    kept_bytes += s;
  }
  out->strings.reset(kept_bytes == 0 ? nullptr : new (std::nothrow) uint8_t[kept_bytes]);
  if (out->strings == nullptr) out->kept.assign(count, FrameView::kNone);  // decode twice then
  std::mutex mu;
  size_t bad = count;
  std::string bad_reason;
  const FrameView& fv = *out;
  runtime::parallel_for(count, threads, [&](size_t b, size_t e) {
    Workspace ws(fv.page_size);
    for (size_t i = b; i < e; i++) {
      uint8_t* keep = fv.kept[i] == FrameView::kNone ? nullptr : fv.strings.get() + fv.kept[i];
      const char* r = check_page(entry_kind(fv, i), fv.payload + fv.offsets[i], entry_length(fv, i),
                                 fv.page_size, xbm_repeats(fv.version), ws, fv.tables[i], keep);
      if (r != nullptr) {
        std::lock_guard<std::mutex> lock(mu);
        if (i < bad) {
          bad = i;
          bad_reason = r;
        }
        return;
      }
    }
  });
  if (bad != count) {
    *reason = "has a bad page " + std::to_string(bad) + " (pfn " + std::to_string(pfns[bad]) +
              "): " + bad_reason;
    return false;
  }
  return true;
}

void apply_frame(uint8_t* replica, const FrameView& f, unsigned threads, bool gathered) {
  runtime::parallel_for(f.count, threads, [&](size_t b, size_t e) {
    Workspace ws(f.page_size);
    for (size_t i = b; i < e; i++) {
      // SAFETY: check_frame proved pfn < replica pages, so the page lies inside the replica (a
      // gathered replica holds f.count pages).
      uint8_t* page = replica + (gathered ? i : static_cast<size_t>(entry_pfn(f, i))) * f.page_size;
      const uint8_t* kept = f.kept[i] == FrameView::kNone ? nullptr : f.strings.get() + f.kept[i];
      apply_page(page, entry_kind(f, i), f.payload + f.offsets[i], entry_length(f, i), f.page_size,
                 xbm_repeats(f.version), ws, f.tables[i], kept);
    }
  });
}

bool check_pfns(const uint32_t* pfns, size_t count, uint64_t shadow_pages, std::string* reason) {
  for (size_t i = 0; i < count; i++) {
    if (pfns[i] >= shadow_pages) {
      *reason = "pfn " + std::to_string(pfns[i]) + " at index " + std::to_string(i) +
                " is past the end (" + std::to_string(shadow_pages) + " pages)";
      return false;
    }
  }
  auto dup = [&](uint32_t p) {
    size_t first = count;
    for (size_t i = 0; i < count; i++) {
      if (pfns[i] == p) {
        if (first != count) {
          *reason = "pfn " + std::to_string(p) + " appears more than once (index " +
                    std::to_string(first) + " and " + std::to_string(i) + ")";
          return false;
        }
        first = i;
      }
    }
    return true;
  };
  if (shadow_pages <= (uint64_t{1} << 26)) {
    // A bitmap over the pages (at most 8 MiB); the second pass names the first repeat.
    std::vector<uint64_t> seen((shadow_pages + 63) / 64, 0);
    for (size_t i = 0; i < count; i++) {
      uint64_t& w = seen[pfns[i] >> 6];
      const uint64_t bit = uint64_t{1} << (pfns[i] & 63);
      if (w & bit) return dup(pfns[i]);
      w |= bit;
    }
    return true;
  }
  std::vector<uint32_t> sorted(pfns, pfns + count);
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 1; i < count; i++) {
    if (sorted[i] == sorted[i - 1]) return dup(sorted[i]);
  }
  return true;
}

namespace {

struct Chunk {
  size_t begin = 0;
  uint8_t* buf = nullptr;
  size_t cap = 0;
  size_t len = 0;
};

// Chunk buffers are recycled between calls: a fresh multi-MiB malloc is fresh mmap memory, and
// faulting it in page by page cost ~15 % of encodePages. A few buffers (<= 64 MiB each) stay.
// Intentionally leaked (reachable from a global): pool threads may outlive static destructors.
std::mutex& g_spare_mu = *new std::mutex;
std::vector<std::pair<uint8_t*, size_t>>& g_spare = *new std::vector<std::pair<uint8_t*, size_t>>;
constexpr size_t kMaxSpare = 16;
constexpr size_t kMaxSpareBytes = size_t{64} << 20;

void take_buffer(Chunk* c, size_t want) {
  {
    std::lock_guard<std::mutex> lock(g_spare_mu);
    if (!g_spare.empty()) {
      c->buf = g_spare.back().first;
      c->cap = g_spare.back().second;
      g_spare.pop_back();
    }
  }
  if (c->cap < want) {
    std::free(c->buf);
    c->buf = static_cast<uint8_t*>(std::malloc(want));
    c->cap = c->buf ? want : 0;
  }
}

void give_buffer(Chunk* c) {
  if (c->buf != nullptr && c->cap <= kMaxSpareBytes) {
    std::lock_guard<std::mutex> lock(g_spare_mu);
    if (g_spare.size() < kMaxSpare) {
      g_spare.emplace_back(c->buf, c->cap);
      c->buf = nullptr;
    }
  }
  std::free(c->buf);
  c->buf = nullptr;
}

// Frame buffers are recycled too. A frame goes to JS and comes back when the garbage collector
// finalizes it (release_frame). Fresh memory is what made encodePages slow through N-API: a
// 0.5 MiB frame in new mmap memory cost ~120 page faults, ~300 us of kernel time on this VM,
// a quarter of the whole call. Capacities are rounded up (1/8 + 64 KiB granules) so frames of
// similar size fit each other's buffers, and a buffer is only reused for a frame of at least
// half its capacity (a small frame never pins a big buffer). At most 64 MiB stay in the bin.
constexpr size_t kFrameRecycleMin = size_t{64} << 10;  // smaller frames: plain malloc (heap)
constexpr size_t kFrameBinBytes = size_t{64} << 20;
constexpr size_t kFrameBinCount = 256;
std::mutex& g_frame_mu = *new std::mutex;
std::vector<std::pair<uint8_t*, size_t>>& g_frames = *new std::vector<std::pair<uint8_t*, size_t>>;
size_t g_frame_bytes = 0;  // guarded by g_frame_mu

}  // namespace

uint8_t* take_frame(size_t size, size_t* cap) {
  if (size >= kFrameRecycleMin) {
    std::lock_guard<std::mutex> lock(g_frame_mu);
    size_t best = g_frames.size();
    for (size_t i = 0; i < g_frames.size(); i++) {
      const size_t c = g_frames[i].second;
      if (c >= size && c / 2 <= size && (best == g_frames.size() || c < g_frames[best].second)) best = i;
    }
    if (best != g_frames.size()) {
      uint8_t* p = g_frames[best].first;
      *cap = g_frames[best].second;
      g_frame_bytes -= *cap;
      g_frames[best] = g_frames.back();
      g_frames.pop_back();
      return p;
    }
  }
  size_t c = size;
  if (size >= kFrameRecycleMin) {
    const size_t granule = size_t{64} << 10;
    c = (size + size / 8 + granule - 1) / granule * granule;
  }
  auto* p = static_cast<uint8_t*>(std::malloc(c));
  *cap = p != nullptr ? c : 0;
  return p;
}

namespace {

// Per-thread encoder state, kept between calls (pool threads live as long as the process): a
// fresh group buffer per call is fresh memory, and its page faults cost more than the coding.
struct EncodeScratch {
  explicit EncodeScratch(size_t page_size) : page_size(page_size), ws(page_size), coder(page_size) {}
  size_t page_size;
  Workspace ws;
  GroupCoder coder;
};

EncodeScratch* encode_scratch(size_t page_size) {
  thread_local std::unique_ptr<EncodeScratch> es;
  if (es == nullptr || es->page_size != page_size) {
    es.reset();
    try {
      es = std::make_unique<EncodeScratch>(page_size);
    } catch (const std::bad_alloc&) {
      return nullptr;
    }
  }
  return es.get();
}

}  // namespace

void release_frame(uint8_t* data, size_t capacity) {
  if (data == nullptr) return;
  if (capacity >= kFrameRecycleMin && capacity <= kFrameBinBytes) {
    std::lock_guard<std::mutex> lock(g_frame_mu);
    if (g_frames.size() < kFrameBinCount && g_frame_bytes + capacity <= kFrameBinBytes) {
      g_frames.emplace_back(data, capacity);
      g_frame_bytes += capacity;
      return;
    }
  }
  std::free(data);
}

const char* encode_pages(const Ops& ops, uint8_t* shadow, const uint8_t* pages,
                         const uint32_t* pfns, size_t count, size_t page_size, unsigned threads,
                         bool compress, bool entropy, size_t own_min, Encoded* out, bool gathered) {
  // Where page i of the shadow is: at its pfn, or at i in a gathered (staged) shadow.
  auto shadow_page = [&](size_t i) { return shadow + (gathered ? i : static_cast<size_t>(pfns[i])) * page_size; };
  std::vector<uint8_t> kinds(count);
  std::vector<uint32_t> lens(count);
  std::vector<Chunk> chunks;
  std::mutex mu;
  bool oom = false;
  const size_t gp = group_pages(page_size);
  const size_t groups = (count + gp - 1) / gp;
  const size_t slot = page_size + 64;  // first-stage body of one page, with copy slack
  runtime::parallel_for(groups, threads, [&](size_t gb, size_t ge) {
    EncodeScratch* es = encode_scratch(page_size);
    Chunk c;
    c.begin = gb;
    const size_t b0 = gb * gp, e0 = std::min(count, ge * gp);
    // Room for the worst case of one group; grows by doubling when a group might not fit.
    const size_t group_max = gp * slot + kHufTables;
    take_buffer(&c, std::min<size_t>((e0 - b0) * slot, size_t{1} << 20) + group_max);
    bool failed = c.buf == nullptr || es == nullptr;
    for (size_t g = gb; g < ge && !failed; g++) {
      if (c.cap - c.len < group_max) {
        const size_t ncap = std::max(c.cap * 2, c.len + group_max);
        auto* nb = static_cast<uint8_t*>(std::realloc(c.buf, ncap));
        if (nb == nullptr) {
          failed = true;
          break;
        }
        c.buf = nb;
        c.cap = ncap;
      }
      const size_t b = g * gp, e = std::min(count, b + gp);
      if (compress && entropy) {
        es->coder.reset(c.buf + c.len, kinds.data() + b, lens.data() + b, own_min);
        for (size_t i = b; i < e; i++) {
          // SAFETY: pfns were checked < shadow pages; pages holds count * page_size bytes.
          es->coder.add(ops, shadow_page(i), pages + i * page_size, es->ws);
        }
        c.len += es->coder.finish(es->ws);
        continue;
      }
      for (size_t i = b; i < e; i++) {
        size_t blen = 0;
        // SAFETY: as above; the chunk has room for the group (page size + 64 per page).
        kinds[i] = encode_page(ops, shadow_page(i), pages + i * page_size, page_size, true, compress, true,
                               c.buf + c.len, &blen, es->ws);
        lens[i] = static_cast<uint32_t>(blen);
        c.len += blen;
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    if (failed) oom = true;
    chunks.push_back(c);
  });
  std::sort(chunks.begin(), chunks.end(), [](const Chunk& a, const Chunk& b) { return a.begin < b.begin; });
  size_t total = 0;
  for (const Chunk& c : chunks) total += c.len;
  const size_t size = kFrameHeader + count * kIndexEntry + total;
  size_t cap = 0;
  uint8_t* f = oom ? nullptr : take_frame(size, &cap);
  if (f != nullptr) {
    // The lowest version this encoder writes for the pages' kinds: 1 or 2 without XBM pages (so
    // older readers take those), else 5 (XBM bodies with a repeat distance, which readers of
    // versions 3 and 4 refuse as an unsupported version).
    uint8_t top = 0;
    for (size_t i = 0; i < count; i++) top = std::max(top, kinds[i]);
    std::memcpy(f, kFrameMagic, 4);
    f[4] = frame_version(top);
    f[5] = 0;
    f[6] = static_cast<uint8_t>(__builtin_ctzll(page_size));
    f[7] = 0;
    put32(f + 8, static_cast<uint32_t>(count));
    put32(f + 12, 0);
    put64(f + 16, total);
    uint8_t* idx = f + kFrameHeader;
    for (size_t i = 0; i < count; i++) {
      uint8_t* e = idx + i * kIndexEntry;
      put32(e, pfns[i]);
      e[4] = kinds[i];
      e[5] = static_cast<uint8_t>(lens[i]);
      e[6] = static_cast<uint8_t>(lens[i] >> 8);
      e[7] = static_cast<uint8_t>(lens[i] >> 16);
    }
    uint8_t* p = idx + count * kIndexEntry;
    for (const Chunk& c : chunks) {
      if (c.len != 0) std::memcpy(p, c.buf, c.len);
      p += c.len;
    }
    put64(f + 24, XXH3_64bits(f + kFrameHeader, size - kFrameHeader));
  }
  for (Chunk& c : chunks) give_buffer(&c);
  if (f == nullptr) return "out of memory";
  out->data = f;
  out->length = size;
  out->capacity = cap;
  return nullptr;
}

}  // namespace kernels::delta
