/**
 * Guest memory: page-aligned RAM from a memfd, or a mapped file, seen from JavaScript as a
 * zero-copy Uint8Array. These are the buffers every kernel and every guest works on.
 *
 * close() detaches the underlying ArrayBuffer: every view taken from `view` (subarray included)
 * then has length 0, so a late access reads nothing instead of touching unmapped memory. A guest
 * that still runs on the memory keeps its own reference to the mapping until it is closed.
 */
import { native } from '../native.js';

interface NativeMemoryHandle {
  readonly buffer: ArrayBuffer;
  readonly byteLength: number;
  readonly fd: number;
  readonly closed: boolean;
  close(): void;
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

const MAX_BYTES = 2 ** 46;

/**
 * Allocates `bytes` of zeroed, page-aligned guest RAM from a memfd (rounded up to whole pages).
 * @throws TypeError if `bytes` is not a number; RangeError if it is not an integer in [0, 2^46];
 *   Error with `code`/`errno`/`syscall` if the system refuses.
 */
export function allocateMemory(bytes: number): GuestMemory {
  if (typeof bytes !== 'number') throw new TypeError(`\`bytes\` must be a number, got ${typeof bytes}`);
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > MAX_BYTES) {
    throw new RangeError(`\`bytes\` must be an integer from 0 to ${MAX_BYTES}, got ${bytes}`);
  }
  return new GuestMemory(native.memory_allocate(bytes) as NativeMemoryHandle);
}

export interface MapFileOptions {
  /** Map shared and writable (writes reach the file). Default false: a private copy-on-write view. */
  writable?: boolean;
}

/**
 * Maps a whole regular file. With `writable: false` (the default) writes through the view stay
 * private to this process and never reach the file.
 * @throws TypeError for a non-string path; Error with `code` (ENOENT, EACCES, ...) from the system.
 */
export function mapFile(path: string, options: MapFileOptions = {}): GuestMemory {
  if (typeof path !== 'string') throw new TypeError(`\`path\` must be a string, got ${typeof path}`);
  if (options === null || typeof options !== 'object') throw new TypeError('`options` must be an object');
  if (options.writable !== undefined && typeof options.writable !== 'boolean') {
    throw new TypeError(`\`options.writable\` must be a boolean, got ${typeof options.writable}`);
  }
  return new GuestMemory(native.memory_map_file(path, options.writable === true) as NativeMemoryHandle);
}
