// Our own writer of lz4 blocks for XBM bodies (kind 11), read back by liblz4's
// LZ4_decompress_safe like any other lz4 block (docs/FORMAT.md, "XBM+LZ4").
//
// An XBM body is masks (line, word and byte masks) then literals (the non-zero XOR bytes). On
// real guest pages the masks repeat wherever a page holds an array whose entries change alike
// (lz4 takes 62 % off them), while the literals, small XOR values, give lz4 ~11 % for three
// quarters of its time (docs/delta.md, session 6). This writer looks for matches in the masks
// only and stores the literals as one literal run: most of lz4's gain on these pages at a third
// of its time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels::delta {

// Writes an lz4 block that decompresses to masks[0, mlen) followed by lits[0, llen) to dst and
// returns its length, or 0 if it would take more than `cap` bytes. Matches start and end inside
// the masks (within their first 65535 bytes), so the literals are copied as they are. The block keeps
// the format's end rules (the last 5 bytes are literals, no match starts in the last 12), and
// its bytes depend only on the input.
size_t lz4_block_masks(const uint8_t* masks, size_t mlen, const uint8_t* lits, size_t llen,
                       uint8_t* dst, size_t cap);

}  // namespace kernels::delta
