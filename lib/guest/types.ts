/**
 * The Guest interface: the seam every backend (kvm, sim; later xen, qemu) fills.
 *
 * A guest runs a deterministic workload (lib/guest/workloads.ts names them) over guest memory
 * that is mapped into this process. The checkpoint engine pauses it, takes the dirty log, copies
 * the dirty pages and the CPU state, drains its output, and resumes it.
 */
import type { EventEmitter } from 'node:events';
import type { GuestMemory } from '../kernels/memory.js';

export type GuestType = 'kvm' | 'sim';
export type WorkloadName = 'uniform' | 'hotset' | 'sequential' | 'sparse' | 'memcheck' | 'kv';

/** What createGuest needs. */
export interface GuestOptions {
  /** 'auto' (default) picks kvm where it works and sim otherwise. */
  type?: GuestType | 'auto';
  workload: WorkloadName;
  seed?: number | bigint;
  /** Steps per vCPU. */
  steps?: number;
  /** Guest RAM in MiB (default 64). */
  memoryMiB?: number;
  vcpus?: number;
  /** Mix in the host clock supplied at each pause (re-execution takes another path). */
  nondeterministic?: boolean;
  /** Start running at once (default true). */
  start?: boolean;
  /**
   * Workload parameters: by name (see lib/guest/workloads.ts `WORKLOADS[name].params`), or as
   * the raw control->params array (index meanings in native/workloads/abi.h). Unset or 0 takes
   * the workload's default.
   */
  params?: Record<string, number> | Array<number | bigint>;
  /** sim only: software dirty tracking on (default). Off, takeDirty() reports every page. */
  dirtyTracking?: boolean;
}

/**
 * createGuest's options after validation, with every default filled in: what a backend
 * (createSimGuest, the KVM module's createKvmGuest) receives. `params` is control->params
 * (effective values, native/workloads/abi.h); pass workloadId..params to the native
 * guest_setup(memory, workloadId, vcpus, seed, steps, flags, params) to fill the control page.
 */
export interface ResolvedGuestOptions {
  workloadId: number;
  memBytes: number;
  vcpus: number;
  seed: bigint;
  steps: number;
  /** enum us_flags: 1 = nondeterministic. */
  flags: number;
  params: number[];
  dirtyTracking: boolean;
  start: boolean;
  /** Set by createGuest when it chose the backend under 'auto'. */
  typeReason?: string;
}

/** A restored guest: memory image plus the blob saveCpu() returned. */
export interface RestoreOptions {
  type?: GuestType | 'auto';
  memoryImage: Uint8Array;
  cpu: Uint8Array;
  start?: boolean;
  /** sim only: software dirty tracking on (default). */
  dirtyTracking?: boolean;
}

/** Pages written since the previous takeDirty(). */
export interface DirtyLog {
  /** Bit i = page i (bit i&7 of byte i>>3), length ceil(pageCount/8). */
  bitmap: Uint8Array;
  /** Indices of the set bits, ascending. */
  pfns: Uint32Array;
}

/** One output record, with the hash chain as in `understudy run --records`. */
export interface OutputRecord {
  seq: number;
  /** The record's data bytes. */
  data: Uint8Array;
  /** 16 hex digits: XXH3-64 (seed 0) of the previous chain (8 bytes LE) followed by data. */
  chain: string;
}

export interface GuestResult {
  /** 16 hex digits. */
  final: string;
}

export interface Guest extends EventEmitter {
  readonly type: GuestType;
  /** Why this backend was chosen when the caller asked for 'auto' (else undefined). */
  readonly typeReason?: string;
  readonly workload: WorkloadName;
  readonly pageSize: number;
  readonly pageCount: number;
  readonly vcpus: number;
  readonly memory: GuestMemory;
  /** Starts the vCPUs (no-op if running). */
  start(): void;
  /** Resolves once no vCPU can write guest memory. */
  pause(): Promise<void>;
  /** Lets the vCPUs go on (after setClock in nondeterministic mode). */
  resume(): void;
  /** The host value the guest mixes in at the next resume (nondeterministic mode). */
  setClock(value: bigint): void;
  /** Pages written since the last call, including pages the host itself wrote; clears the log. */
  takeDirty(): DirtyLog;
  /**
   * Output records published since the last call (safe while running or paused). The first call
   * makes its caller the owner of the stream: from then on the guest no longer drains its output
   * for 'output' listeners on its own, and they get what takeOutput() returns, on the next tick.
   */
  takeOutput(): OutputRecord[];
  /** Versioned, checksummed blob of all vCPU state (call while paused). */
  saveCpu(): Uint8Array;
  /** Null until the workload has finished. */
  readonly result: GuestResult | null;
  /** Resolves when the workload finishes (rejects on a guest fault). */
  wait(): Promise<GuestResult>;
  /** Stops the vCPUs and releases the VM and its memory. */
  close(): Promise<void>;
  /**
   * 'output': every output record, once, in seq order, as it leaves the guest: when takeOutput()
   * returns it, or, while nobody has called takeOutput(), when the guest drains its output itself
   * (every 10 ms while it runs, at every pause(), before 'exit' and at close()).
   * 'exit': the workload finished. 'error': a fault, triple fault or panic (emitted only when
   * someone listens; wait() rejects with it either way).
   */
  on(event: 'output', listener: (record: OutputRecord) => void): this;
  on(event: 'exit', listener: (result: GuestResult) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}
