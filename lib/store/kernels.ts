/**
 * The native kernels the store uses, looked up on the package root at call time.
 *
 * The store never touches page bytes in a TypeScript loop: hashing, zero tests, gathering,
 * scattering and the XOR delta codec are native batch calls. They are read lazily from the package
 * root's namespace so that the store's modules can be loaded in any order (lib/index.ts also
 * re-exports the store), and so that a build without a kernel fails with a clear message instead
 * of an import error.
 */
import * as root from '../index.js';

export interface StoreKernels {
  fingerprintPages(data: Uint8Array, options: { pageSize: number }): Uint8Array;
  zeroPages(data: Uint8Array, options: { pageSize: number }): Uint8Array;
  scanBitmap(bitmap: Uint8Array): Uint32Array;
  gatherPages(memory: Uint8Array, pfns: Uint32Array, options: { pageSize: number }): Uint8Array;
  scatterPages(memory: Uint8Array, pfns: Uint32Array, pages: Uint8Array, options: { pageSize: number }): void;
  encodeDelta(prev: Uint8Array, next: Uint8Array): Uint8Array;
  applyDelta(target: Uint8Array, delta: Uint8Array): void;
}

const names: (keyof StoreKernels)[] = [
  'fingerprintPages', 'zeroPages', 'scanBitmap', 'gatherPages', 'scatterPages', 'encodeDelta', 'applyDelta',
];

let cached: StoreKernels | null = null;

/** The kernels, or an Error naming the first one this build lacks. */
export function kernels(): StoreKernels {
  if (cached) return cached;
  const ns = root as unknown as Record<string, unknown>;
  for (const n of names) {
    if (typeof ns[n] !== 'function') throw new Error(`the store needs the native kernel \`${n}\`, which this build does not export`);
  }
  cached = ns as unknown as StoreKernels;
  return cached;
}
