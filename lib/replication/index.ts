/**
 * Replication: wire protocol, primary, backup, client. See docs/FORMAT.md "replication wire protocol".
 */
export { startPrimary, Primary } from './primary.js';
export type { PrimaryOptions, EpochStats, Endpoint } from './primary.js';
export { startBackup, Backup } from './backup.js';
export type { BackupOptions, CommitInfo } from './backup.js';
export { followStream, StreamVerifier, readReference } from './client.js';
export type { FollowOptions, FollowResult, StreamRecord, Reference } from './client.js';
export { generateKey, writeKeyFile, readKeyFile } from './auth.js';
export { registerGuestBackend } from './kernels.js';
export type { PageKernels, ChainHash, CreateGuest, RestoreGuest } from './kernels.js';
export { OutputLog } from '../checkpoint/output-buffer.js';
export { ProtocolError } from '../errors/protocol-error.js';
