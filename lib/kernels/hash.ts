/**
 * Page hashing: XXH3-64 per page (seeded), XXH3-128 fingerprints for dedup indexes, and a bitmap
 * of the all-zero pages.
 *
 * The hashes come from Debian's libxxhash (the reference implementation), compiled into the addon
 * once per ISA, so every value equals what `xxhsum` and any other XXH3 implementation compute.
 * Inputs of 4 MiB and more are split across all cores unless `threads` says otherwise.
 */
import { native } from '../native.js';
import { describe, optionsArg, pageSizeArg, threadsArg, u8Arg, wholePages } from './page-args.js';

export interface PageOptions {
  /** Bytes per page: a power of two from 512 to 1048576. `data` must hold whole pages. */
  pageSize: number;
  /** Threads (default: all cores from 4 MiB on, else 1). */
  threads?: number;
}

export interface HashPagesOptions extends PageOptions {
  /** XXH3 seed, 0 to 2^64 - 1 (default 0). */
  seed?: bigint | number;
}

function seedArg(v: unknown): bigint {
  if (v === undefined) return 0n;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`\`seed\` must be an integer from 0 to 2^64 - 1, got ${v}`);
    return BigInt(v);
  }
  if (typeof v !== 'bigint') throw new TypeError(`\`seed\` must be a bigint or a number, got ${describe(v)}`);
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`\`seed\` must be an integer from 0 to 2^64 - 1, got ${v}`);
  return v;
}

function pagesArgs(
  data: unknown,
  options: unknown,
  known: readonly string[] = ['pageSize', 'threads'],
): { data: Uint8Array; pageSize: number; threads: number } {
  const d = u8Arg(data, 'data');
  const opts = optionsArg<PageOptions>(options, 'options', known);
  const pageSize = pageSizeArg(opts.pageSize);
  wholePages(d, pageSize);
  return { data: d, pageSize, threads: threadsArg(opts.threads, d.length) };
}

/**
 * XXH3-64 of every page: `result[i] = XXH3_64bits_withSeed(page i, pageSize, seed)`.
 * @throws TypeError for a wrong type or a detached `data`; RangeError for a bad `pageSize`,
 *   `threads` or `seed`, or a `data` length that is not a multiple of `pageSize`.
 */
export function hashPages(data: Uint8Array, options: HashPagesOptions): BigUint64Array {
  const a = pagesArgs(data, options, ['pageSize', 'threads', 'seed']);
  const seed = seedArg((options as HashPagesOptions).seed);
  return native.hash_pages(a.data, a.pageSize, seed, a.threads) as BigUint64Array;
}

/**
 * XXH3-128 of every page, 16 bytes each, in the canonical byte order of
 * `XXH128_canonicalFromHash`: the high 64 bits first, each half big-endian. That is the order
 * `xxhsum -H2` prints, so `Buffer.from(fp.subarray(16 * i, 16 * i + 16)).toString('hex')` equals
 * its hex digits.
 * @throws as hashPages.
 */
export function fingerprintPages(data: Uint8Array, options: PageOptions): Uint8Array {
  const a = pagesArgs(data, options);
  return native.hash_fingerprint(a.data, a.pageSize, a.threads) as Uint8Array;
}

/**
 * A bitmap of the all-zero pages: bit `i & 7` of byte `i >> 3` is set when page i holds only
 * zero bytes (the layout of scanBitmap's input). Each page stops at its first nonzero block.
 * @throws as hashPages.
 */
export function zeroPages(data: Uint8Array, options: PageOptions): Uint8Array {
  const a = pagesArgs(data, options);
  return native.hash_zero(a.data, a.pageSize, a.threads) as Uint8Array;
}

/**
 * XXH3-64 of a whole buffer with `seed` (default 0), e.g. for the output records' hash chain.
 * @throws TypeError if `data` is not a Uint8Array; RangeError for a bad `seed`.
 */
export function xxh3(data: Uint8Array, seed?: bigint | number): bigint {
  u8Arg(data, 'data');
  return native.hash_xxh3(data, seedArg(seed)) as bigint;
}
