/**
 * The guest options `understudy run` takes, shared with every command that starts a guest
 * (checkpoint, primary, ...): --guest, --workload, --seed, --steps, --memory, --vcpus,
 * --nondeterministic, --param NAME=VALUE.
 */
import { WORKLOADS, WORKLOAD_NAMES } from '../guest/workloads.js';
import type { GuestOptions, WorkloadName } from '../guest/types.js';
import { CliError, intOption } from './util.js';

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
  --memory MiB           guest RAM (default 64, at least 8)
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
    memoryMiB: intOption(cmd, 'memory', v.memory as string | undefined, 64, 8, 1 << 20),
    vcpus: intOption(cmd, 'vcpus', v.vcpus as string | undefined, 1, 1, 16),
    nondeterministic: v.nondeterministic === true,
    params,
  };
}
