/**
 * understudy: checkpoint-and-failover engine for virtual machines.
 *
 * The package root exports the native kernels, the guests, replication and the checkpoint store.
 */
export { isa, supportedIsas, setIsa, isaWarning } from './kernels/cpu.js';
export type { IsaName } from './kernels/cpu.js';

// guest memory
export { allocateMemory, mapFile, GuestMemory, MAX_MEMORY_BYTES } from './kernels/memory.js';
export type { MapFileOptions } from './kernels/memory.js';

// KVM guest (lib/guest/kvm.ts)
export { kvmAvailable, kvmInfo, createKvmGuest, restoreKvmGuest, GuestFaultError } from './guest/kvm.js';
export type { KvmInfo, KvmDirtyMode, KvmGuestOptions, KvmRestoreOptions, KvmStats } from './guest/kvm.js';

// Delta codec (issue 3): lib/kernels/delta.ts
export {
  encodeDelta,
  applyDelta,
  encodePages,
  encodePagesSync,
  applyPages,
  applyPagesAsync,
  applyPagesWithUndo,
  inspectFrame,
  OWN_CODES_MIN_BYTES,
} from './kernels/delta.js';
export type { EncodeDeltaOptions, EncodePagesOptions, ApplyPagesOptions, ApplyPagesWithUndoOptions, PageUndo, FrameInfo } from './kernels/delta.js';

// checkpoint store
export { Store, CheckpointWriter, CheckpointError, StoreFormatError, SHARED_NAMESPACE, changedPages } from './store/index.js';
export type { StoreOptions, CheckpointInfo, PageMap, CommitOptions, WriterOptions, VerifyReport, VerifyProblem, ManifestMeta } from './store/index.js';

// QEMU guests (memory-only checkpoints through QMP and a shared memory-backend-file)
export { QmpClient, QmpError, captureQemu } from './guest/qemu.js';
export type { QemuCaptureOptions, QemuCapture } from './guest/qemu.js';
// kernels: bitmap, copy, hash
export { scanBitmap, countBitmap } from './kernels/bitmap.js';
export type { ScanBitmapOptions } from './kernels/bitmap.js';
export { gatherPages, scatterPages } from './kernels/copy.js';
export type { GatherOptions, ScatterOptions } from './kernels/copy.js';
export { hashPages, fingerprintPages, zeroPages, xxh3 } from './kernels/hash.js';
export type { PageOptions, HashPagesOptions } from './kernels/hash.js';

// replication (issue 5)
export { startPrimary, Primary, startBackup, Backup, followStream, StreamVerifier, readReference, generateKey, writeKeyFile, readKeyFile, OutputLog, ProtocolError, registerGuestBackend } from './replication/index.js';
export type { PrimaryOptions, EpochStats, Endpoint, BackupOptions, CommitInfo, FollowOptions, FollowResult, StreamRecord, Reference, PageKernels, ChainHash, CreateGuest, RestoreGuest } from './replication/index.js';
// guests (guest-sim branch)
export { createGuest, restoreGuest, resolveGuestOptions, SimGuest, GuestError, WORKLOADS, WORKLOAD_NAMES, recordLine, endLine, readProgress } from './guest/index.js';
export type { Guest, GuestOptions, RestoreOptions, GuestType, WorkloadName, DirtyLog, OutputRecord, GuestResult, GuestProgress, ResolvedGuestOptions } from './guest/index.js';
