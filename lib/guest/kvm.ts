/**
 * The KVM guest: an in-process micro-VM over /dev/kvm (native/vmm) running the bare-metal workload
 * payload, with hardware dirty logging (manual-protect bitmap by default, or the per-vCPU dirty
 * ring), pause/resume by kicking the vCPU threads, and a versioned CPU state blob for
 * save/restore (docs/FORMAT.md "KVM guest CPU state blob").
 *
 * lib/guest/index.ts picks this backend for `type: 'kvm'` (or 'auto' where kvmAvailable().ok).
 */
import { EventEmitter } from 'node:events';
import { native } from '../native.js';
import { allocateMemory, checkGuestMemoryBytes, type GuestMemory } from '../kernels/memory.js';
import type { DirtyLog, Guest, GuestOptions, GuestResult, OutputRecord, ResolvedGuestOptions, RestoreOptions, WorkloadName } from './types.js';
import { WORKLOADS, checkWorkload, resolveParams, workloadById } from './workloads.js';
import { GuestError } from './sim.js';
import { OutputFeed } from './output-feed.js';

/** How the KVM guest tracks dirty pages ('none' only for benchmarks: takeDirty() then reports host writes only). */
export type KvmDirtyMode = 'bitmap' | 'ring' | 'none';

/** What /dev/kvm offers on this machine (see `understudy info`). */
export interface KvmInfo {
  /** /dev/kvm opens and a VM can be created. */
  ok: boolean;
  /** Why not, with advice, when !ok. */
  reason?: string;
  apiVersion: number;
  /** KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: fetch, then clear only what was fetched. */
  manualProtect: boolean;
  manualProtectReason?: string;
  /** KVM_CAP_DIRTY_LOG_RING: per-vCPU rings of dirty pages. */
  dirtyRing: boolean;
  /** Largest ring in bytes (16 bytes per entry). */
  dirtyRingMaxBytes: number;
  dirtyRingReason?: string;
  maxVcpus: number;
  xsaveSize: number;
}

/** Options of the KVM backend beyond the common ones. */
export interface KvmGuestOptions extends GuestOptions {
  /** Dirty tracking: 'bitmap' (default, measured faster here) or 'ring'. */
  dirty?: KvmDirtyMode;
  /** Dirty ring entries per vCPU (power of two, default 65536). */
  ringEntries?: number;
  /** @internal the VMM's own test entries (ids >= 0xF0, native/payload/selftest.c) */
  testEntry?: number;
  /** @internal control-page params[0..7] for a test entry */
  rawParams?: Array<number | bigint>;
}

/** What lib/guest/index.ts passes after resolving the common options (sim's tracking flag aside). */
interface ResolvedCreate extends Omit<ResolvedGuestOptions, 'dirtyTracking'> {
  dirty?: KvmDirtyMode;
  ringEntries?: number;
}

export interface KvmRestoreOptions extends RestoreOptions {
  dirty?: KvmDirtyMode;
  ringEntries?: number;
  typeReason?: string;
}

/** Counters of one VM. */
export interface KvmStats {
  exits: number;
  ioExits: number;
  doorbells: number;
  kicks: number;
  ringFull: number;
  dirty: KvmDirtyMode;
}

interface NativeVm {
  start(): void;
  pause(): number;
  resume(): void;
  take_dirty(bitmap: Uint8Array): Uint32Array;
  take_output(): { records: Uint8Array; chains: BigUint64Array };
  save_cpu(): Uint8Array;
  set_clock(v: bigint): void;
  stats(): KvmStats;
  close(): void;
  error(): string | null;
  final(): bigint | null;
  panic_code(): bigint;
}

const PAGE = 4096;
const RECORD_BYTES = 64;
const MIN_MIB = 8;
/** The KVM backend's own cap on guest RAM (MiB); one buffer of this Node.js may hold less. */
export const KVM_MAX_MEMORY_MIB = 9 * 1024;
const MAX_MIB = KVM_MAX_MEMORY_MIB;
const MAX_VCPUS = 16;

let probed: KvmInfo | undefined;

/** Full probe of /dev/kvm (cached). */
export function kvmInfo(): KvmInfo {
  probed ??= native.kvm_probe() as KvmInfo;
  return probed;
}

/** Whether the KVM guest can run here, and if not why. */
export function kvmAvailable(): { ok: boolean; reason?: string; dirtyRing?: boolean; manualProtect?: boolean } {
  const i = kvmInfo();
  if (!i.ok) return { ok: false, reason: i.reason };
  return { ok: true, dirtyRing: i.dirtyRing, manualProtect: i.manualProtect };
}

/**
 * A kvm guest's failure: a workload panic (`code` 'GUEST_PANIC', `panicCode` gpa | reason, the
 * message the sim guest gives) or a fault, triple fault or VMM failure ('GUEST_FAULT', 0n). A
 * GuestError, as the sim guest's are.
 */
export class GuestFaultError extends GuestError {
  constructor(message: string, panicCode = 0n) {
    super(message, panicCode);
    this.name = 'GuestFaultError';
  }
}

const hex16 = (v: bigint) => v.toString(16).padStart(16, '0');

class KvmGuest extends EventEmitter implements Guest {
  readonly type = 'kvm' as const;
  readonly typeReason?: string;
  readonly workload: WorkloadName;
  readonly pageSize = PAGE;
  readonly pageCount: number;
  readonly vcpus: number;
  readonly memory: GuestMemory;
  /** Nanoseconds the last pause() took (call to all vCPUs parked). */
  lastPauseNs = 0;
  #vm: NativeVm | null;
  #result: GuestResult | null = null;
  #error: Error | null = null;
  #waiters: Array<{ resolve: (r: GuestResult) => void; reject: (e: Error) => void }> = [];
  readonly #output = new OutputFeed(this, () => (this.#vm ? this.#readOutput(this.#vm) : null));

  constructor(memory: GuestMemory, vcpus: number, create: (onEvent: (kind: string) => void) => NativeVm, typeReason?: string) {
    super();
    this.memory = memory;
    this.typeReason = typeReason;
    // The control page says which workload runs (test entries report as 'uniform').
    this.workload = workloadById(new DataView(memory.view.buffer, memory.view.byteOffset).getUint32(0x10008, true)) ?? 'uniform';
    this.pageCount = memory.byteLength / PAGE;
    this.vcpus = vcpus;
    this.#vm = create((kind) => this.#onEvent(kind));
  }

  #onEvent(kind: string): void {
    const vm = this.#vm;
    if (!vm) return;
    if (kind === 'finished') {
      const f = vm.final();
      if (f === null || this.#result) return;
      this.#result = { final: hex16(f) };
      this.#output.drain();
      this.#output.stop();
      for (const w of this.#waiters.splice(0)) w.resolve(this.#result);
      this.emit('exit', this.#result);
    } else if (kind === 'error') {
      if (this.#error) return;
      this.#error = new GuestFaultError(vm.error() ?? 'the guest failed', vm.panic_code());
      this.#output.drain();
      this.#output.stop();
      for (const w of this.#waiters.splice(0)) w.reject(this.#error);
      if (this.listenerCount('error') > 0) this.emit('error', this.#error);
    }
  }

  #native(): NativeVm {
    if (!this.#vm) throw new Error('the guest is closed');
    return this.#vm;
  }

  get result(): GuestResult | null {
    // The event may still be queued behind the caller's synchronous work: ask the VM directly.
    if (!this.#result && this.#vm && this.#vm.final() !== null) this.#onEvent('finished');
    return this.#result;
  }

  /** The fault that stopped the guest, if any. */
  get error(): Error | null {
    if (!this.#error && this.#vm && this.#vm.error() !== null) this.#onEvent('error');
    return this.#error;
  }

  start(): void {
    this.#native().start();
  }

  pause(): Promise<void> {
    try {
      this.lastPauseNs = this.#native().pause();
      this.#output.drain();
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  resume(): void {
    this.#native().resume();
  }

  setClock(value: bigint): void {
    if (typeof value !== 'bigint') throw new TypeError(`\`value\` must be a bigint, got ${typeof value}`);
    if (value < 0n || value >= 1n << 64n) throw new RangeError(`\`value\` must be from 0 to 2^64-1, got ${value}`);
    this.#native().set_clock(value);
  }

  takeDirty(): DirtyLog {
    const bitmap = new Uint8Array(Math.ceil(this.pageCount / 8));
    const pfns = this.#native().take_dirty(bitmap);
    return { bitmap, pfns };
  }

  takeOutput(): OutputRecord[] {
    this.#native();
    return this.#output.pull();
  }

  #readOutput(vm: NativeVm): OutputRecord[] {
    const { records, chains } = vm.take_output();
    const dv = new DataView(records.buffer, records.byteOffset, records.byteLength);
    const out: OutputRecord[] = new Array(chains.length);
    for (let i = 0; i < chains.length; i++) {
      const o = i * RECORD_BYTES;
      const len = dv.getUint32(o + 8, true);
      out[i] = {
        seq: Number(dv.getBigUint64(o, true)),
        data: records.slice(o + 16, o + 16 + len),
        chain: hex16(chains[i]!),
      };
    }
    return out;
  }

  saveCpu(): Uint8Array {
    return this.#native().save_cpu();
  }

  /** Exit and kick counters of the VM. */
  stats(): KvmStats {
    return this.#native().stats();
  }

  wait(): Promise<GuestResult> {
    if (this.#result) return Promise.resolve(this.#result);
    if (this.#error) return Promise.reject(this.#error);
    if (!this.#vm) return Promise.reject(new Error('the guest is closed'));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  async close(): Promise<void> {
    const vm = this.#vm;
    if (!vm) return;
    this.#output.drain(); // the last records, to 'output' listeners (when nobody takes them)
    this.#output.stop();
    this.#vm = null;
    vm.close();
    this.memory.close();
    const err = new Error('the guest was closed before it finished');
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }
}

function checkDirty(dirty: unknown, ringEntries: unknown): void {
  if (dirty !== undefined && dirty !== 'bitmap' && dirty !== 'ring' && dirty !== 'none') {
    throw new RangeError(`\`dirty\` must be 'bitmap', 'ring' or 'none', got ${String(dirty)}`);
  }
  if (ringEntries !== undefined) {
    if (typeof ringEntries !== 'number') throw new TypeError(`\`ringEntries\` must be a number, got ${typeof ringEntries}`);
    // The kernel wants the ring (16 bytes an entry) to fill at least one page: 256 entries.
    if (!Number.isInteger(ringEntries) || ringEntries < 256 || ringEntries > 1 << 20 || (ringEntries & (ringEntries - 1)) !== 0) {
      throw new RangeError(`\`ringEntries\` must be a power of two from 256 to 1048576, got ${ringEntries}`);
    }
  }
}

function intOpt(name: string, v: unknown, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw new TypeError(`\`${name}\` must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`\`${name}\` must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}

function u64Opt(name: string, v: unknown, dflt: bigint): bigint {
  if (v === undefined) return dflt;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`\`${name}\` must be a non-negative safe integer, got ${v}`);
    return BigInt(v);
  }
  if (typeof v !== 'bigint') throw new TypeError(`\`${name}\` must be a number or bigint, got ${typeof v}`);
  if (v < 0n || v >= 1n << 64n) throw new RangeError(`\`${name}\` must be from 0 to 2^64-1, got ${v}`);
  return v;
}

/**
 * Creates a KVM guest running `opts.workload` (lib/guest/index.ts createGuest({ type: 'kvm' })
 * calls this with the options already resolved).
 * @throws TypeError/RangeError for bad options; Error (with code/errno/syscall and advice) when
 *   KVM refuses.
 */
export async function createKvmGuest(opts: KvmGuestOptions | ResolvedCreate): Promise<Guest> {
  if (opts === null || typeof opts !== 'object') throw new TypeError('`options` must be an object');
  const o = opts as Partial<KvmGuestOptions & ResolvedCreate>;
  checkDirty(o.dirty, o.ringEntries);
  let memBytes: number;
  let vcpus: number;
  let setup: (memory: GuestMemory) => Record<string, unknown>;
  if (typeof o.workloadId === 'number') {
    const r = opts as ResolvedCreate;
    memBytes = r.memBytes;
    vcpus = r.vcpus;
    setup = (memory) => {
      native.guest_setup(memory.handle, r.workloadId, r.vcpus, r.seed, r.steps, r.flags, r.params);
      return {};
    };
  } else {
    const mib = intOpt('memoryMiB', o.memoryMiB, 64, MIN_MIB, MAX_MIB);
    memBytes = mib * 1024 * 1024;
    vcpus = intOpt('vcpus', o.vcpus, 1, 1, MAX_VCPUS);
    const seed = u64Opt('seed', o.seed, 1n);
    if (o.nondeterministic !== undefined && typeof o.nondeterministic !== 'boolean') {
      throw new TypeError(`\`nondeterministic\` must be a boolean, got ${typeof o.nondeterministic}`);
    }
    const flags = o.nondeterministic ? 1 : 0;
    if (o.testEntry !== undefined) {
      const testEntry = intOpt('testEntry', o.testEntry, 0, 0xf0, 0xff);
      const steps = u64Opt('steps', o.steps, 100_000n);
      const params = (o.rawParams ?? []).map((p, i) => u64Opt(`rawParams[${i}]`, p, 0n));
      if (params.length > 8) throw new RangeError(`\`rawParams\` holds at most 8 values, got ${params.length}`);
      setup = () => ({ testEntry, vcpus, seed, steps, params, flags });
    } else {
      const workload = checkWorkload(o.workload);
      const steps = intOpt('steps', o.steps, WORKLOADS[workload].defaultSteps, 0, 2 ** 48);
      const params = resolveParams(workload, memBytes, vcpus, o.params);
      setup = (memory) => {
        native.guest_setup(memory.handle, WORKLOADS[workload].id, vcpus, seed, steps, flags, params);
        return {};
      };
    }
  }
  checkGuestMemoryBytes(memBytes, 'kvm');
  const memory = allocateMemory(memBytes);
  let guest: KvmGuest;
  try {
    const extra = setup(memory);
    guest = new KvmGuest(
      memory,
      vcpus,
      (onEvent) => native.kvm_create(memory.handle, { ...extra, dirty: o.dirty ?? 'bitmap', ringEntries: o.ringEntries }, onEvent) as NativeVm,
      o.typeReason,
    );
  } catch (err) {
    memory.close();
    throw err;
  }
  if (o.start !== false) guest.start();
  return guest;
}

/**
 * Builds a new KVM guest from a memory image and the blob saveCpu() returned; it goes on from
 * that point and finishes with the same result.
 * @throws TypeError for non-Uint8Array inputs; RangeError for a memory image of the wrong size or
 *   a corrupt, truncated or foreign CPU blob (the message says which).
 */
export async function restoreKvmGuest(opts: KvmRestoreOptions): Promise<Guest> {
  if (opts === null || typeof opts !== 'object') throw new TypeError('`options` must be an object');
  const { memoryImage, cpu } = opts;
  if (!(memoryImage instanceof Uint8Array)) throw new TypeError('`memoryImage` must be a Uint8Array');
  if (!(cpu instanceof Uint8Array)) throw new TypeError('`cpu` must be a Uint8Array');
  if (memoryImage.length % PAGE !== 0 || memoryImage.length < MIN_MIB << 20 || memoryImage.length > MAX_MIB * 2 ** 20) {
    throw new RangeError(
      `\`memoryImage\` must be a whole number of 4096-byte pages from ${MIN_MIB} MiB to ${MAX_MIB} MiB, got ${memoryImage.length} bytes`,
    );
  }
  checkDirty(opts.dirty, opts.ringEntries);
  // Every check of the blob against the image first: a refused restore costs no copy of the image.
  native.guest_check_state(cpu, memoryImage, 'kvm');
  const memory = allocateMemory(memoryImage.length);
  let guest: KvmGuest;
  try {
    memory.view.set(memoryImage);
    let vcpus = 0;
    guest = new KvmGuest(memory, 0, (onEvent) => {
      const vm = native.kvm_create(memory.handle, { cpu, dirty: opts.dirty ?? 'bitmap', ringEntries: opts.ringEntries }, onEvent) as NativeVm;
      return vm;
    }, opts.typeReason);
    vcpus = new DataView(cpu.buffer, cpu.byteOffset, cpu.byteLength).getUint32(12, true);
    Object.defineProperty(guest, 'vcpus', { value: vcpus });
  } catch (err) {
    memory.close();
    throw err;
  }
  if (opts.start !== false) guest.start();
  return guest;
}
