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
// the masks (within their first 65535 bytes), so the literals are copied as they are. The
// format's end rules are kept for the masks alone (no match ends in their last 5 bytes or starts
// in their last 12), so the block holds the same matches whatever literals follow; its bytes
// depend only on the input.
size_t lz4_block_masks(const uint8_t* masks, size_t mlen, const uint8_t* lits, size_t llen,
                       uint8_t* dst, size_t cap);

// Both blocks from one match pass: lz4_block_masks(masks, mlen, nullptr, 0, dst, cap) is
// returned, and lz4_block_masks(masks, mlen, lits, llen, dst2, cap2) is written to dst2 with its
// length in *len2 (0 if it does not fit). The second is only made if the first's sequences fit
// in `cap`: else *len2 is left as it was and the caller has to make it.
size_t lz4_block_masks2(const uint8_t* masks, size_t mlen, uint8_t* dst, size_t cap,
                        const uint8_t* lits, size_t llen, uint8_t* dst2, size_t cap2, size_t* len2);

}  // namespace kernels::delta
