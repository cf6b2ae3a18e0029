// Page codec: the first stage (kernels::delta::Ops::encode_page, per ISA) plus the optional lz4
// second stage, and the decoder side: checking a page body against hostile input and applying
// it. ISA independent and free of N-API, so the sanitizer/fuzz harness links it directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/delta/delta.h"

namespace kernels::delta {

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

 private:
  size_t max_page_;
  std::vector<uint8_t> xor_;
  std::vector<uint64_t> mask_;
  std::vector<uint32_t> edges_;
  std::vector<uint8_t> tmp_;
  void* lz4_ = nullptr;
};

// Encodes one n-byte page (n <= ws.max_page()) into `out` (capacity >= n + 64). With `compress`,
// XRLE and RAW bodies are replaced by their lz4 form when that saves at least 1/16 of the body.
Kind encode_page(const Ops& ops, uint8_t* prev, const uint8_t* next, size_t n, bool update_prev,
                 bool compress, uint8_t* out, size_t* out_len, Workspace& ws);

// Returns nullptr when `body` (len bytes) is a well-formed body of `kind` for an n-byte page,
// else a short reason. Never reads outside body[0, len). Uses ws.tmp() for lz4 kinds.
const char* check_page(uint8_t kind, const uint8_t* body, size_t len, size_t n, Workspace& ws);

// Applies a body that check_page accepted to the n-byte `target`.
void apply_page(uint8_t* target, uint8_t kind, const uint8_t* body, size_t len, size_t n,
                Workspace& ws);

// LEB128 helpers shared with frame.cc. read_varint returns false on truncation or a value that
// does not fit in 32 bits (at most 5 bytes).
size_t varint_size(uint64_t v);
uint8_t* write_varint(uint8_t* p, uint64_t v);
bool read_varint(const uint8_t** p, const uint8_t* end, uint32_t* v);

}  // namespace kernels::delta
