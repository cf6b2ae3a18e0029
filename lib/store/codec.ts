/**
 * zstd for the store (the npm package zstd-napi, which builds the bundled libzstd from source when
 * no prebuild can be fetched). We call its low-level contexts directly so that every decompression
 * goes into a buffer of a size we chose: a hostile frame that claims a huge content size gets an
 * error, never a huge allocation, and a page decompresses straight into guest memory.
 */
import { createRequire } from 'node:module';

interface ZstdBinding {
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
  compressBound(n: number): number;
}

const require = createRequire(import.meta.url);
const binding = require('zstd-napi/binding') as ZstdBinding;

/** zstd level: 1 is the fast end (~500 MB/s per core), where checkpoint throughput matters most. */
export const ZSTD_LEVEL = 1;

let cctx: InstanceType<ZstdBinding['CCtx']> | null = null;
let dctx: InstanceType<ZstdBinding['DCtx']> | null = null;
let scratch = Buffer.allocUnsafe(0);

/** zstd of `src`, as a view into a scratch buffer that the next call overwrites. */
export function zstdCompress(src: Uint8Array): Uint8Array {
  cctx ??= new binding.CCtx();
  const bound = binding.compressBound(src.byteLength);
  if (scratch.length < bound) scratch = Buffer.allocUnsafe(Math.max(bound, 16384));
  const n = cctx.compress(scratch, src, ZSTD_LEVEL);
  return scratch.subarray(0, n);
}

/**
 * Decompresses `src` into `dst`; returns the bytes written.
 * @throws Error (from zstd) when `src` is not a valid frame or would not fit in `dst`.
 */
export function zstdDecompressInto(dst: Uint8Array, src: Uint8Array): number {
  dctx ??= new binding.DCtx();
  return dctx.decompress(dst, src);
}
