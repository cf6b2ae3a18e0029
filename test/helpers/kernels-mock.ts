/**
 * Until the native kernels are on main, store tests mock lib/store/kernels.ts with this: the real
 * kernels when the build has them, else the plain TypeScript stand-in.
 */
import * as standin from './kernels-standin.js';

export function mockKernels(orig: { kernels(): unknown }) {
  return {
    kernels: () => {
      try {
        return orig.kernels();
      } catch {
        return standin;
      }
    },
  };
}
