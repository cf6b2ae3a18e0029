/**
 * The sim backend: the workloads compiled into the addon, one native thread per vCPU over memfd
 * guest memory, software dirty tracking (native/sim/sim.h). Same interface, records and final
 * checksum as the KVM guest.
 *
 * pause() is synchronous underneath (the vCPUs park at their next step boundary, a few
 * microseconds away) and returns an already-resolved promise.
 */
import { EventEmitter } from 'node:events';
import { allocateMemory, checkGuestMemoryBytes, type GuestMemory } from '../kernels/memory.js';
import { native } from '../native.js';
import { recordsFromNative, type NativeRecords } from './records.js';
import type { DirtyLog, Guest, GuestResult, OutputRecord, ResolvedGuestOptions, WorkloadName } from './types.js';
import { workloadById } from './workloads.js';
import { OutputFeed } from './output-feed.js';

interface NativeSim {
  start(): void;
  pause(): void;
  resume(finished?: boolean): void;
  set_clock(v: bigint): void;
  take_dirty(): DirtyLog;
  take_output(): NativeRecords;
  save_cpu(): Uint8Array;
  close(): void;
  unref(): void;
  progress(): [number, number];
}

/** A guest error: a workload panic (memcheck found corruption) or a corrupt output ring. */
export class GuestError extends Error {
  /** 'GUEST_PANIC' for a workload panic, 'GUEST_FAULT' otherwise. */
  readonly code: string;
  /** gpa | reason (native/workloads/abi.h enum us_panic), 0n if not a panic. */
  readonly panicCode: bigint;
  constructor(message: string, panicCode: bigint) {
    super(message);
    this.name = 'GuestError';
    this.code = panicCode > 0n ? 'GUEST_PANIC' : 'GUEST_FAULT';
    this.panicCode = panicCode;
  }
}

/** The sim Guest. Build one with createGuest({ type: 'sim', ... }) or restoreGuest(). */
export class SimGuest extends EventEmitter implements Guest {
  readonly type = 'sim' as const;
  readonly typeReason?: string;
  readonly pageSize = 4096;
  readonly pageCount: number;
  readonly vcpus: number;
  readonly workload: WorkloadName;
  readonly memory: GuestMemory;
  #native: NativeSim | null;
  #result: GuestResult | null = null;
  #error: Error | null = null;
  #paused = false;
  #waiters: { resolve: (r: GuestResult) => void; reject: (e: Error) => void }[] = [];
  readonly #output = new OutputFeed(this, () => (this.#native ? recordsFromNative(this.#native.take_output()) : null));

  /** @internal */
  constructor(memory: GuestMemory, create: (onEvent: (...a: unknown[]) => void) => NativeSim, typeReason?: string) {
    super();
    this.memory = memory;
    this.typeReason = typeReason;
    this.pageCount = memory.byteLength / 4096;
    const info = native.guest_check_image(memory.view, 'memory') as { vcpus: number; workload: number };
    this.vcpus = info.vcpus;
    this.workload = workloadById(info.workload)!;
    this.#native = create((kind, final, message, panicCode) => this.#onEvent(kind as string, final as string, message as string, panicCode as bigint));
  }

  #onEvent(kind: string, final: string, message: string, panicCode: bigint): void {
    this.#native?.unref();
    if (this.#result || this.#error) return;
    this.#output.drain();
    this.#output.stop();
    if (kind === 'exit') {
      this.#result = { final };
      for (const w of this.#waiters.splice(0)) w.resolve(this.#result);
      this.emit('exit', this.#result);
    } else {
      this.#error = new GuestError(message, panicCode);
      for (const w of this.#waiters.splice(0)) w.reject(this.#error);
      if (this.listenerCount('error') > 0) this.emit('error', this.#error);
    }
  }

  #n(): NativeSim {
    if (!this.#native) throw new Error('the guest is closed');
    return this.#native;
  }

  get result(): GuestResult | null {
    return this.#result;
  }

  /** The guest error that stopped the run, if any. */
  get error(): Error | null {
    return this.#error;
  }

  start(): void {
    this.#n().start();
  }

  pause(): Promise<void> {
    this.#n().pause();
    this.#paused = true;
    this.#output.drain();
    return Promise.resolve();
  }

  resume(): void {
    this.#n().resume(this.#result !== null || this.#error !== null);
    this.#paused = false;
  }

  setClock(value: bigint): void {
    if (typeof value !== 'bigint') throw new TypeError(`\`clock\` must be a bigint, got ${typeof value}`);
    if (value < 0n || value >= 1n << 64n) throw new RangeError(`\`clock\` must be from 0 to 2^64-1, got ${value}`);
    this.#n().set_clock(value);
  }

  takeDirty(): DirtyLog {
    return this.#n().take_dirty();
  }

  takeOutput(): OutputRecord[] {
    this.#n();
    return this.#output.pull();
  }

  saveCpu(): Uint8Array {
    return this.#n().save_cpu();
  }

  /** Steps done so far (all vCPUs) and in total. */
  progress(): { stepsDone: number; stepsTotal: number } {
    const [d, t] = this.#n().progress();
    return { stepsDone: d, stepsTotal: t };
  }

  get paused(): boolean {
    return this.#paused;
  }

  wait(): Promise<GuestResult> {
    if (this.#result) return Promise.resolve(this.#result);
    if (this.#error) return Promise.reject(this.#error);
    if (!this.#native) return Promise.reject(new Error('the guest is closed'));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  close(): Promise<void> {
    if (this.#native) {
      this.#output.drain(); // the last records, to 'output' listeners (when nobody takes them)
      this.#output.stop();
      this.#native.close();
      this.#native = null;
      this.memory.close();
      const err = new Error('the guest was closed before it finished');
      for (const w of this.#waiters.splice(0)) w.reject(err);
    }
    return Promise.resolve();
  }
}

/** @internal resolved options for a fresh sim guest */
export type SimCreate = ResolvedGuestOptions;

/** @internal */
export function createSimGuest(o: SimCreate): SimGuest {
  checkGuestMemoryBytes(o.memBytes, 'sim');
  const memory = allocateMemory(o.memBytes);
  try {
    native.guest_setup(memory.handle, o.workloadId, o.vcpus, o.seed, o.steps, o.flags, o.params);
    const g = new SimGuest(memory, (cb) => native.sim_create(memory.handle, o.dirtyTracking, cb) as NativeSim, o.typeReason);
    if (o.start) g.start();
    return g;
  } catch (err) {
    memory.close();
    throw err;
  }
}

/** @internal image and blob already type-checked */
export function restoreSimGuest(image: Uint8Array, cpu: Uint8Array, dirtyTracking: boolean, start: boolean, typeReason?: string): SimGuest {
  // Validate before allocating: a hostile image or blob never costs a guest's worth of memory.
  native.guest_check_state(cpu, image, 'sim');
  const memory = allocateMemory(image.byteLength);
  try {
    memory.view.set(image);
    const g = new SimGuest(memory, (cb) => native.sim_restore(memory.handle, cpu, dirtyTracking, cb) as NativeSim, typeReason);
    if (start) g.start();
    return g;
  } catch (e) {
    memory.close();
    throw e;
  }
}
