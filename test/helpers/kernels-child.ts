/** Test-only wrapper served in place of lib/store/kernels.ts in child processes (see standin-loader.mjs). */
import * as orig from '../../lib/store/kernels.js';
import { mockKernels } from './kernels-mock.js';

export const kernels = mockKernels(orig).kernels;
