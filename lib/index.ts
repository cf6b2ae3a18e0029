/**
 * understudy: checkpoint-and-failover engine for virtual machines.
 *
 * The package root exports the native kernels, the guests, replication and the checkpoint store.
 */
export { isa, supportedIsas, setIsa, isaWarning } from './kernels/cpu.js';
export type { IsaName } from './kernels/cpu.js';

// Delta codec (issue 3): lib/kernels/delta.ts
export {
  encodeDelta,
  applyDelta,
  encodePages,
  encodePagesSync,
  applyPages,
  applyPagesAsync,
  inspectFrame,
} from './kernels/delta.js';
export type { EncodeDeltaOptions, EncodePagesOptions, ApplyPagesOptions, FrameInfo } from './kernels/delta.js';
