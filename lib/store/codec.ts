/**
 * zstd for the store, over Debian's libzstd linked into the addon (native/napi/zstd.cc). Every
 * decompression goes into a buffer of a size we chose: a hostile frame that claims a huge content
 * size gets an error, never a huge allocation, and a page decompresses straight into place.
 */
import { native } from '../native.js';

/** zstd level: 1 is the fast end, where checkpoint throughput matters most. */
export const ZSTD_LEVEL = 1;

let scratch = new Uint8Array(0);

/** zstd of `src`, as a view into a scratch buffer that the next call overwrites. */
export function zstdCompress(src: Uint8Array): Uint8Array {
  const bound = native.zstd_bound(src.byteLength) as number;
  if (scratch.length < bound) scratch = new Uint8Array(Math.max(bound, 16384));
  const n = native.zstd_compress(scratch, src, ZSTD_LEVEL) as number;
  return scratch.subarray(0, n);
}

/**
 * Decompresses `src` into `dst`; returns the bytes written.
 * @throws RangeError naming `src` when it is not a valid frame or would not fit in `dst`.
 */
export function zstdDecompressInto(dst: Uint8Array, src: Uint8Array): number {
  return native.zstd_decompress(dst, src) as number;
}
