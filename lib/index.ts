/**
 * understudy: checkpoint-and-failover engine for virtual machines.
 *
 * The package root exports the native kernels, the guests, replication and the checkpoint store.
 */
export { isa, supportedIsas, setIsa, isaWarning } from './kernels/cpu.js';
export type { IsaName } from './kernels/cpu.js';

// guest memory
export { allocateMemory, mapFile, GuestMemory } from './kernels/memory.js';
export type { MapFileOptions } from './kernels/memory.js';
