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
import { CliError, freePort, intOption, parse, Progress } from '../util.js';

export const summary = 'replicate a guest, kill the primary, watch the backup take over (start here)';
export const usage = `usage: understudy demo [--guest kvm|sim|auto] [--workload NAME] [--steps N] [--memory MiB]
                      [--interval 25ms] [--seed N] [--kills N | --no-kill] [--json]

On this machine: a backup, a primary running a workload guest, and a client verifying the
output stream. The primary is killed (SIGKILL) at a random instant; the backup fences it,
resumes the guest from its last committed epoch and serves the stream; a new backup joins it.
With --kills N that new primary is killed in turn, N times in all. A primary that goes silent
past the 1.5 s timeout without being killed (a starved process on a loaded machine) fails over
the same way. Ends with the client's verdict (no gap, no duplicate, hash chain unbroken, same
final checksum and record count as the same workload run alone) on stdout; the story goes to
stderr. About a minute; stopped if nothing moves for 30 s.

options:
  --guest TYPE     kvm, sim or auto (default auto)
  --workload NAME  default hotset           --steps N   steps (default 500000)
  --memory MiB     default 16 (limits as in \`understudy run --help\`)
  --interval D     epoch length (default 25ms, at least 5ms)
  --seed N         default: random       --no-kill   do not kill the primary
  --kills N        primaries to kill, one after the other (default 1, at most 3)
  --json           one JSON summary on stdout instead of the story`;


const STALL_MS = 30_000;
const MAX_BACKUPS = 4;
const MAX_MS = 300_000;

interface Child {
  name: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = 'demo';
  const { values } = parse(cmd, argv, {
    guest: { type: 'string' }, workload: { type: 'string' }, steps: { type: 'string' }, memory: { type: 'string' },
    interval: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' }, 'no-kill': { type: 'boolean' }, kills: { type: 'string' },
  });
  const json = values.json === true;
  // Everything the children would refuse is refused here, before any of them starts.
  const guestType = guestType_(cmd, values.guest as string | undefined);
  const workload = workloadName(cmd, (values.workload as string | undefined) ?? 'hotset');
  const interval = `${intervalOption(cmd, values.interval)}ms`;
  const seed = intOption(cmd, 'seed', values.seed as string | undefined, 1 + Math.floor(Math.random() * 1e6), 0);
  const steps = intOption(cmd, 'steps', values.steps as string | undefined, 500000, 1);
  const memory = memoryOption(cmd, values.memory as string | undefined, 16, guestType);
  const kills = intOption(cmd, 'kills', values.kills as string | undefined, 1, 0, MAX_BACKUPS - 1);
  if (values['no-kill'] === true && values.kills !== undefined) throw new CliError(`${cmd}: --no-kill and --kills are exclusive`);
  const toKill = values['no-kill'] === true ? 0 : kills;
  const dir = mkdtempSync(join(tmpdir(), 'understudy-demo-'));
  const keyFile = join(dir, 'key');
  writeKeyFile(keyFile);
  // Backups form a chain: backup k listens on repl[k-1] for the primary it protects and, once it
  // has taken over, for backup k + 1 (started then, connecting there). The planned kill makes one
  // failover; a primary starved past the timeout on a loaded machine can make another, and its
  // promoted backup must be protected in turn or it holds its output for good.
  const [serveP, ...ports] = await Promise.all(Array.from({ length: 1 + 2 * MAX_BACKUPS }, () => freePort()));
  const repl = ports.slice(0, MAX_BACKUPS);
  const serveB = ports.slice(MAX_BACKUPS);
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
  let done = false;
  let lastProgress = performance.now();
  const showStats = (e: Record<string, unknown>, who: string): void => {
    if (lastStats === null || e.released !== lastStats.released || e.generation !== lastStats.generation) lastProgress = performance.now();
    lastStats = e;
    progress.update(`${elapsed()} ${who} gen ${String(e.generation)} epoch ${String(e.epoch)} | ${String(e.epochsPerSec)} epochs/s | pause p50 ${String(e.pauseP50)} ms p99 ${String(e.pauseP99)} ms | ${(Number(e.bytesPerEpoch) / 1024).toFixed(1)} KiB/epoch vs ${(Number(e.pageBytesPerEpoch) / 1024).toFixed(1)} KiB page-granular | output +${String(e.outputLatencyMs)} ms | lag ${String(e.lagEpochs)} epochs | ${String(e.released)} records released`);
  };
  say(`understudy demo: seed ${seed}, ${steps} steps, ${memory} MiB guest, ${interval} epochs, guest ${guestType}`);
  let failovers = 0;
  let killsMade = 0;
  // Kills `child` (the primary of the moment) at a random instant soon, if kills are left.
  let killsScheduled = 0;
  const scheduleKill = (child: Child, who: string): void => {
    if (killsScheduled >= toKill || done) return;
    killsScheduled++;
    setTimeout(() => {
      if (done) return;
      killsMade++;
      killedAt ??= elapsed();
      progress.done();
      say(`${elapsed()} SIGKILL the ${who} (pid ${child.proc.pid})`);
      child.proc.kill('SIGKILL');
    }, 300 + Math.floor(Math.random() * 1500));
  };
  const startBackupK = (k: number): Child => {
    const name = k === 1 ? 'backup' : `backup${k}`;
    const joins = k === 1 ? [] : ['--connect', `127.0.0.1:${repl[k - 2]!}`];
    const child: Child = start(name, ['backup', ...joins, '--listen', `127.0.0.1:${repl[k - 1]!}`, '--serve', `127.0.0.1:${serveB[k - 1]!}`, '--timeout', '1500ms', '--interval', interval, '--linger', '10s', ...common], (e) => {
      if (e.event === 'failover') {
        progress.done();
        failovers++;
        failover ??= e;
        const how = failovers > killsMade
          ? `FAILOVER (unplanned: generation ${String(Number(e.generation) - 1)} was silent past the 1.5 s timeout; a loaded machine can starve it)`
          : 'FAILOVER';
        say(`${elapsed()} ${how}: ${name} fenced the old primary and resumed the guest from epoch ${String(e.epoch)} as generation ${String(e.generation)} (${String(e.records)} records committed)`);
        protectedAgain = false;
        if (k < MAX_BACKUPS) startBackupK(k + 1);
        else say(`demo: no backup left to start after ${name}'s takeover; its output stays held`);
      } else if (e.event === 'stats') showStats(e, 'new primary');
      else if (e.event === 'done') done = true;
      else if (e.event === 'protected' && failovers > 0 && !protectedAgain) {
        protectedAgain = true;
        progress.done();
        say(`${elapsed()} protected again: a new backup joined and holds epoch ${String(e.backupEpoch)}`);
        scheduleKill(child, `new primary (${name}, generation ${String(e.generation ?? '?')})`);
      }
    });
    return child;
  };
  startBackupK(1);
  let primaryProtected = false;
  const primary = start('primary', [
    'primary', '--connect', `127.0.0.1:${repl[0]!}`, '--serve', `127.0.0.1:${serveP}`, '--workload', workload,
    '--guest', guestType, '--seed', String(seed), '--steps', String(steps), '--memory', String(memory), '--vcpus', '1', '--linger', '10s', '--interval', interval, ...primaryTimeout, ...common,
  ], (e) => {
    if (e.event === 'stats') showStats(e, 'primary');
    else if (e.event === 'protected' && !primaryProtected) {
      primaryProtected = true;
      say(`${elapsed()} primary protected: backup holds epoch ${String(e.backupEpoch)}`);
      scheduleKill(primary, 'primary');
    } else if (e.event === 'done') done = true;
  });
  // The reference: the same workload run alone, unreplicated (its final checksum must match).
  let reference: { final?: string; records?: number } | null = null;
  const refRun = start('reference', ['run', '--guest', guestType, '--workload', workload, '--seed', String(seed), '--steps', String(steps), '--memory', String(memory), '--vcpus', '1', '--json'], (e) => {
    if (typeof e.final === 'string') reference = e as { final: string; records: number };
  });
  let verdict: Record<string, unknown> | null = null;
  const servers = [serveP, ...serveB].map((p) => `127.0.0.1:${p}`).join(',');
  const client = start('client', ['client', '--connect', servers, '--verify', '--json', '--timeout', '20s'], (e) => {
    if ('verdict' in e) verdict = e;
  });
  // Stopped when nothing moves for 30 s (no record released, no new primary), or after 5 minutes:
  // a nested, loaded machine runs the replicated guest slowly (docs/replication.md), so a fixed
  // short deadline failed runs that were progressing.
  const deadline = setInterval(() => {
    const now = performance.now();
    if (now - lastProgress < STALL_MS && now - t0 < MAX_MS) return;
    clearInterval(deadline);
    progress.done();
    say(`demo: ${now - t0 >= MAX_MS ? `${MAX_MS / 60_000} minutes passed` : `nothing moved for ${STALL_MS / 1000} s`} without a verdict; stopping`);
    for (const c of children) c.proc.kill('SIGKILL');
  }, 1000);
  const clientCode = await client.exited;
  progress.done();
  clearInterval(deadline);
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
      protectedAgain, newBackup: failovers > 0, failovers, kills: killsMade, unplannedFailovers: Math.max(0, failovers - killsMade), lastStats, client: v, reference: ref,
    }) + '\n');
  } else {
    if (!killedAt) say('note: the workload finished before the kill instant; no failover this time');
    const why = !v ? `client exited with ${clientCode}` : (v.problems as string[]).length ? (v.problems as string[]).join('; ')
      : !ref ? 'the reference run did not finish' : `stream (${String(v.records)} records, final ${String(v.final)}) differs from the unreplicated run (${String(ref.records)} records, final ${String(ref.final)})`;
    // The verdict is the result: stdout (the story above is progress, on stderr).
    process.stdout.write((pass
      ? `verdict: PASS: ${String(v?.records)} records, no gap, no duplicate, hash chain unbroken, final ${String(v?.final)} equal to an unreplicated run${failovers > 1 ? ` — across ${failovers} failovers` : failover ? ' — across a failover' : ''}`
      : `verdict: FAIL: ${why}`) + '\n');
  }
  return pass ? 0 : 1;
}
