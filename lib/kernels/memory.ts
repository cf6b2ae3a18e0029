/**
 * Guest memory: page-aligned RAM from a memfd, or a mapped file, seen from JavaScript as a
 * zero-copy Uint8Array. These are the buffers every kernel and every guest works on.
 *
 * close() detaches the underlying ArrayBuffer: every view taken from `view` (subarray included)
 * then has length 0, so a late access reads nothing instead of touching unmapped memory. A guest
 * that still runs on the memory keeps its own reference to the mapping until it is closed.
 */
import { constants } from 'node:buffer';
import { markAsUntransferable } from 'node:worker_threads';
import { native } from '../native.js';
import { optionsArg } from './page-args.js';

interface NativeMemoryHandle {
  readonly buffer: ArrayBuffer;
  readonly byteLength: number;
  readonly fd: number;
  readonly closed: boolean;
  close(): void;
}

/** The ArrayBuffers behind live and closed GuestMemory views (see holdForAsync). */
const guestBuffers = new WeakSet<ArrayBufferLike>();

/**
 * Whether the async calls stage plain ArrayBuffers on this runtime (see holdForAsync): where
 * `ArrayBuffer.prototype.transfer()` exists and detaches a buffer marked untransferable (Node
 * 22), one builtin call would free memory under the worker. Node 24 gives marked buffers a detach
 * key (transfer() and the web streams throw); Node 20 has no transfer(), and its web streams
 * (a bytes stream's enqueue() and BYOB read() take the buffer) are the one way left to detach a
 * marked buffer there: not defended, as staging costs a quarter of encodePages' speed (see
 * docs/kernels.md). Probed once, on a buffer of our own.
 */
const transferIgnoresMark: boolean = (() => {
  const probe = new ArrayBuffer(8);
  markAsUntransferable(probe);
  const transfer = (probe as ArrayBuffer & { transfer?: () => ArrayBuffer }).transfer;
  if (typeof transfer !== 'function') return false;
  try {
    transfer.call(probe);
    return true;
  } catch {
    return false;
  }
})();

let stageForced = false;

/**
 * @internal How the async calls hold plain ArrayBuffers worked on in place on this runtime:
 * `'mark'` (marked untransferable, the pool works on them after the call returns) or `'stage'`
 * (the native side works on copies, see holdForAsync). Tests force `'stage'` to cover it on any
 * runtime.
 */
export function asyncHoldMode(force?: 'stage' | 'auto'): 'mark' | 'stage' {
  if (force !== undefined) stageForced = force === 'stage';
  return stageForced || transferIgnoresMark ? 'stage' : 'mark';
}

/**
 * Makes sure the native pool never works on memory that can go away under it after the call has
 * returned (encodePages, applyPagesAsync): guest memory is pinned by the native side (close()
 * waits for running batches); a SharedArrayBuffer is never detached and never shrinks; a
 * resizable ArrayBuffer could shrink and is refused. A plain ArrayBuffer can be detached (a
 * transfer, a web stream) and its memory freed under the worker, which crashed the process:
 *
 * - The `copied` views (read-only inputs small next to the work: pfns, a frame) are copied into
 *   shared memory on every runtime, never marked: a mark is permanent, and on Node 24 a marked
 *   buffer of native memory (a frame from encodePages is one) makes Node abort when it frees it
 *   at exit (its cleanup hook detaches it without the key: "FATAL ERROR: v8::FromJust").
 * - The `views` worked on in place (shadow, pages, replica) are marked untransferable
 *   (`worker_threads.markAsUntransferable`, as Node marks its own pooled buffers): that stops
 *   postMessage and structuredClone everywhere, and every way on Node 24.
 * - Where transfer() ignores the mark (Node 22, see transferIgnoresMark) `start` is told which of
 *   them to stage (one flag per view, in order): the native side copies the pages it works on
 *   (and pfns, frame) on the calling thread, the pool works on the copies, and the results are
 *   written back on the calling thread when it is done, if the buffer is still attached (else the
 *   call rejects). The event loop stays free while the pool works; the copies cost about three
 *   memcpy passes over the batch (512-page encodes: ~0.85x the in-place speed).
 */
export function holdForAsync<T, C extends Record<string, ArrayBufferView>>(
  views: Record<string, ArrayBufferView>,
  copied: C,
  start: (copied: C, stage: readonly boolean[]) => Promise<T>,
): Promise<T> {
  const plain = (name: string, view: ArrayBufferView): boolean => {
    const buffer = view.buffer;
    if (guestBuffers.has(buffer) || buffer instanceof SharedArrayBuffer) return false;
    if ((buffer as ArrayBuffer & { resizable?: boolean }).resizable === true) {
      throw new TypeError(
        `\`${name}\` is a view of a resizable ArrayBuffer, which could shrink while the native pool works on it: use a fixed-length buffer, or the synchronous call`,
      );
    }
    return true;
  };
  // One flag per view worked on in place: a plain ArrayBuffer.
  const inPlace = Object.entries(views).map(([name, view]) => plain(name, view));
  const held = Object.values(views).filter((_, i) => inPlace[i]).map((v) => v.buffer);
  // Staged, the native side copies everything itself (and sees every argument as given, to refuse
  // an overlap).
  if (asyncHoldMode() === 'stage' && held.length > 0) return start(copied, inPlace);
  // A copied view in the buffer of one worked on in place is held with it (and the native side
  // must see both to refuse an overlap): only the others are copied.
  const copies: Record<string, ArrayBufferView> = { ...copied };
  for (const [name, view] of Object.entries(copied)) {
    if (plain(name, view) && !held.includes(view.buffer)) copies[name] = sharedCopy(view);
  }
  // Marked once the call has accepted its arguments (a refused call leaves them as they were),
  // in the same turn of the event loop, so no transfer can come in between.
  const result = start(copies as C, inPlace.map(() => false));
  for (const buffer of held) markAsUntransferable(buffer as ArrayBuffer);
  return result;
}

/**
 * A copy of `view` (same element type and length) in a SharedArrayBuffer of its own: a plain
 * Uint8Array or Uint32Array whatever the view's class (a Node Buffer's constructor is the
 * deprecated `Buffer()`, DEP0005).
 */
function sharedCopy<V extends ArrayBufferView>(view: V): V {
  const sab = new SharedArrayBuffer(view.byteLength);
  new Uint8Array(sab).set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  return (view instanceof Uint32Array ? new Uint32Array(sab) : new Uint8Array(sab)) as unknown as V;
}

/** A mapping of guest memory. */
export class GuestMemory {
  /** @internal the native handle, passed to native guests and kernels */
  readonly handle: NativeMemoryHandle;
  readonly #view: Uint8Array;

  /** @internal use allocateMemory() or mapFile() */
  constructor(handle: NativeMemoryHandle) {
    this.handle = handle;
    this.#view = new Uint8Array(handle.buffer);
    guestBuffers.add(handle.buffer);
  }

  /** The whole mapping as a zero-copy view (length 0 once closed). */
  get view(): Uint8Array {
    return this.#view;
  }

  /** Size in bytes (0 once closed). */
  get byteLength(): number {
    return this.handle.byteLength;
  }

  /** The memfd or file descriptor behind the mapping (-1 once closed). */
  get fd(): number {
    return this.handle.fd;
  }

  get closed(): boolean {
    return this.handle.closed;
  }

  /** Unmaps this handle's view; idempotent. */
  close(): void {
    this.handle.close();
  }
}

/**
 * The largest guest memory or mapped file: what one ArrayBuffer may hold in this Node.js
 * (`buffer.constants.MAX_LENGTH`: 4 GiB on Node 20, 2^53 - 1 from Node 22), at most 2^46.
 */
export const MAX_MEMORY_BYTES = Math.min(constants.MAX_LENGTH, 2 ** 46);

/**
 * @internal A guest's RAM is one such buffer: a RangeError naming `memoryMiB` when `bytes` do not
 * fit in one here (the guests check this before allocateMemory, whose message is about `bytes`).
 */
export function checkGuestMemoryBytes(bytes: number, backend: 'sim' | 'kvm'): void {
  if (bytes <= MAX_MEMORY_BYTES) return;
  const most = Math.floor(MAX_MEMORY_BYTES / 1048576);
  throw new RangeError(
    `\`memoryMiB\` must be at most ${most} for a ${backend} guest in this Node.js (one buffer holds ${MAX_MEMORY_BYTES} bytes), got ${bytes / 1048576}`,
  );
}

/**
 * Allocates `bytes` of zeroed, page-aligned guest RAM from a memfd (rounded up to whole pages).
 * @throws TypeError if `bytes` is not a number; RangeError if it is not an integer from 0 to
 *   {@link MAX_MEMORY_BYTES} (rounded up to whole pages); Error with `code`/`errno`/`syscall` if
 *   the system refuses.
 */
export function allocateMemory(bytes: number): GuestMemory {
  if (typeof bytes !== 'number') throw new TypeError(`\`bytes\` must be a number, got ${typeof bytes}`);
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > MAX_MEMORY_BYTES) {
    throw new RangeError(`\`bytes\` must be an integer from 0 to ${MAX_MEMORY_BYTES}, got ${bytes}`);
  }
  return new GuestMemory(native.memory_allocate(bytes, MAX_MEMORY_BYTES) as NativeMemoryHandle);
}

export interface MapFileOptions {
  /** Map shared and writable (writes reach the file). Default false: a private copy-on-write view. */
  writable?: boolean;
}

/**
 * Maps a whole regular file. With `writable: false` (the default) writes through the view stay
 * private to this process and never reach the file.
 * @throws TypeError for a non-string path, a path with a NUL byte or an unknown option;
 *   RangeError for a file larger than {@link MAX_MEMORY_BYTES}; Error with `code` (ENOENT,
 *   EACCES, EISDIR, EINVAL for a file that is not a regular one, ...) from the system.
 */
export function mapFile(path: string, options: MapFileOptions = {}): GuestMemory {
  if (typeof path !== 'string') throw new TypeError(`\`path\` must be a string, got ${typeof path}`);
  if (path.includes('\0')) throw new TypeError('`path` must not contain a NUL byte');
  const o = optionsArg<MapFileOptions>(options, 'options', ['writable']);
  if (o.writable !== undefined && typeof o.writable !== 'boolean') {
    throw new TypeError(`\`options.writable\` must be a boolean, got ${typeof o.writable}`);
  }
  return new GuestMemory(native.memory_map_file(path, o.writable === true, MAX_MEMORY_BYTES) as NativeMemoryHandle);
}
