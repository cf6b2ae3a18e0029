// The two containers of the delta codec (layouts in docs/FORMAT.md):
//
//   delta  (encodeDelta / applyDelta): one buffer of any length against its previous version.
//   frame  (encodePages / applyPages): a batch of pages, each encoded against its shadow page.
//
// Building and fully validating them is here; N-API wrappers live in native/napi/delta.cc. Every
// parser treats its input as hostile: it checks before it reads, reports a reason string, and
// the apply step only ever runs on input that the check accepted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/delta/codec.h"
#include "kernels/delta/delta.h"

namespace kernels::delta {

constexpr uint8_t kVersion = 1;       // delta container
// Page frame: version 1 holds kinds 0-5, version 2 adds the XRLE Huffman kinds 6-7, version 3
// the XBM kinds 8-11, version 4 kind 12 (XBM with the page's own literal code), version 5 the
// same kinds with a repeat distance at the start of every XBM body (repeated XOR words cost no
// literals). encode_pages writes the lowest version its pages need: 5 whenever it has XBM pages.
constexpr uint8_t kFrameVersion = 5;
inline uint8_t frame_kinds(uint8_t version) {
  return version == 1   ? uint8_t{kXrleHuf}
         : version == 2 ? uint8_t{kXbm}
         : version == 3 ? uint8_t{kXbmHufOwn}
                        : kKindCount;
}
// Whether the XBM bodies of a frame of this version start with a repeat distance.
inline bool xbm_repeats(uint8_t version) { return version >= 5; }
// The version encode_pages writes for `top`, the highest kind of a frame's pages.
inline uint8_t frame_version(uint8_t top) {
  if (top >= kXbm) return 5;
  uint8_t v = 1;
  while (top >= frame_kinds(v)) v++;
  return v;
}
// encode_pages codes pages in groups of group_pages(page size) pages (by index in the batch,
// 256 KiB of pages): the unit of the entropy stage's tables and of the work split between
// threads, so frames do not depend on the thread count.
inline size_t group_pages(size_t page_size) {
  return page_size >= (size_t{256} << 10) ? 1 : (size_t{256} << 10) / page_size;
}
constexpr size_t kDeltaHeader = 24;
constexpr size_t kFrameHeader = 32;
constexpr size_t kIndexEntry = 8;
constexpr size_t kMinPageSize = 512;
constexpr size_t kMaxPageSize = size_t{1} << 20;
constexpr uint64_t kMaxDeltaLength = 0xffffffffu;

// ---- single delta ----
inline size_t delta_bound(size_t n) { return kDeltaHeader + n + 64; }  // 64: copy slack
// Writes the delta of next against prev (n bytes each, n <= kMaxDeltaLength) to out (capacity
// delta_bound(n)); returns its length. prev is not modified.
size_t encode_delta(const Ops& ops, const uint8_t* prev, const uint8_t* next, size_t n,
                    bool compress, uint8_t* out);
// True if `d` is a valid delta for an n-byte target, else false with the reason (a phrase that
// follows the argument's name: "`delta` is truncated ...").
bool check_delta(const uint8_t* d, size_t len, size_t n, std::string* reason);
// Applies a delta that check_delta accepted.
void apply_delta(uint8_t* target, size_t n, const uint8_t* d, size_t len);

// ---- frames ----
struct FrameView {
  uint8_t version = 0;
  uint32_t page_size = 0;
  uint32_t count = 0;
  uint64_t payload_length = 0;
  const uint8_t* index = nullptr;    // count entries of kIndexEntry bytes
  const uint8_t* payload = nullptr;  // bodies in index order
  std::vector<uint64_t> offsets;     // offset of each body in payload (filled by check_frame)
  // For each kXrleHuf / kXbmHuf page, the table-carrying body whose tables it uses (check_frame).
  std::vector<const uint8_t*> tables;
  // Huffman pages' decoded strings, left by check_frame for apply_frame (which then does not
  // decode them again): page i's at strings[kept[i]], kept[i] == kNone for other pages.
  static constexpr size_t kNone = ~size_t{0};
  std::vector<size_t> kept;
  std::unique_ptr<uint8_t[]> strings;
};

inline uint32_t entry_pfn(const FrameView& f, size_t i) {
  const uint8_t* e = f.index + i * kIndexEntry;
  return uint32_t{e[0]} | uint32_t{e[1]} << 8 | uint32_t{e[2]} << 16 | uint32_t{e[3]} << 24;
}
inline uint8_t entry_kind(const FrameView& f, size_t i) { return f.index[i * kIndexEntry + 4]; }
inline uint32_t entry_length(const FrameView& f, size_t i) {
  const uint8_t* e = f.index + i * kIndexEntry + 5;
  return uint32_t{e[0]} | uint32_t{e[1]} << 8 | uint32_t{e[2]} << 16;
}

// Header, sizes, checksum and the index (lengths add up, kinds known). page_size 0 accepts any
// valid page size. Fills *out (without offsets). Does not look inside the bodies.
const char* parse_frame(const uint8_t* f, size_t len, size_t page_size, FrameView* out);
// parse_frame plus: every pfn < replica_pages and distinct, every body well-formed. `reason`
// gets a message naming the page when it fails.
bool check_frame(const uint8_t* f, size_t len, size_t page_size, uint64_t replica_pages,
                 unsigned threads, FrameView* out, std::string* reason);
// Applies a frame check_frame accepted to the replica. `gathered`: the replica holds only the
// frame's pages, page i of the frame at i * page_size (a staged copy), not at its pfn.
void apply_frame(uint8_t* replica, const FrameView& f, unsigned threads, bool gathered = false);

// A buffer of at least `size` bytes (uninitialised) from the recycle bin of frame buffers, or
// fresh; its capacity in *capacity; nullptr when there is no memory. Give it back with
// release_frame. (encode_pages' frames come from here; so do the N-API layer's staged copies.)
uint8_t* take_frame(size_t size, size_t* capacity);
// Gives a frame buffer (Encoded::data, Encoded::capacity) back once its owner is done with it,
// so a later encode_pages can reuse it instead of fresh memory; frees it when the recycle bin
// is full. Plain std::free is also correct, it only forgoes the reuse.
void release_frame(uint8_t* data, size_t capacity);

// True if every pfn is < shadow_pages and no pfn repeats; else false with a reason.
bool check_pfns(const uint32_t* pfns, size_t count, uint64_t shadow_pages, std::string* reason);

struct Encoded {
  uint8_t* data = nullptr;  // malloc'd; the caller frees it (std::free or release_frame)
  size_t length = 0;
  size_t capacity = 0;      // bytes allocated at data (>= length)
};
// Encodes pages[i] against shadow page pfns[i] for every i and updates the shadow. The caller
// has checked the pfns (check_pfns) and sizes. `compress` allows the lz4 second stage and, with
// `entropy`, the Huffman stage (GroupCoder), in which XBM pages of at least own_min literals may
// take their own literal code (kind 12; own_min 0: none, kOwnMinLiterals by default).
// `gathered`: the shadow holds only the batch's pages, page i at i * page_size (a staged copy),
// not at pfns[i]; the frame is the same. Returns nullptr or a reason (out of memory).
const char* encode_pages(const Ops& ops, uint8_t* shadow, const uint8_t* pages,
                         const uint32_t* pfns, size_t count, size_t page_size, unsigned threads,
                         bool compress, bool entropy, size_t own_min, Encoded* out,
                         bool gathered = false);

}  // namespace kernels::delta
