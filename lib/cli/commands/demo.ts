/**
 * `understudy demo`: the whole story on one machine. Starts a backup, a primary and a verifying
 * client (child processes of this same CLI), shows a live progress line, SIGKILLs the primary at
 * a random instant, shows the backup taking over (and a new backup joining it), and ends with the
 * client's verdict. Exit status 0 only if the verdict passes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { writeKeyFile } from '../../replication/auth.js';
import { guestType as guestType_, workloadName } from '../store-util.js';
import { memoryOption } from '../guest-options.js';
import { intervalOption } from '../replication-options.js';
import { freePort, intOption, parse, Progress } from '../util.js';

export const summary = 'replicate a guest, kill the primary, watch the backup take over (start here)';
export const usage = `usage: understudy demo [--guest kvm|sim|auto] [--workload NAME] [--steps N] [--interval 25ms] [--json]

On this machine: a backup, a primary running a workload guest, and a client verifying the
output stream. The primary is killed (SIGKILL) at a random instant; the backup fences it,
resumes the guest from its last committed epoch and serves the stream; a new backup joins it.
Ends with the client's verdict (no gap, no duplicate, hash chain unbroken, same final checksum
and record count as the same workload run alone) on stdout; the story goes to stderr. Under a
minute.

options:
  --guest TYPE     kvm, sim or auto (default auto)
  --workload NAME  default hotset           --steps N   steps (default 500000)
  --memory MiB     default 16 (limits as in \`understudy run --help\`)
  --interval D     epoch length (default 25ms, at least 5ms)
  --seed N         default: random       --no-kill   do not kill the primary
  --json           one JSON summary on stdout instead of the story`;


interface Child {
  name: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = 'demo';
  const { values } = parse(cmd, argv, {
    guest: { type: 'string' }, workload: { type: 'string' }, steps: { type: 'string' }, memory: { type: 'string' },
    interval: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' }, 'no-kill': { type: 'boolean' },
  });
  const json = values.json === true;
  // Everything the children would refuse is refused here, before any of them starts.
  const guestType = guestType_(cmd, values.guest as string | undefined);
  const workload = workloadName(cmd, (values.workload as string | undefined) ?? 'hotset');
  const interval = `${intervalOption(cmd, values.interval)}ms`;
  const seed = intOption(cmd, 'seed', values.seed as string | undefined, 1 + Math.floor(Math.random() * 1e6), 0);
  const steps = intOption(cmd, 'steps', values.steps as string | undefined, 500000, 1);
  const memory = memoryOption(cmd, values.memory as string | undefined, 16, guestType);
  const dir = mkdtempSync(join(tmpdir(), 'understudy-demo-'));
  const keyFile = join(dir, 'key');
  writeKeyFile(keyFile);
  const [repl, serveP, serveB, serveB2] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const say = (l: string): void => {
    if (!json) process.stderr.write(l + '\n');
  };
  const progress = new Progress(json ? 1e9 : undefined);
  const children: Child[] = [];
  const cli = process.argv[1]!;
  const start = (name: string, args: string[], onEvent?: (e: Record<string, unknown>) => void): Child => {
    const proc = spawn(process.execPath, [...process.execArgv, cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        onEvent?.(JSON.parse(line) as Record<string, unknown>);
      } catch {
        /* not an event line */
      }
    });
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      if (!json && !/^\w[\w()]*: (gen |client: reconnect)/.test(line)) say(`  [${name}] ${line.replace(/^[\w()]+: /, '')}`);
    });
    const exited = new Promise<number | null>((r) => proc.on('exit', (code, sig) => r(sig ? null : code)));
    const c = { name, proc, exited };
    children.push(c);
    return c;
  };
  const t0 = performance.now();
  const elapsed = (): string => `${((performance.now() - t0) / 1000).toFixed(1)}s`;
  const common = ['--key', keyFile, '--json', '--quiet'];
  const primaryTimeout = ['--timeout', '1500ms'];
  let lastStats: Record<string, unknown> | null = null;
  let killedAt: string | null = null;
  let failover: Record<string, unknown> | null = null;
  let protectedAgain = false;
  const showStats = (e: Record<string, unknown>, who: string): void => {
    lastStats = e;
    progress.update(`${elapsed()} ${who} gen ${String(e.generation)} epoch ${String(e.epoch)} | ${String(e.epochsPerSec)} epochs/s | pause p50 ${String(e.pauseP50)} ms p99 ${String(e.pauseP99)} ms | ${(Number(e.bytesPerEpoch) / 1024).toFixed(1)} KiB/epoch vs ${(Number(e.pageBytesPerEpoch) / 1024).toFixed(1)} KiB page-granular | output +${String(e.outputLatencyMs)} ms | lag ${String(e.lagEpochs)} epochs | ${String(e.released)} records released`);
  };
  say(`understudy demo: seed ${seed}, ${steps} steps, ${memory} MiB guest, ${interval} epochs, guest ${guestType}`);
  let backup2: Child | null = null;
  start('backup', ['backup', '--listen', `127.0.0.1:${repl}`, '--serve', `127.0.0.1:${serveB}`, '--timeout', '1500ms', '--interval', interval, '--linger', '10s', ...common], (e) => {
    if (e.event === 'failover') {
      failover = e;
      progress.done();
      say(`${elapsed()} FAILOVER: the backup fenced the old primary and resumed the guest from epoch ${String(e.epoch)} as generation ${String(e.generation)} (${String(e.records)} records committed)`);
      backup2 = start('backup2', ['backup', '--connect', `127.0.0.1:${repl}`, '--serve', `127.0.0.1:${serveB2}`, '--timeout', '1500ms', ...common]);
    } else if (e.event === 'stats') showStats(e, 'new primary');
    else if (e.event === 'protected' && failover && !protectedAgain) {
      protectedAgain = true;
      progress.done();
      say(`${elapsed()} protected again: a new backup joined and holds epoch ${String(e.backupEpoch)}`);
    }
  });
  let primaryProtected = false;
  let done = false;
  const primary = start('primary', [
    'primary', '--connect', `127.0.0.1:${repl}`, '--serve', `127.0.0.1:${serveP}`, '--workload', workload,
    '--guest', guestType, '--seed', String(seed), '--steps', String(steps), '--memory', String(memory), '--vcpus', '1', '--linger', '10s', '--interval', interval, ...primaryTimeout, ...common,
  ], (e) => {
    if (e.event === 'stats') showStats(e, 'primary');
    else if (e.event === 'protected' && !primaryProtected) {
      primaryProtected = true;
      say(`${elapsed()} primary protected: backup holds epoch ${String(e.backupEpoch)}`);
      if (values['no-kill'] !== true) {
        const ms = 300 + Math.floor(Math.random() * 1500);
        setTimeout(() => {
          if (done) return;
          killedAt = elapsed();
          progress.done();
          say(`${killedAt} SIGKILL the primary (pid ${primary.proc.pid})`);
          primary.proc.kill('SIGKILL');
        }, ms);
      }
    } else if (e.event === 'done') done = true;
  });
  // The reference: the same workload run alone, unreplicated (its final checksum must match).
  let reference: { final?: string; records?: number } | null = null;
  const refRun = start('reference', ['run', '--guest', guestType, '--workload', workload, '--seed', String(seed), '--steps', String(steps), '--memory', String(memory), '--vcpus', '1', '--json'], (e) => {
    if (typeof e.final === 'string') reference = e as { final: string; records: number };
  });
  let verdict: Record<string, unknown> | null = null;
  const client = start('client', ['client', '--connect', `127.0.0.1:${serveP},127.0.0.1:${serveB},127.0.0.1:${serveB2}`, '--verify', '--json', '--timeout', '20s'], (e) => {
    if ('verdict' in e) verdict = e;
  });
  const deadline = setTimeout(() => {
    progress.done();
    say('demo: 55 s passed without a verdict; stopping');
    for (const c of children) c.proc.kill('SIGKILL');
  }, 55_000);
  const clientCode = await client.exited;
  progress.done();
  clearTimeout(deadline);
  // Let the survivors finish their lingering, then stop them.
  await Promise.race([Promise.all(children.map((c) => c.exited)), new Promise((r) => setTimeout(r, 4000))]);
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
  await Promise.race([refRun.exited, new Promise((r) => setTimeout(r, 15_000))]);
  const v = verdict as Record<string, unknown> | null;
  const ref = reference as { final?: string; records?: number } | null;
  const refOk = ref !== null && ref.final === v?.final && ref.records === v?.records;
  const pass = clientCode === 0 && v?.verdict === 'pass' && refOk;
  if (json) {
    process.stdout.write(JSON.stringify({
      pass, seed, steps, memoryMiB: memory, interval, seconds: +((performance.now() - t0) / 1000).toFixed(2), killedAt, failover,
      protectedAgain, newBackup: backup2 !== null, lastStats, client: v, reference: ref,
    }) + '\n');
  } else {
    if (!killedAt) say('note: the workload finished before the kill instant; no failover this time');
    const why = !v ? `client exited with ${clientCode}` : (v.problems as string[]).length ? (v.problems as string[]).join('; ')
      : !ref ? 'the reference run did not finish' : `stream (${String(v.records)} records, final ${String(v.final)}) differs from the unreplicated run (${String(ref.records)} records, final ${String(ref.final)})`;
    // The verdict is the result: stdout (the story above is progress, on stderr).
    process.stdout.write((pass
      ? `verdict: PASS: ${String(v?.records)} records, no gap, no duplicate, hash chain unbroken, final ${String(v?.final)} equal to an unreplicated run${failover ? ' — across a failover' : ''}`
      : `verdict: FAIL: ${why}`) + '\n');
  }
  return pass ? 0 : 1;
}
