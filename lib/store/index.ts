/**
 * The checkpoint store's public surface: open a store directory, write chains of incremental
 * checkpoints and deduplicated snapshots, read them back, verify, prune and compact.
 */
export { Store, CheckpointWriter, CheckpointError, SHARED_NAMESPACE, MAX_DELTA_DEPTH, FULL_MAP_EVERY } from './store.js';
export type { StoreOptions, CheckpointInfo, PageMap, CommitOptions, WriterOptions, VerifyReport, VerifyProblem } from './store.js';
export { StoreFormatError } from './format.js';
export { changedPages } from './diff.js';
export type { ManifestMeta } from './format.js';
