/**
 * Dirty-bitmap kernels: the indices of the set bits of a bitmap, and their count.
 *
 * Bit `i` is bit `i & 7` of byte `i >> 3` (the layout of a KVM or Xen dirty log on
 * little-endian). The native scan skips zero blocks with SIMD tests and walks only the nonzero
 * words, so its cost follows the number of set bits; at high densities it is bounded by writing
 * the output.
 */
import { native } from '../native.js';
import { intArg, optionsArg, u8Arg, u32Arg } from './page-args.js';

export interface ScanBitmapOptions {
  /** Where to write the indices; the result is then `out.subarray(0, count)`. */
  out?: Uint32Array;
  /** Added to every index (e.g. the first pfn of the slot the bitmap covers). Default 0. */
  base?: number;
}

/**
 * The indices (plus `base`) of the set bits of `bitmap`, ascending.
 * @throws TypeError if `bitmap` is not a Uint8Array or `out` not a Uint32Array; RangeError if
 *   `base` is not an integer from 0 to 2^32 - 1, if `base` + 8 * `bitmap`.length exceeds 2^32, or
 *   if `out` has fewer elements than set bits (then nothing is written) or shares memory with `bitmap`.
 */
export function scanBitmap(bitmap: Uint8Array, options?: ScanBitmapOptions): Uint32Array {
  u8Arg(bitmap, 'bitmap');
  const opts = optionsArg<ScanBitmapOptions>(options, 'options', ['out', 'base']);
  const base = opts.base === undefined ? 0 : intArg(opts.base, 'base', 0, 0xffffffff);
  const end = base + 8 * bitmap.length;
  if (end > 2 ** 32) throw new RangeError(`\`base\` + 8 * \`bitmap\`.length must be at most 4294967296, got ${end}`);
  if (opts.out === undefined) return native.bitmap_scan(bitmap, base) as Uint32Array;
  const out = u32Arg(opts.out, 'out');
  const n = native.bitmap_scan(bitmap, base, out) as number;
  return n === out.length ? out : out.subarray(0, n);
}

/**
 * The number of set bits in `bitmap`.
 * @throws TypeError if `bitmap` is not a Uint8Array.
 */
export function countBitmap(bitmap: Uint8Array): number {
  u8Arg(bitmap, 'bitmap');
  return native.bitmap_count(bitmap) as number;
}
