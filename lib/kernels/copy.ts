/**
 * Page copy kernels: gather listed guest pages into one contiguous buffer (the copy made while
 * the guest is paused) and scatter them back (the replica side).
 *
 * Every pfn is checked against the size of `memory` before any byte is copied, so a bad list
 * throws and changes nothing. Runs of consecutive pfns are copied as one block; big batches use
 * streaming stores and, by default, every core.
 */
import { native } from '../native.js';
import { optionsArg, pageSizeArg, threadsArg, u8Arg, u32Arg, wholePages } from './page-args.js';

export interface GatherOptions {
  /** Bytes per page: a power of two from 512 to 1048576. */
  pageSize: number;
  /** Write into this buffer (at least `pfns.length * pageSize` bytes, not overlapping `memory`). */
  out?: Uint8Array;
  /** Threads for large batches (default: all cores from 4 MiB on, else 1). */
  threads?: number;
}

export interface ScatterOptions {
  pageSize: number;
  threads?: number;
}

/**
 * Copies page `pfns[i]` of `memory` to bytes `[i * pageSize, (i + 1) * pageSize)` of a new Buffer
 * (or of `out`, then returning `out.subarray(0, pfns.length * pageSize)`).
 * @throws TypeError for a wrong argument type or a detached buffer; RangeError for a bad
 *   `pageSize` or `threads`, a `memory` length that is not a multiple of `pageSize`, a pfn past
 *   the end of `memory` (naming its index), an `out` too small,
 *   overlapping `memory` or overlapping `pfns`.
 */
export function gatherPages(memory: Uint8Array, pfns: Uint32Array, options: GatherOptions): Uint8Array {
  u8Arg(memory, 'memory');
  u32Arg(pfns, 'pfns');
  const opts = optionsArg<GatherOptions>(options, 'options', ['pageSize', 'out', 'threads']);
  const pageSize = pageSizeArg(opts.pageSize);
  wholePages(memory, pageSize, 'memory');
  const bytes = pfns.length * pageSize;
  const threads = threadsArg(opts.threads, bytes);
  if (opts.out === undefined) return native.copy_gather(memory, pfns, pageSize, undefined, threads) as Uint8Array;
  const out = u8Arg(opts.out, 'out');
  native.copy_gather(memory, pfns, pageSize, out, threads);
  return out.length === bytes ? out : out.subarray(0, bytes);
}

/**
 * The inverse of gatherPages: copies bytes `[i * pageSize, (i + 1) * pageSize)` of `pages` to page
 * `pfns[i]` of `memory`, in order of i (a repeated pfn ends with its last copy).
 * @throws TypeError for a wrong argument type or a detached buffer; RangeError for a bad
 *   `pageSize` or `threads`, `pages` not exactly `pfns.length * pageSize` bytes, a `memory`
 *   length that is not a multiple of `pageSize`, a pfn past the end of `memory`, `pages` or `pfns` overlapping `memory`. Nothing is written when it throws.
 */
export function scatterPages(memory: Uint8Array, pfns: Uint32Array, pages: Uint8Array, options: ScatterOptions): void {
  u8Arg(memory, 'memory');
  u32Arg(pfns, 'pfns');
  u8Arg(pages, 'pages');
  const opts = optionsArg<ScatterOptions>(options, 'options', ['pageSize', 'threads']);
  const pageSize = pageSizeArg(opts.pageSize);
  wholePages(memory, pageSize, 'memory');
  const threads = threadsArg(opts.threads, pages.length);
  native.copy_scatter(memory, pfns, pages, pageSize, threads);
}
