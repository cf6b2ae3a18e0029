/**
 * `understudy primary`: runs a workload guest in epochs and replicates it to a backup; clients
 * read its released output on the service port.
 */
import type { GuestType, WorkloadName } from '../../guest/types.js';
import { startPrimary } from '../../replication/primary.js';
import { defaultCreateGuest } from '../../replication/kernels.js';
import { CliError, durationOption, hostPort, intOption, parse } from '../util.js';
import { commonOptions, intervalOption, keyOption, onLossOption, retainOption } from '../replication-options.js';
import { memoryOption } from '../guest-options.js';
import { superviseRun } from '../replication-run.js';

export const summary = 'run a guest and replicate it to a backup (Remus-style)';
export const usage = `usage: understudy primary --connect HOST:PORT --key FILE --workload NAME --guest kvm|sim|auto
                          --seed N --steps N [--interval 25ms] --serve HOST:PORT [options]

Runs the workload in epochs: each epoch's dirty pages, CPU state and output go to the backup;
output is released to service-port clients only once the backup has committed it.

options:
  --connect HOST:PORT   the backup's --listen address (retried until it answers)
  --listen HOST:PORT    or accept a backup here (\`backup --connect\`)
  --key FILE            pre-shared key (\`understudy keygen\`); or --insecure, explicitly
  --workload NAME       uniform, hotset, sequential, sparse, memcheck, kv (default kv)
  --guest TYPE          kvm, sim or auto (default auto)
  --seed N --steps N    workload seed (default 1) and steps per vCPU (default 200000)
  --memory MiB          guest RAM (default 32; limits as in \`understudy run --help\`, whose
                        default is 64: a reference run needs the same --memory)
  --vcpus N             1 to 16 (default 1)
  --interval D          epoch length (default 25ms, at least 5ms)
  --timeout D           backup silent, or its oldest epoch unacknowledged, this long = lost (default max(20 epochs, 1s))
  --on-backup-loss M    continue (guest runs, output held) or pause (default continue)
  --nondeterministic    the guest mixes in the host clock at each epoch
  --serve HOST:PORT     service port for clients (newline-delimited JSON)
  --retain N            released output records kept for late clients and new backups
                        (default 1000000; older ones are dropped, bounding memory)
  --linger D            after the workload ends, wait up to this long for a client to read
                        the end of the stream (default 3s)
  --json                JSON event lines on stdout   --quiet  no progress line`;

const WORKLOADS = ['uniform', 'hotset', 'sequential', 'sparse', 'memcheck', 'kv'];

export async function run(argv: string[]): Promise<number> {
  const { values } = parse('primary', argv, {
    ...commonOptions,
    connect: { type: 'string' }, listen: { type: 'string' }, serve: { type: 'string' },
    workload: { type: 'string' }, guest: { type: 'string' }, seed: { type: 'string' }, steps: { type: 'string' },
    memory: { type: 'string' }, vcpus: { type: 'string' }, nondeterministic: { type: 'boolean' },
  });
  const cmd = 'primary';
  if (!values.connect && !values.listen) throw new CliError(`${cmd}: --connect HOST:PORT (the backup) is required`);
  const workload = (values.workload as string | undefined) ?? 'kv';
  if (!WORKLOADS.includes(workload)) throw new CliError(`${cmd}: --workload must be one of ${WORKLOADS.join(', ')}, got ${JSON.stringify(workload)}`);
  const type = (values.guest as string | undefined) ?? 'auto';
  if (!['kvm', 'sim', 'auto'].includes(type)) throw new CliError(`${cmd}: --guest must be kvm, sim or auto, got ${JSON.stringify(type)}`);
  const intervalMs = intervalOption(cmd, values.interval);
  const lingerMs = durationOption(cmd, 'linger', values.linger as string | undefined, 3000);
  const memoryMiB = memoryOption(cmd, values.memory as string | undefined, 32, type as 'kvm' | 'sim' | 'auto');
  const auth = keyOption(cmd, values);
  // Every option is checked before the guest exists.
  const seed = intOption(cmd, 'seed', values.seed as string | undefined, 1);
  const steps = intOption(cmd, 'steps', values.steps as string | undefined, 200000, 1);
  const vcpus = intOption(cmd, 'vcpus', values.vcpus as string | undefined, 1, 1, 16);
  const endpoints = {
    connect: values.connect ? hostPort(cmd, 'connect', values.connect as string) : undefined,
    listen: values.listen ? hostPort(cmd, 'listen', values.listen as string) : undefined,
    serve: values.serve ? hostPort(cmd, 'serve', values.serve as string) : undefined,
  };
  const timeoutMs = values.timeout ? durationOption(cmd, 'timeout', values.timeout as string, 0) : undefined;
  const onBackupLoss = onLossOption(cmd, values['on-backup-loss']);
  const retain = retainOption(cmd, values.retain);
  const createGuest = await defaultCreateGuest();
  const guest = await createGuest({
    type: type as GuestType | 'auto', workload: workload as WorkloadName,
    seed, steps, memoryMiB, vcpus,
    nondeterministic: values.nondeterministic === true, start: false,
  });
  let p: Awaited<ReturnType<typeof startPrimary>>;
  try {
    p = await startPrimary({
      guest, ...auth, intervalMs, ...endpoints, timeoutMs, onBackupLoss,
      guestType: guest.type, nondeterministic: values.nondeterministic === true, retain,
    });
  } catch (err) {
    // e.g. the --serve port in use: say which command failed, as backup does, and free the guest
    await guest.close().catch(() => undefined);
    throw new CliError(`${cmd}: ${(err as Error).message}`, 1);
  }
  return superviseRun(p, {
    json: values.json === true, quiet: values.quiet === true, role: 'primary',
    lingerMs,
  });
}
