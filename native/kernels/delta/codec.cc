// Page codec: second stage (lz4, chosen per page when it pays) and the hostile-input-safe
// decoder of the page kinds in docs/FORMAT.md. See codec.h.
#include "kernels/delta/codec.h"

#include <lz4.h>

#include <cstdlib>
#include <cstring>

namespace kernels::delta {

Workspace::Workspace(size_t max_page)
    : max_page_(max_page),
      xor_((max_page + 63) / 64 * 64 + 64),
      mask_((max_page + 63) / 64 + 1),
      edges_(kEdgeSlots),
      tmp_(max_page + 64) {}

Workspace::~Workspace() {
  std::free(lz4_);
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

// Smallest XRLE body worth handing to lz4. Fine-grained changes (a few hundred literal bytes in
// short runs) have no 4-byte repeats for lz4 to find: trying costs ~1 us per page and never
// pays, so only bulk changes (a third of the page or more) and RAW pages get the second stage.
inline size_t lz4_min_xrle(size_t n) { return n / 3 > 96 ? n / 3 : 96; }

}  // namespace

Kind encode_page(const Ops& ops, uint8_t* prev, const uint8_t* next, size_t n, bool update_prev,
                 bool compress, uint8_t* out, size_t* out_len, Workspace& ws) {
  Kind k = ops.encode_page(prev, next, n, update_prev, out, out_len, ws.scratch());
  if (!compress) return k;
  uint8_t* tmp = ws.tmp();
  if (k == kXrle && *out_len >= lz4_min_xrle(n)) {
    const size_t len = *out_len;
    const size_t vs = varint_size(len);
    // The whole body (varint + block) must save at least 1/16 of the XRLE stream.
    const size_t c = try_lz4(ws, out, len, tmp + vs, len - len / 16 - vs);
    if (c != 0) {
      write_varint(tmp, len);
      std::memcpy(out, tmp, vs + c);
      *out_len = vs + c;
      return kXrleLz4;
    }
  } else if (k == kRaw && n >= 96) {
    const size_t c = try_lz4(ws, next, n, tmp, n - n / 16);
    if (c != 0) {
      std::memcpy(out, tmp, c);
      *out_len = c;
      return kRawLz4;
    }
  }
  return k;
}

namespace {

// Walks an XRLE stream; with target == nullptr only checks it.
const char* xrle_walk(uint8_t* target, const uint8_t* body, size_t len, size_t n) {
  const uint8_t* p = body;
  const uint8_t* const end = body + len;
  size_t pos = 0;
  while (p < end) {
    const uint8_t t = *p++;
    size_t skip = t & 15, lit = t >> 4;
    uint32_t v;
    if (skip == 15) {
      if (!read_varint(&p, end, &v)) return "truncated or oversized skip varint";
      skip = 15 + static_cast<size_t>(v);
    }
    if (lit == 0) {
      if (!read_varint(&p, end, &v)) return "truncated or oversized length varint";
      lit = 16 + static_cast<size_t>(v);
    }
    if (skip > n - pos) return "skip runs past the end of the page";
    pos += skip;
    if (lit > n - pos) return "literal runs past the end of the page";
    if (lit > static_cast<size_t>(end - p)) return "literal is truncated";
    if (target != nullptr) {
      uint8_t* d = target + pos;
      // SAFETY: pos + lit <= n and p + lit <= end were checked above.
      size_t i = 0;
      for (; i + 8 <= lit; i += 8) {
        uint64_t a, b;
        std::memcpy(&a, d + i, 8);
        std::memcpy(&b, p + i, 8);
        a ^= b;
        std::memcpy(d + i, &a, 8);
      }
      for (; i < lit; i++) d[i] ^= p[i];
    }
    p += lit;
    pos += lit;
  }
  return nullptr;
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

const char* check_page(uint8_t kind, const uint8_t* body, size_t len, size_t n, Workspace& ws) {
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
    case kXrleLz4: {
      if (len == 0 || len >= n) return "XRLE+LZ4 body length out of range";
      size_t xlen = 0;
      if (const char* e = xrle_lz4_unpack(body, len, n, ws.tmp(), &xlen)) return e;
      return xrle_walk(nullptr, ws.tmp(), xlen, n);
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
    default:
      return "unknown page kind";
  }
}

void apply_page(uint8_t* target, uint8_t kind, const uint8_t* body, size_t len, size_t n,
                Workspace& ws) {
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
    case kXrleLz4: {
      size_t xlen = 0;
      if (xrle_lz4_unpack(body, len, n, ws.tmp(), &xlen) == nullptr) {
        xrle_walk(target, ws.tmp(), xlen, n);
      }
      return;
    }
    case kRawLz4:
      LZ4_decompress_safe(reinterpret_cast<const char*>(body), reinterpret_cast<char*>(target),
                          static_cast<int>(len), static_cast<int>(n));
      return;
    default:
      return;
  }
}

}  // namespace kernels::delta
