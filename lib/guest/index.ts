/**
 * createGuest / restoreGuest: one entry point for every guest backend.
 *
 * type 'auto' (the default) picks kvm where it works and sim otherwise, and says which and why
 * (`guest.typeReason`); 'kvm' never falls back: it fails with the reason; 'sim' is always
 * available. The KVM backend lives in ./kvm.js (exports kvmAvailable, createKvmGuest,
 * restoreKvmGuest); a build without it falls back to sim under 'auto'.
 */
import { native } from '../native.js';
import { createSimGuest, restoreSimGuest } from './sim.js';
import type { Guest, GuestOptions, GuestType, ResolvedGuestOptions, RestoreOptions } from './types.js';
import { WORKLOADS, checkWorkload, resolveParams } from './workloads.js';

/**
 * What the KVM module (lib/guest/kvm.ts) exports. createGuest hands it the caller's options with
 * the defaults resolved here (seed, steps per workload, effective params as the raw array), so
 * both backends run exactly the same configuration; backend-specific options (e.g. `dirty`) pass
 * through untouched.
 */
export interface KvmBackend {
  kvmAvailable(): { ok: boolean; reason?: string };
  createKvmGuest(opts: GuestOptions): Promise<Guest>;
  restoreKvmGuest(opts: RestoreOptions): Promise<Guest>;
}

function withReason(g: Guest, typeReason: string | undefined): Guest {
  if (typeReason !== undefined && g.typeReason === undefined) {
    Object.defineProperty(g, 'typeReason', { value: typeReason, enumerable: true });
  }
  return g;
}

const MIB = 1024 * 1024;

async function loadKvm(): Promise<{ backend?: KvmBackend; reason: string }> {
  const spec = './kvm.js';
  let mod: KvmBackend;
  try {
    mod = (await import(spec)) as KvmBackend;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_MODULE_NOT_FOUND' && /kvm\.js/.test(e.message)) return { reason: 'this build has no KVM backend (lib/guest/kvm.js is missing)' };
    return { reason: `the KVM backend failed to load: ${e.message.split('\n')[0]}` };
  }
  let avail: { ok: boolean; reason?: string };
  try {
    avail = mod.kvmAvailable();
  } catch (err) {
    return { reason: (err as Error).message };
  }
  return avail.ok ? { backend: mod, reason: 'kvm is available' } : { reason: avail.reason ?? 'kvm is not usable' };
}

function checkType(type: unknown): GuestType | 'auto' {
  if (type === undefined) return 'auto';
  if (type !== 'kvm' && type !== 'sim' && type !== 'auto') {
    throw new RangeError(`\`type\` must be 'kvm', 'sim' or 'auto', got ${JSON.stringify(type)}`);
  }
  return type;
}

function checkBool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new TypeError(`\`${name}\` must be a boolean, got ${typeof v}`);
  return v;
}

function checkInt(name: string, v: unknown, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw new TypeError(`\`${name}\` must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`\`${name}\` must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}

function checkSeed(v: unknown): bigint {
  if (v === undefined) return 1n;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`\`seed\` must be an integer from 0 to 2^64-1, got ${v}`);
    return BigInt(v);
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) throw new RangeError(`\`seed\` must be an integer from 0 to 2^64-1, got ${v}`);
    return v;
  }
  throw new TypeError(`\`seed\` must be a number or bigint, got ${typeof v}`);
}

/** The options createGuest takes: GuestOptions, and the kvm guest's (KvmGuestOptions). */
const GUEST_OPTION_KEYS: readonly string[] = [
  'type', 'workload', 'seed', 'steps', 'memoryMiB', 'vcpus', 'nondeterministic', 'start', 'params', 'dirtyTracking',
  'dirty', 'ringEntries', 'testEntry', 'rawParams',
];

/** The options createGuest would run with (defaults filled in), for display and for tests. */
export function resolveGuestOptions(opts: GuestOptions): ResolvedGuestOptions & { type: GuestType | 'auto' } {
  if (opts === null || typeof opts !== 'object') throw new TypeError('`options` must be an object');
  // A misspelt option fails loudly instead of being ignored (the kvm guest's own options pass).
  for (const key of Object.keys(opts)) {
    if (!GUEST_OPTION_KEYS.includes(key)) {
      throw new TypeError(`\`options\` has no option \`${key}\` (known: ${GUEST_OPTION_KEYS.join(', ')})`);
    }
  }
  const type = checkType(opts.type);
  const workload = checkWorkload(opts.workload);
  const memoryMiB = checkInt('memoryMiB', opts.memoryMiB, 64, 8, 1 << 20);
  const vcpus = checkInt('vcpus', opts.vcpus, 1, 1, 16);
  const memBytes = memoryMiB * MIB;
  const steps = checkInt('steps', opts.steps, WORKLOADS[workload].defaultSteps, 0, 2 ** 48);
  const params = resolveParams(workload, memBytes, vcpus, opts.params);
  return {
    type,
    workloadId: WORKLOADS[workload].id,
    memBytes,
    vcpus,
    seed: checkSeed(opts.seed),
    steps,
    flags: checkBool('nondeterministic', opts.nondeterministic, false) ? 1 : 0,
    params,
    dirtyTracking: checkBool('dirtyTracking', opts.dirtyTracking, true),
    start: checkBool('start', opts.start, true),
  };
}

/**
 * Builds a guest running `workload` and (unless `start: false`) starts it.
 * @throws TypeError / RangeError for bad options (naming the option); Error with the reason when
 *   `type: 'kvm'` cannot be honoured.
 */
export async function createGuest(opts: GuestOptions): Promise<Guest> {
  const o = resolveGuestOptions(opts);
  if (o.type === 'sim') return createSimGuest(o);
  const kvm = await loadKvm();
  if (kvm.backend) {
    const g = await kvm.backend.createKvmGuest({
      ...opts,
      type: 'kvm',
      seed: o.seed,
      steps: o.steps,
      memoryMiB: o.memBytes / MIB,
      vcpus: o.vcpus,
      nondeterministic: o.flags === 1,
      params: o.params,
      start: o.start,
    });
    return withReason(g, o.type === 'auto' ? 'auto: kvm is available' : undefined);
  }
  if (o.type === 'kvm') throw new Error(`kvm guest unavailable: ${kvm.reason}`);
  return createSimGuest({ ...o, typeReason: `auto: using sim because ${kvm.reason}` });
}

/**
 * Builds a guest from a memory image and a CPU state blob (saveCpu()) and (unless `start:
 * false`) lets it go on. A sim blob restores into sim; 'auto' picks the blob's own type.
 * @throws RangeError for a memory image of the wrong size or whose control page is not valid,
 *   and for a corrupt, truncated, foreign or mismatched CPU blob.
 */
/** Where a guest state's output stands (see {@link checkGuestState}). */
export interface GuestStateInfo {
  /** The blob's backend. */
  type: 'sim' | 'kvm';
  /** Output records the blob carries (drained from the ring, not yet taken). */
  pending: number;
  /** Records the image's ring has been drained up to (the next seq to drain). */
  drained: number;
  /** The image's hash chain of the last drained record (16 hex digits). */
  outChain: string;
  /** The final checksum once the workload has finished on every vCPU, else null. */
  final: string | null;
}

/**
 * @internal Every check {@link restoreGuest} makes of a memory image and CPU blob (the blob's
 * type picks the backend), without building a guest or copying the image; a backup runs it on
 * each epoch before it acknowledges it. Throws the RangeError the restore would throw.
 */
export function checkGuestState(memoryImage: Uint8Array, cpu: Uint8Array): GuestStateInfo {
  if (!(memoryImage instanceof Uint8Array)) throw new TypeError('`memoryImage` must be a Uint8Array');
  if (!(cpu instanceof Uint8Array)) throw new TypeError('`cpu` must be a Uint8Array');
  return native.guest_check_state(cpu, memoryImage) as GuestStateInfo;
}

export async function restoreGuest(opts: RestoreOptions): Promise<Guest> {
  if (opts === null || typeof opts !== 'object') throw new TypeError('`options` must be an object');
  const type = checkType(opts.type);
  if (!(opts.memoryImage instanceof Uint8Array)) throw new TypeError('`memoryImage` must be a Uint8Array');
  if (!(opts.cpu instanceof Uint8Array)) throw new TypeError('`cpu` must be a Uint8Array');
  const start = checkBool('start', opts.start, true);
  const dirtyTracking = checkBool('dirtyTracking', opts.dirtyTracking, true);
  // Blob type from its envelope (bytes 6-7), when the envelope is there at all.
  const blobType = opts.cpu.byteLength >= 8 ? opts.cpu[6]! | (opts.cpu[7]! << 8) : 0;
  const wantKvm = type === 'kvm' || (type === 'auto' && blobType === 2);
  if (!wantKvm) {
    return restoreSimGuest(opts.memoryImage, opts.cpu, dirtyTracking, start, type === 'auto' ? 'auto: the CPU state blob is a sim blob' : undefined);
  }
  native.guest_check_image(opts.memoryImage, 'memoryImage');
  const kvm = await loadKvm();
  if (!kvm.backend) throw new Error(`kvm guest unavailable: ${kvm.reason}`);
  const g = await kvm.backend.restoreKvmGuest({ ...opts, type: 'kvm', start });
  return withReason(g, type === 'auto' ? 'auto: the CPU state blob is a kvm blob' : undefined);
}

export { SimGuest, GuestError } from './sim.js';
export { WORKLOADS, WORKLOAD_NAMES, resolveParams } from './workloads.js';
export { recordLine, endLine } from './records.js';
export { readProgress } from './control.js';
export type { GuestProgress } from './control.js';
export type * from './types.js';
