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

// replication (issue 5)
export { startPrimary, Primary, startBackup, Backup, followStream, StreamVerifier, readReference, generateKey, writeKeyFile, readKeyFile, OutputLog, ProtocolError } from './replication/index.js';
export type { PrimaryOptions, EpochStats, Endpoint, BackupOptions, CommitInfo, FollowOptions, FollowResult, StreamRecord, Reference, PageKernels, ChainHash } from './replication/index.js';
