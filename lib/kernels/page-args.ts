/**
 * Argument checks shared by the page kernels (bitmap, copy, hash): each throws a TypeError for a
 * wrong type and a RangeError for a bad value, naming the argument and showing what was received.
 * The native layer repeats the checks that guard memory, as a backstop.
 */
import { availableParallelism } from 'node:os';

/** Short description of a value for error messages: its class or typeof. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  // An object that only borrows a typed array's prototype has none of its internal slots.
  if (typeof v === 'object' && v instanceof Object.getPrototypeOf(Uint8Array) && !ArrayBuffer.isView(v)) {
    return 'an object that is not a typed array';
  }
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}...` : v)}`;
  return typeof v === 'number' || typeof v === 'bigint' ? `${typeof v} ${String(v)}` : typeof v;
}

/** True when `view`'s ArrayBuffer was transferred away or its memory was closed. */
export function isDetached(view: ArrayBufferView): boolean {
  if (view.byteLength !== 0) return false;
  const buf = view.buffer as ArrayBuffer & { detached?: boolean };
  if (typeof buf.detached === 'boolean') return buf.detached;
  try {
    // Node 20 has no ArrayBuffer.prototype.detached; constructing a view on a detached buffer throws.
    new Uint8Array(buf);
    return false;
  } catch {
    return true;
  }
}

/** TypeError when `v` is detached (transferred away, or its guest memory closed). */
export function notDetached(v: ArrayBufferView, name: string): void {
  if (isDetached(v)) throw new TypeError(`\`${name}\` is detached (its buffer was transferred or its memory closed)`);
}

export function u8Arg(v: unknown, name: string): Uint8Array {
  if (!(v instanceof Uint8Array) || !ArrayBuffer.isView(v)) throw new TypeError(`\`${name}\` must be a Uint8Array, got ${describe(v)}`);
  notDetached(v, name);
  return v;
}

export function u32Arg(v: unknown, name: string): Uint32Array {
  if (!(v instanceof Uint32Array) || !ArrayBuffer.isView(v)) throw new TypeError(`\`${name}\` must be a Uint32Array, got ${describe(v)}`);
  notDetached(v, name);
  return v;
}

/**
 * An options object (undefined: none). With `known`, an own key outside it is refused, so a
 * misspelt option (`Seed`, `writeable`) fails loudly instead of being ignored.
 */
export function optionsArg<T extends object>(v: unknown, name = 'options', known?: readonly string[]): Partial<T> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object') throw new TypeError(`\`${name}\` must be an object, got ${describe(v)}`);
  if (known !== undefined) {
    for (const key of Object.keys(v)) {
      if (!known.includes(key)) {
        throw new TypeError(`\`${name}\` has no option \`${key}\` (known: ${known.join(', ')})`);
      }
    }
  }
  return v as Partial<T>;
}

export function intArg(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`\`${name}\` must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`\`${name}\` must be an integer from ${min} to ${max}, got ${v}`);
  }
  return v;
}

/** Page size: a power of two from 512 to 1 MiB. */
export function pageSizeArg(v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`\`pageSize\` must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 512 || v > 1048576 || (v & (v - 1)) !== 0) {
    throw new RangeError(`\`pageSize\` must be a power of two from 512 to 1048576, got ${v}`);
  }
  return v;
}

/** `data` must hold whole pages. */
export function wholePages(data: Uint8Array, pageSize: number, name = 'data'): number {
  if (data.length % pageSize !== 0) {
    throw new RangeError(`\`${name}\` length must be a multiple of \`pageSize\` (${pageSize}), got ${data.length}`);
  }
  return data.length / pageSize;
}

/** Inputs from this size on use every core unless `threads` says otherwise. */
export const PARALLEL_MIN_BYTES = 4 * 1024 * 1024;

/** Thread count: the caller's (1 to 256) or, by default, all cores for inputs of 4 MiB and more. */
export function threadsArg(v: unknown, bytes: number): number {
  if (v === undefined) return bytes >= PARALLEL_MIN_BYTES ? availableParallelism() : 1;
  return intArg(v, 'threads', 1, 256);
}
