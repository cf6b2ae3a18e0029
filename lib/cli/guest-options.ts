/**
 * The guest options `understudy run` takes, shared with every command that starts a guest
 * (checkpoint, primary, ...): --guest, --workload, --seed, --steps, --memory, --vcpus,
 * --nondeterministic, --param NAME=VALUE.
 */
import { WORKLOADS, WORKLOAD_NAMES } from '../guest/workloads.js';
import type { GuestOptions, WorkloadName } from '../guest/types.js';
import { MAX_MEMORY_BYTES } from '../kernels/memory.js';
import { KVM_MAX_MEMORY_MIB } from '../guest/kvm.js';

export { KVM_MAX_MEMORY_MIB };
import { CliError, intOption } from './util.js';

const MIB = 1024 * 1024;
/** The least guest RAM (resolveGuestOptions in lib/guest/index.ts, and the KVM backend). */
export const MIN_MEMORY_MIB = 8;
/** Both backends allocate guest RAM as one buffer: at most MAX_MEMORY_BYTES (4 GiB on Node 20). */
const BUFFER_MAX_MIB = Math.floor(MAX_MEMORY_BYTES / MIB);
/** resolveGuestOptions' own bound. */
const OPTION_MAX_MIB = 1 << 20;

/**
 * The most guest RAM (MiB) a backend takes here, and why (a phrase: "N MiB is <why>"). 'auto' may
 * pick either backend, so it gets the lower of the two.
 */
export function memoryLimit(type: 'kvm' | 'sim' | 'auto'): { maxMiB: number; why: string } {
  const sim = Math.min(OPTION_MAX_MIB, BUFFER_MAX_MIB);
  const simWhy = sim === BUFFER_MAX_MIB
    ? `the most one ArrayBuffer may hold in Node.js ${process.version} (MAX_MEMORY_BYTES)`
    : 'the most the guest options allow';
  const kvm = Math.min(sim, KVM_MAX_MEMORY_MIB);
  const kvmWhy = kvm === KVM_MAX_MEMORY_MIB ? 'the KVM backend\'s cap' : simWhy;
  if (type === 'sim') return { maxMiB: sim, why: simWhy };
  if (type === 'kvm') return { maxMiB: kvm, why: kvmWhy };
  return { maxMiB: kvm, why: `the lower of the kvm and sim limits: ${kvmWhy}` };
}

/** --memory MiB for a guest of `type`: from MIN_MEMORY_MIB to that backend's limit here. */
export function memoryOption(cmd: string, value: string | undefined, dflt: number, type: 'kvm' | 'sim' | 'auto'): number {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value)) throw new CliError(`${cmd}: --memory must be an integer (MiB), got ${JSON.stringify(value)}`);
  const n = Number(value);
  const { maxMiB, why } = memoryLimit(type);
  if (n < MIN_MEMORY_MIB) throw new CliError(`${cmd}: --memory must be from ${MIN_MEMORY_MIB} to ${maxMiB} (MiB) with --guest ${type}, got ${n}`);
  if (n > maxMiB) throw new CliError(`${cmd}: --memory must be from ${MIN_MEMORY_MIB} to ${maxMiB} (MiB) with --guest ${type}, got ${n}; ${maxMiB} MiB is ${why}`);
  return n;
}

/** The --memory text of a usage (the limits are this Node.js's), continued lines indented by `indent`. */
export function memoryUsage(dflt: number, indent: string): string {
  return `guest RAM (default ${dflt}), at least ${MIN_MEMORY_MIB}; at most, here, ${memoryLimit('sim').maxMiB} on sim (what
${indent}one ArrayBuffer may hold in this Node.js: MAX_MEMORY_BYTES) and ${memoryLimit('kvm').maxMiB}
${indent}on kvm (that, and the KVM backend's cap of ${KVM_MAX_MEMORY_MIB}); auto: the lower`;
}

export const guestOptionSpec = {
  guest: { type: 'string' },
  workload: { type: 'string' },
  seed: { type: 'string' },
  steps: { type: 'string' },
  memory: { type: 'string' },
  vcpus: { type: 'string' },
  nondeterministic: { type: 'boolean' },
  param: { type: 'string', multiple: true },
} as const;

export const guestOptionUsage = `  --guest kvm|sim|auto   backend (default auto: kvm where it works, else sim)
  --workload NAME        ${WORKLOAD_NAMES.join(', ')} (default uniform)
  --seed N               PRNG seed (default 1)
  --steps N              steps per vCPU (default: per workload, about a second)
  --memory MiB           ${memoryUsage(64, '                         ')}
  --vcpus N              1 to 16 (default 1)
  --nondeterministic     mix in a host clock at each pause (re-execution diverges)
  --param NAME=VALUE     a workload parameter (repeatable), e.g. --param writesPerStep=128`;

type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

/** GuestOptions from parsed values; throws CliError naming the flag. */
export function guestOptionsFrom(cmd: string, v: Values): GuestOptions & { workload: WorkloadName } {
  const type = (v.guest as string | undefined) ?? 'auto';
  if (type !== 'kvm' && type !== 'sim' && type !== 'auto') {
    throw new CliError(`${cmd}: --guest must be kvm, sim or auto, got ${JSON.stringify(type)}`);
  }
  const workload = (v.workload as string | undefined) ?? 'uniform';
  if (!(workload in WORKLOADS)) {
    throw new CliError(`${cmd}: --workload must be one of ${WORKLOAD_NAMES.join(', ')}, got ${JSON.stringify(workload)}`);
  }
  const seedText = v.seed as string | undefined;
  let seed: bigint = 1n;
  if (seedText !== undefined) {
    if (!/^\d+$/.test(seedText) || BigInt(seedText) >= 1n << 64n) {
      throw new CliError(`${cmd}: --seed must be an integer from 0 to 18446744073709551615, got ${JSON.stringify(seedText)}`);
    }
    seed = BigInt(seedText);
  }
  const params: Record<string, number> = {};
  for (const p of (v.param as string[] | undefined) ?? []) {
    const m = /^([A-Za-z]+)=(\d+)$/.exec(p);
    if (!m) throw new CliError(`${cmd}: --param must be NAME=INTEGER, got ${JSON.stringify(p)}`);
    params[m[1]!] = Number(m[2]);
  }
  return {
    type,
    workload: workload as WorkloadName,
    seed,
    steps: intOption(cmd, 'steps', v.steps as string | undefined, WORKLOADS[workload as WorkloadName].defaultSteps, 0, 2 ** 48),
    memoryMiB: memoryOption(cmd, v.memory as string | undefined, 64, type),
    vcpus: intOption(cmd, 'vcpus', v.vcpus as string | undefined, 1, 1, 16),
    nondeterministic: v.nondeterministic === true,
    params,
  };
}
