/**
 * The delta codec: encode a buffer (or a batch of pages) against its previous version, and
 * apply the result on the other side. Formats are in docs/FORMAT.md ("Delta" and "Page frame").
 *
 * TypeScript validates arguments (TypeError for a wrong type, RangeError for a bad value, each
 * naming the argument); the native side checks every byte of a delta or frame before it writes
 * anything, so a hostile input throws a RangeError and leaves the target unchanged.
 */
import { native } from '../native.js';
import { holdForAsync } from './memory.js';
import { notDetached, optionsArg } from './page-args.js';

/** Options of {@link encodeDelta}. */
export interface EncodeDeltaOptions {
  /**
   * Allow the lz4 second stage (chosen per buffer when it saves at least 1/16). Default true.
   * With `false` the output is the first stage only (XOR-RLE or RAW), byte for byte what
   * docs/FORMAT.md describes.
   */
  compress?: boolean;
}

/** Options of {@link encodePages} / {@link encodePagesSync}. */
export interface EncodePagesOptions {
  /** Page size in bytes: a power of two from 512 to 1048576. Default 4096. */
  pageSize?: number;
  /** Worker threads to use (1 to 256). Default: the number of hardware threads. */
  threads?: number;
  /** Allow the second stages (lz4, and the Huffman stage if `entropy`), chosen per page when they pay. Default true. */
  compress?: boolean;
  /**
   * Allow the Huffman stage (with `compress`): pages are coded in groups of 256 KiB; where an
   * 8-page sample says a Huffman code of the group's first-stage bytes (XRLE tokens or XBM masks,
   * and literal bytes) saves at least a quarter of what the codec writes without it (pages whose
   * changed bytes differ by small amounts: counters, flags, nearby pointers), each page keeps
   * its smaller body. Elsewhere an XBM page with many changed bytes may code them with a
   * Huffman code of its own, carried in its body (kind 12, see `ownCodes`). Default true; `false`
   * gives the lz4-only codec, which is faster (see docs/delta.md for both, measured).
   */
  entropy?: boolean;
  /**
   * With `entropy`: let an XBM page with at least this many literal bytes (its changed bytes
   * but those of words that repeat an earlier word, which cost none) code them with a
   * Huffman code of its own (kind 12). A code costs ~1.5-2.5 µs a page whatever
   * it saves. `true` (the default) means {@link OWN_CODES_MIN_BYTES} (1280), a count at which real
   * guest pages of fine-grained changes still encode at 2 GB/s a thread with a margin; a smaller
   * integer (at least 1) buys smaller frames for time (1024: ~4 % smaller, ~8 % slower on such
   * pages; 512: ~8 % smaller, ~17 % slower); `false` drops the per-page codes and keeps the
   * group codes (see docs/delta.md, sessions 7 to 10, measured).
   */
  ownCodes?: boolean | number;
}

/** Options of {@link applyPages} / {@link applyPagesAsync}. */
export interface ApplyPagesOptions {
  /** Page size in bytes; must equal the frame's. Default 4096. */
  pageSize?: number;
  /** Worker threads to use (1 to 256). Default: the number of hardware threads. */
  threads?: number;
}

/** What {@link inspectFrame} reports about a frame. */
export interface FrameInfo {
  /**
   * Format version: 5 when the frame has XBM pages (kinds 8-12, their bodies with a repeat
   * distance), else 2 when it has XRLE+HUF pages (6-7), else 1. Frames of versions 3 and 4
   * (XBM without repeats; written before) are read too (docs/FORMAT.md).
   */
  version: number;
  /** Page size the frame was made for. */
  pageSize: number;
  /** Number of pages in the frame. */
  count: number;
  /** The page numbers, in frame order. */
  pfns: Uint32Array;
  /** Total size of the frame in bytes. */
  bytes: number;
  /** Bytes of encoded page bodies (the frame minus header and index). */
  payloadBytes: number;
}

function u8(value: unknown, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`\`${name}\` must be a Uint8Array, got ${describe(value)}`);
  }
  // A closed guest memory or a transferred buffer reads as zero length: say what it is.
  notDetached(value, name);
  return value;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return typeof value;
}

function options(value: unknown, name: string, known: readonly string[]): Record<string, unknown> {
  return optionsArg<Record<string, unknown>>(value, name, known) as Record<string, unknown>;
}

function pageSizeOf(o: Record<string, unknown>): number {
  const v = o.pageSize ?? 4096;
  if (typeof v !== 'number') throw new TypeError(`\`pageSize\` must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 512 || v > 1048576 || (v & (v - 1)) !== 0) {
    throw new RangeError(`\`pageSize\` must be a power of two from 512 to 1048576, got ${v}`);
  }
  return v;
}

function threadsOf(o: Record<string, unknown>): number | undefined {
  const v = o.threads;
  if (v === undefined) return undefined;
  if (typeof v !== 'number') throw new TypeError(`\`threads\` must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 1 || v > 256) {
    throw new RangeError(`\`threads\` must be an integer from 1 to 256, got ${v}`);
  }
  return v;
}

/**
 * The literal bytes (changed bytes outside repeated words) an XBM page needs for its own literal
 * code by default (`ownCodes: true`).
 */
export const OWN_CODES_MIN_BYTES = 1280;

/** `ownCodes` as the native call takes it: undefined for the default, 0 for none, else the count. */
function ownCodesOf(o: Record<string, unknown>): number | undefined {
  const v = o.ownCodes ?? true;
  if (v === true) return undefined;
  if (v === false) return 0;
  if (typeof v !== 'number') throw new TypeError(`\`ownCodes\` must be a boolean or a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 1 || v > 0xffffffff) {
    throw new RangeError(`\`ownCodes\` must be true, false or an integer from 1 to 4294967295, got ${v}`);
  }
  return v;
}

function flagOf(o: Record<string, unknown>, name: 'compress' | 'entropy'): boolean {
  const v = o[name] ?? true;
  if (typeof v !== 'boolean') throw new TypeError(`\`${name}\` must be a boolean, got ${describe(v)}`);
  return v;
}

/**
 * Encodes `next` given `prev` (same length): XOR with `prev`, runs of zero bytes skipped,
 * literal runs kept, raw fallback when that does not pay. The result is self-describing,
 * versioned and checksummed (docs/FORMAT.md, "Delta").
 * @throws TypeError if an argument is not a Uint8Array.
 * @throws RangeError if the lengths differ or exceed 4294967295 bytes.
 */
export function encodeDelta(prev: Uint8Array, next: Uint8Array, opts?: EncodeDeltaOptions): Uint8Array {
  u8(prev, 'prev');
  u8(next, 'next');
  const o = options(opts, 'options', ['compress']);
  if (prev.length !== next.length) {
    throw new RangeError(`\`next\` must have the length of \`prev\` (${prev.length} bytes), got ${next.length}`);
  }
  return native.delta_encode(prev, next, flagOf(o, 'compress')) as Uint8Array;
}

/**
 * Turns `target`, which holds the `prev` of {@link encodeDelta}, into its `next`, in place.
 * The whole delta is checked before anything is written.
 * @throws TypeError if an argument is not a Uint8Array.
 * @throws RangeError naming `delta` if it is truncated, corrupt, of another version or made
 * for a target of another length; `target` is then unchanged.
 */
export function applyDelta(target: Uint8Array, delta: Uint8Array): void {
  u8(target, 'target');
  u8(delta, 'delta');
  native.delta_apply(target, delta);
}

function encodeArgs(shadow: Uint8Array, pages: Uint8Array, pfns: Uint32Array, opts: unknown) {
  u8(shadow, 'shadow');
  u8(pages, 'pages');
  if (!(pfns instanceof Uint32Array)) throw new TypeError(`\`pfns\` must be a Uint32Array, got ${describe(pfns)}`);
  notDetached(pfns, 'pfns');
  const o = options(opts, 'options', ['pageSize', 'threads', 'compress', 'entropy', 'ownCodes']);
  const pageSize = pageSizeOf(o);
  const threads = threadsOf(o);
  const compress = flagOf(o, 'compress');
  const entropy = flagOf(o, 'entropy');
  const ownCodes = ownCodesOf(o);
  if (shadow.length % pageSize !== 0) {
    throw new RangeError(`\`shadow\` length must be a multiple of \`pageSize\` (${pageSize}), got ${shadow.length}`);
  }
  if (pages.length !== pfns.length * pageSize) {
    throw new RangeError(
      `\`pages\` must hold \`pfns.length\` (${pfns.length}) pages of ${pageSize} bytes, got ${pages.length} bytes`,
    );
  }
  return [shadow, pages, pfns, pageSize, threads, compress, entropy, ownCodes] as const;
}

/**
 * Encodes a batch of pages into one frame: for each `pfns[i]`, the delta of the new page
 * `pages[i * pageSize ..]` against page `pfns[i]` of `shadow`, and then updates `shadow` to the
 * new contents. Zero and unchanged pages cost 8 bytes of index. Runs on the native worker pool;
 * the event loop stays free. Do not touch `shadow` or `pages` until the promise settles, and do
 * not pass `pages` that overlap `shadow`. The frame's bytes do not depend on `threads` or on the
 * ISA in use. Guest memory and SharedArrayBuffers are worked on in place. A plain ArrayBuffer could
 * be detached under the worker (a transfer, a web stream) and its memory freed: on Node 20 and 24
 * it is marked untransferable and worked on in place (on Node 20 a web stream can still detach it: do
 * not); on Node 22, where `transfer()` ignores the mark, the pool works on copies of the pages it
 * needs, taken when the call starts and written back when it settles (`pfns` is copied on every
 * runtime). Views of a resizable ArrayBuffer are refused (docs/kernels.md).
 * @throws TypeError / RangeError (synchronously) for bad arguments, a pfn past the end of
 * `shadow` or a pfn that appears twice. Rejects with an Error if a plain `shadow` was detached
 * while it ran (its update is lost).
 */
export function encodePages(
  shadow: Uint8Array,
  pages: Uint8Array,
  pfns: Uint32Array,
  opts?: EncodePagesOptions,
): Promise<Uint8Array> {
  const args = encodeArgs(shadow, pages, pfns, opts);
  return holdForAsync({ shadow, pages }, { pfns }, (c, [stageShadow, stagePages]) =>
    native.pages_encode(args[0], args[1], c.pfns, ...args.slice(3), (stageShadow ? 1 : 0) | (stagePages ? 2 : 0)) as Promise<Uint8Array>,
  );
}

/** {@link encodePages}, synchronously on the calling thread (plus the pool): for small batches. */
export function encodePagesSync(
  shadow: Uint8Array,
  pages: Uint8Array,
  pfns: Uint32Array,
  opts?: EncodePagesOptions,
): Uint8Array {
  return native.pages_encode_sync(...encodeArgs(shadow, pages, pfns, opts)) as Uint8Array;
}

function applyArgs(replica: Uint8Array, frame: Uint8Array, opts: unknown) {
  u8(replica, 'replica');
  u8(frame, 'frame');
  const o = options(opts, 'options', ['pageSize', 'threads']);
  const pageSize = pageSizeOf(o);
  const threads = threadsOf(o);
  if (replica.length % pageSize !== 0) {
    throw new RangeError(`\`replica\` length must be a multiple of \`pageSize\` (${pageSize}), got ${replica.length}`);
  }
  return [replica, frame, pageSize, threads] as const;
}

/**
 * Applies a frame from {@link encodePages} to `replica`. The whole frame is validated first
 * (magic, version, page size, count, every length, every pfn, checksum, every page body);
 * then all pages are applied.
 * @throws RangeError naming `frame` if any of it is invalid; `replica` is then unchanged.
 */
export function applyPages(replica: Uint8Array, frame: Uint8Array, opts?: ApplyPagesOptions): void {
  native.pages_apply(...applyArgs(replica, frame, opts));
}

/** Options of {@link applyPagesWithUndo}. */
export interface ApplyPagesWithUndoOptions extends ApplyPagesOptions {
  /**
   * Where to put the saved pages: used when it holds all of them (`pages` is then a view of its
   * start), else a new buffer is made. Must not overlap `replica` or `frame`.
   */
  out?: Uint8Array;
}

/** What {@link applyPagesWithUndo} saved: the pages the frame overwrote, as they were. */
export interface PageUndo {
  /** The frame's pfns, in frame order (as {@link inspectFrame} lists them). */
  pfns: Uint32Array;
  /** `pfns.length` pages: page `pfns[i]` of `replica` before the apply, at `i * pageSize`. */
  pages: Uint8Array;
}

/**
 * {@link applyPages} that first saves the pages it overwrites, for a caller that may have to take
 * the frame back (`scatterPages(replica, undo.pfns, undo.pages)`): a backup that checks the state
 * it staged. One validation, where {@link inspectFrame} + gatherPages + applyPages make two.
 * @throws as {@link applyPages}, and RangeError if `out` overlaps `replica` or `frame`; nothing
 *   is written when it throws.
 */
export function applyPagesWithUndo(replica: Uint8Array, frame: Uint8Array, opts?: ApplyPagesWithUndoOptions): PageUndo {
  const { out, ...rest } = options(opts, 'options', ['pageSize', 'threads', 'out']) as ApplyPagesWithUndoOptions;
  if (out !== undefined) u8(out, 'out');
  return native.pages_apply_undo(...applyArgs(replica, frame, rest), out) as PageUndo;
}

/**
 * {@link applyPages} on the native worker pool. Rejects with the same RangeError; `replica`
 * must not be touched until the promise settles. Its arguments are held as {@link encodePages} holds its own.
 */
export function applyPagesAsync(replica: Uint8Array, frame: Uint8Array, opts?: ApplyPagesOptions): Promise<void> {
  const args = applyArgs(replica, frame, opts);
  return holdForAsync({ replica }, { frame }, (c, [stage]) =>
    native.pages_apply_async(args[0], c.frame, ...args.slice(2), stage === true) as Promise<void>,
  );
}

/**
 * Validates a frame (everything {@link applyPages} checks except the replica's size) and
 * returns its header fields and pfn list.
 * @throws RangeError naming `frame` if it is invalid.
 */
export function inspectFrame(frame: Uint8Array): FrameInfo {
  u8(frame, 'frame');
  return native.frame_inspect(frame) as FrameInfo;
}
