// Test-only: for child processes (node --import tsx --import this). Until the native kernels are
// on main, lib/store/kernels.ts is served by test/helpers/kernels-child.ts (real kernels when the
// build has them, else the TypeScript stand-in).
import { register } from 'node:module';
register('./standin-loader.mjs', import.meta.url);
