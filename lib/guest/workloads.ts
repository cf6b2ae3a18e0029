/**
 * The six workloads: names and ids (enum us_workload in native/workloads/abi.h), the names of
 * their parameters (control->params indices), and default step counts (about one second of sim
 * time each on one vCPU of our 2-core test machine).
 *
 * Parameter defaults and valid ranges live in one place, the workloads' C code; this module
 * asks the addon (guest_effective_params) rather than repeating them.
 */
import { native } from '../native.js';
import type { WorkloadName } from './types.js';

export interface WorkloadInfo {
  id: number;
  summary: string;
  /** Steps per vCPU when the caller gives none. */
  defaultSteps: number;
  /** Parameter name -> control->params index. */
  params: Record<string, number>;
}

const common = { recordEvery: 7 };

export const WORKLOADS: Readonly<Record<WorkloadName, WorkloadInfo>> = Object.freeze({
  uniform: {
    id: 1,
    summary: 'random 8-byte writes spread evenly over a working set',
    defaultSteps: 250_000,
    params: { workingSet: 0, writesPerStep: 1, ...common },
  },
  hotset: {
    id: 2,
    summary: 'most writes to a small hot set, the rest anywhere in the working set',
    defaultSteps: 500_000,
    params: { workingSet: 0, writesPerStep: 1, hotSet: 2, hotPercent: 3, ...common },
  },
  sequential: {
    id: 3,
    summary: 'streaming writes through a large buffer, one page per step',
    defaultSteps: 300_000,
    params: { workingSet: 0, wordsPerStep: 1, ...common },
  },
  sparse: {
    id: 4,
    summary: 'a few words on each of many random pages',
    defaultSteps: 400_000,
    params: { workingSet: 0, pagesPerStep: 1, wordsPerPage: 2, ...common },
  },
  memcheck: {
    id: 5,
    summary: 'pages carry a counter and checksum the guest verifies; detects torn or lost pages',
    defaultSteps: 100_000,
    params: { workingSet: 0, pagesPerStep: 1, wordsPerPage: 2, ...common },
  },
  kv: {
    id: 6,
    summary: 'an in-guest key-value store serving a seeded request stream; one record per response',
    defaultSteps: 50_000,
    params: { workingSet: 0, requestsPerStep: 1, keySpace: 2, getPercent: 3, putPercent: 4 },
  },
});

export const WORKLOAD_NAMES = Object.keys(WORKLOADS) as WorkloadName[];

/** The workload with id `id` (from a memory image's control page), or undefined. */
export function workloadById(id: number): WorkloadName | undefined {
  return WORKLOAD_NAMES.find((n) => WORKLOADS[n].id === id);
}

/** Validates a workload name. */
export function checkWorkload(name: unknown): WorkloadName {
  if (typeof name !== 'string') throw new TypeError(`\`workload\` must be a string, got ${typeof name}`);
  if (!(name in WORKLOADS)) {
    throw new RangeError(`\`workload\` must be one of ${WORKLOAD_NAMES.join(', ')}, got ${JSON.stringify(name)}`);
  }
  return name as WorkloadName;
}

const MAX = Number.MAX_SAFE_INTEGER;

function effective(id: number, memBytes: number, vcpus: number, raw: number[]): number[] {
  const out = native.guest_effective_params(id, memBytes, vcpus, raw) as number[] | null;
  if (!out) throw new RangeError(`guest memory of ${memBytes} bytes is too small for ${vcpus} vCPUs`);
  return out;
}

/**
 * The control->params array for `params` (by name), after checking each against the range the
 * workload accepts with this memory size and vCPU count.
 * @throws TypeError / RangeError naming the parameter, e.g.
 *   "`params.writesPerStep` must be an integer from 1 to 4096 for uniform, got 10000"
 */
export function resolveParams(
  workload: WorkloadName,
  memBytes: number,
  vcpus: number,
  params: Record<string, number> | Array<number | bigint> = {},
): number[] {
  if (params === null || typeof params !== 'object') throw new TypeError('`params` must be an object or an array');
  const info = WORKLOADS[workload];
  if (Array.isArray(params)) {
    // Raw control->params: each value as given (0 = default), clamped by the workload.
    if (params.length > 8) throw new RangeError(`\`params\` holds at most 8 values, got ${params.length}`);
    const raw = params.map((v, i) => {
      const n = typeof v === 'bigint' ? Number(v) : v;
      if (typeof n !== 'number') throw new TypeError(`\`params[${i}]\` must be a number, got ${typeof v}`);
      if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`\`params[${i}]\` must be an integer from 0 to ${MAX}, got ${v}`);
      return n;
    });
    while (raw.length < 8) raw.push(0);
    return effective(info.id, memBytes, vcpus, raw);
  }
  const raw = [0, 0, 0, 0, 0, 0, 0, 0];
  for (const [k, v] of Object.entries(params)) {
    // own keys only: `toString` or `constructor` are no parameter of any workload
    const idx = Object.hasOwn(info.params, k) ? info.params[k] : undefined;
    if (idx === undefined) {
      throw new RangeError(`\`params.${k}\` is not a parameter of ${workload}; it has ${Object.keys(info.params).join(', ')}`);
    }
    if (typeof v !== 'number') throw new TypeError(`\`params.${k}\` must be a number, got ${typeof v}`);
    raw[idx] = v;
  }
  for (const [k, idx] of Object.entries(info.params)) {
    const v = raw[idx]!;
    if (v === 0 && !(k in params)) continue;
    const lo = effective(info.id, memBytes, vcpus, raw.map((x, i) => (i === idx ? 1 : x)))[idx]!;
    const hi = effective(info.id, memBytes, vcpus, raw.map((x, i) => (i === idx ? MAX : x)))[idx]!;
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new RangeError(`\`params.${k}\` must be an integer from ${lo} to ${hi} for ${workload}, got ${v}`);
    }
  }
  return effective(info.id, memBytes, vcpus, raw);
}
