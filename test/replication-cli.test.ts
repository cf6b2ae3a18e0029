/**
 * Child-process failover tests: `understudy backup` / `primary` processes (with the TEST STAND-IN
 * guest registered through test/helpers/cli-fake.ts; kernels are native), SIGKILLed at random
 * instants. Each time the client's stream equals the reference run, final checksum included.
 */
import { describe, it, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeKeyFile } from '../lib/replication/auth.js';
import { followStream, StreamVerifier, type Reference } from '../lib/replication/client.js';
import { referenceRun, chainHex } from './helpers/fake-guest.js';
import { freePort } from './helpers/ports.js';
import { Child, expectResyncedAfterBackupKill, killBackupThenResync, killPrimaryDuringStream, untilClientHolds } from './helpers/children.js';

const dir = mkdtempSync(join(tmpdir(), 'us-repl-'));
const keyFile = join(dir, 'key');
writeKeyFile(keyFile);
const STEPS = 100000;
const MEM = '8';
const refs = new Map<string, Reference>();

async function reference(seed: number, steps = STEPS): Promise<Reference> {
  let r = refs.get(`${seed}/${steps}`);
  if (!r) {
    const run = await referenceRun({ seed, steps, memoryMiB: Number(MEM) });
    r = { records: run.lines.map((l) => JSON.parse(l) as { seq: number; data: string; chain: string }), final: run.final };
    refs.set(`${seed}/${steps}`, r);
  }
  return r;
}

const common = ['--key', keyFile, '--json', '--quiet', '--timeout', '400ms'];
const local = (p: number) => `127.0.0.1:${p}`;

function backupArgs(listen: number, serve: number): string[] {
  // A long --linger: a backup that takes over an already finished workload waits for the client
  // (still cycling through dead addresses) to come back; every child is killed at the end anyway.
  return ['backup', '--listen', local(listen), '--serve', local(serve), '--interval', '10ms', '--linger', '5s', ...common];
}
function primaryArgs(connect: number, serve: number, seed: number, steps = STEPS): string[] {
  return ['primary', '--connect', local(connect), '--serve', local(serve), '--steps', String(steps), '--memory', MEM, '--seed', String(seed), '--interval', '10ms', '--linger', '200ms', ...common];
}

// The kill instant is a share of the stream the client already holds (0 = as soon as the primary
// is protected): wall-clock delays missed the run entirely on a quiet machine, where it ends sooner.
async function killPrimaryTrial(seed: number, share: number): Promise<{ problems: string[]; final: string | null; want: string | null; failover: boolean; killed: boolean; reconnects: number }> {
  const ref = await reference(seed);
  const [repl, serveP, serveB] = await Promise.all([freePort(), freePort(), freePort()]);
  const children: Child[] = [];
  const backup = new Child(backupArgs(repl, serveB));
  children.push(backup);
  const primary = new Child(primaryArgs(repl, serveP, seed));
  children.push(primary);
  const { res, failover, killed } = await killPrimaryDuringStream({
    backup, primary, children, joinArgs: ['backup', '--connect', local(repl), ...common],
    addresses: [{ host: '127.0.0.1', port: serveP }, { host: '127.0.0.1', port: serveB }],
    verifier: new StreamVerifier(chainHex, ref), killAfter: Math.floor(share * ref.records.length),
  });
  for (const c of children) c.kill();
  await Promise.all(children.map((c) => c.exited));
  return { problems: res.problems, final: res.final, want: ref.final, failover, killed, reconnects: res.reconnects };
}

describe('child processes: SIGKILL and failover (stand-in guest)', () => {
  it('primary SIGKILLed at 20 random instants: the stream always equals the reference', async () => {
    const results = [];
    for (let i = 0; i < 20; i += 2) {
      const pair = await Promise.all([0, 1].map((k) => {
        // 20 instants spread over the first 80 % of the stream, jittered per run.
        const share = Math.min(0.8, ((i + k) / 20) * 0.8 + Math.random() * 0.04);
        return killPrimaryTrial(100 + i + k, share).then((r) => ({ ...r, share }));
      }));
      results.push(...pair);
    }
    for (const r of results) {
      expect(r.problems, `killed at ${(r.share * 100).toFixed(1)} % of the stream`).toEqual([]);
      expect(r.final).toBe(r.want);
    }
    // Most kills must land before the primary has released the whole stream (then the client
    // has to finish on the backup), or this test would prove little. A late kill can find the
    // stream already released in one burst; those trials still had to be exact.
    const onBackup = results.filter((r) => r.killed && r.reconnects >= 1).length;
    console.log(`replication: ${onBackup} of 20 SIGKILLed primaries failed over mid-stream`);
    expect(onBackup).toBeGreaterThanOrEqual(14);
  }, 170_000);

  it('backup SIGKILLed: the primary reports degraded, holds output, resyncs a new backup fully', async () => {
    // A longer run than the default: on a loaded machine the default one was sometimes wholly
    // released before the primary noticed the backup had gone, leaving nothing to hold.
    const seed = 300;
    const LONG = 4 * STEPS;
    const ref = await reference(seed, LONG);
    const [repl, serveP, serveB] = await Promise.all([freePort(), freePort(), freePort()]);
    const t = await killBackupThenResync({
      backupArgs: backupArgs(repl, serveB), primaryArgs: primaryArgs(repl, serveP, seed, LONG),
      serve: serveP, verifier: new StreamVerifier(chainHex, ref),
    });
    expectResyncedAfterBackupKill(t, ref);
  }, 60_000);

  it('primary, then the promoted backup, SIGKILLed in turn; a stale primary is refused and fences itself', async () => {
    const seed = 400;
    const LONG = 1_000_000;
    const ref = await reference(seed, LONG);
    const [repl, repl2, serveP, serveB, serveB2] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    // Once promoted, this backup pauses its guest while it has no backup of its own, so the second
    // kill still finds a stream to interrupt (a 150 ms delay once missed the whole run).
    const backup = new Child([...backupArgs(repl, serveB), '--on-backup-loss', 'pause']);
    const primary = new Child(primaryArgs(repl, serveP, seed, LONG));
    const children = [backup, primary];
    const v = new StreamVerifier(chainHex, ref);
    const following = followStream({ addresses: [{ host: '127.0.0.1', port: serveP }, { host: '127.0.0.1', port: serveB }, { host: '127.0.0.1', port: serveB2 }], verifier: v, timeoutMs: 30_000 });
    // Kill instants are shares of the stream the client holds, not wall-clock delays.
    const reach = (share: number) => untilClientHolds(v, Math.floor(share * ref.records.length));
    await primary.waitFor((e) => e.event === 'protected');
    await reach(0.15);
    primary.kill();
    const fo = await backup.waitFor((e) => e.event === 'failover');
    expect(fo?.generation).toBe('2');
    // A stale primary (generation 1, same VM? no: a fresh one) dials the promoted backup: refused.
    const stale = new Child(primaryArgs(repl, serveP, seed));
    children.push(stale);
    const fenced = await stale.waitFor((e) => e.event === 'fenced');
    expect(String(fenced?.reason)).toMatch(/generation 2 > ours \(1\)|stale/);
    expect(await stale.exited).toBe(1);
    // Second backup joins the promoted one (it listens on repl2 for a later takeover's backup).
    const b2 = new Child(['backup', '--connect', local(repl), '--listen', local(repl2), '--serve', local(serveB2), '--interval', '10ms', '--linger', '5s', ...common]);
    children.push(b2);
    await backup.waitFor((e) => e.event === 'protected');
    await reach(0.4);
    backup.kill();
    const fo2 = await b2.waitFor((e) => e.event === 'failover');
    expect(fo2?.generation, JSON.stringify(b2.events.filter((e) => e.event !== 'commit'))).toBe('3');
    children.push(new Child(['backup', '--connect', local(repl2), ...common]));
    const res = await following;
    const trace = children.map((c, i) => `#${i}: ` + c.events.filter((e) => e.event === 'log' || e.event === 'failover' || e.event === 'degraded').map((e) => String(e.line ?? e.event)).join(' | ')).join('\n');
    expect(res.problems, trace).toEqual([]);
    expect(res.final).toBe(ref.final);
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exited));
  }, 90_000);
});

const skipKvm = process.env.UNDERSTUDY_SKIP_KVM === '1';
if (skipKvm) console.log('replication demo on kvm: skipped because UNDERSTUDY_SKIP_KVM=1');

describe.each(skipKvm ? ['sim'] : ['sim', 'kvm'])('understudy demo on the real %s guest', (guestType) => {
  it('kills the primary, fails over, and the client verdict passes (stream equal to an unreplicated run)', async () => {
    const { spawn } = await import('node:child_process');
    const root = join(import.meta.dirname, '..');
    // kvm: 120k steps (the demo's default is 500k, which took ~41 s alone on one machine and
    // passed the demo's 55 s deadline in a full run there; 200k still came within a few seconds
    // of it in full runs, and passed it once with other jobs on the box). sim keeps the default:
    // it runs in a few seconds, and a much shorter run can end before the client connects.
    const steps = guestType === 'kvm' ? '120000' : '500000';
    const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'lib/cli/main.ts'), 'demo', '--guest', guestType, '--steps', steps, '--json'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d));
    const code = await new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
    const summary = JSON.parse(out.trim().split('\n').pop()!) as { pass: boolean; failover: { generation: string } | null; killedAt: string | null; client: { problems: string[]; verdict: string } };
    expect(summary.client.problems).toEqual([]);
    expect(summary.client.verdict).toBe('pass');
    expect(summary.pass).toBe(true);
    expect(code).toBe(0);
    // The kill lands mid-run in practice; when the run outpaces it the demo says so, and the
    // stream is still checked.
    if (summary.killedAt !== null) expect(summary.failover?.generation).toBe('2');
  }, 90_000);
});

describe(`understudy demo --kills 2 (${skipKvm ? 'sim' : 'kvm'} guest)`, () => {
  it('kills the promoted backup too: a third backup protects the third primary, and the verdict passes', async () => {
    const { spawn } = await import('node:child_process');
    const root = join(import.meta.dirname, '..');
    // The run must outlast two kills (the second lands ~5-8 s in): kvm 250k steps runs ~20 s
    // replicated here; the sim guest is faster (2M steps ended before the second kill once in a
    // full run), so it takes 6M.
    const [guest, steps] = skipKvm ? ['sim', '6000000'] : ['kvm', '250000'];
    const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'lib/cli/main.ts'), 'demo', '--guest', guest, '--steps', steps, '--kills', '2', '--json'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d));
    const code = await new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
    const summary = JSON.parse(out.trim().split('\n').pop()!) as {
      pass: boolean; kills: number; failovers: number; unplannedFailovers: number; lastStats: { generation: string }; client: { problems: string[] };
    };
    expect(summary.client.problems).toEqual([]);
    expect([summary.pass, code, summary.kills]).toEqual([true, 0, 2]);
    // Each kill made a failover (an unplanned one on a starved machine would add to them).
    expect(summary.failovers).toBe(2 + summary.unplannedFailovers);
    expect(Number(summary.lastStats.generation)).toBe(1 + summary.failovers);
  }, 180_000);
});

describe('replication commands: options checked before anything starts', () => {
  it('backup warns when it has --connect but no --listen: once promoted, no backup could join it', async () => {
    const { spawn } = await import('node:child_process');
    const root = join(import.meta.dirname, '..');
    const port = await freePort(); // nothing listens there: the backup keeps dialling
    const run = (extra: string[]) => new Promise<string>((resolve) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'lib/cli/main.ts'), 'backup', '--connect', local(port), '--insecure', '--quiet', ...extra], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      proc.stderr.on('data', (d: Buffer) => (err += d));
      setTimeout(() => proc.kill('SIGTERM'), 6000); // the warning comes right after start-up (~1 s)
      proc.on('exit', () => resolve(err));
    });
    const [bare, listening, holdOnly] = await Promise.all([run([]), run(['--listen', local(await freePort())]), run(['--no-takeover'])]);
    const warning = 'backup: warning: no --listen: if this backup takes over, no new backup can join it, and its output stays held; give --listen HOST:PORT for the next backup\n';
    expect(bare.split('\n').filter((l) => l.includes('warning'))).toEqual([warning.trimEnd()]);
    expect([listening.includes('warning'), holdOnly.includes('warning')]).toEqual([false, false]);
  }, 30_000);

  it('backup refuses a bad --interval or --linger at startup (exit 2), not at failover', async () => {
    const { cli } = await import('./helpers/cli.js');
    const port = await freePort();
    const base = ['backup', '--listen', local(port), '--insecure', '--no-takeover'];
    const short = cli([...base, '--interval', '2ms']);
    expect([short.status, short.stdout, short.stderr]).toEqual([2, '', 'understudy: backup: --interval must be at least 5ms, got 2ms\n']);
    const linger = cli([...base, '--linger', 'abc']);
    expect([linger.status, linger.stdout, linger.stderr]).toEqual([2, '', 'understudy: backup: --linger must be a duration like 25ms, 1s, 30m, 2h or 1d (a bare number is milliseconds), got "abc"\n']);
  });

  it('demo refuses a bad --guest, --workload, --interval or --memory at once (exit 2), before any child', async () => {
    const { cli } = await import('./helpers/cli.js');
    const cases: [string[], string][] = [
      [['--guest', 'foo'], '--guest must be kvm, sim or auto, got "foo"'],
      [['--workload', 'nope', '--guest', 'sim'], '--workload must be one of uniform, hotset, sequential, sparse, memcheck, kv, got "nope"'],
      [['--interval', '2ms', '--guest', 'sim'], '--interval must be at least 5ms, got 2ms'],
      [['--memory', '4', '--guest', 'sim'], '--memory must be from 8 to '],
    ];
    for (const [args, msg] of cases) {
      const t0 = performance.now();
      const r = cli(['demo', ...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.startsWith(`understudy: demo: ${msg}`), r.stderr).toBe(true);
      expect(r.stderr.split('\n').length).toBe(2); // one line: no child was started
      expect(performance.now() - t0).toBeLessThan(20_000);
    }
  });

  it('client --connect with an empty address says the value is malformed (exit 2)', async () => {
    const { cli } = await import('./helpers/cli.js');
    const r = cli(['client', '--connect', '127.0.0.1:1,']);
    expect([r.status, r.stdout, r.stderr]).toEqual([2, '', 'understudy: client: --connect must be HOST:PORT[,HOST:PORT...] with no empty entry, got "127.0.0.1:1,"\n']);
    const one = cli(['client', '--connect', '']);
    expect([one.status, one.stderr]).toEqual([2, 'understudy: client: --connect must be HOST:PORT[,HOST:PORT...] with no empty entry, got ""\n']);
  });

  it('client without --verify says why it failed (it exited 1 with nothing on stdout or stderr)', async () => {
    const { cli } = await import('./helpers/cli.js');
    const r = cli(['client', '--connect', local(await freePort()), '--timeout', '300ms']);
    expect([r.status, r.stdout, r.stderr]).toEqual([1, '', 'understudy: client: no address delivered the rest of the stream within 300 ms\n']);
  });

  it('a primary waits up to --linger for a client that comes after the run ended, and serves it the whole stream', async () => {
    // It used to linger only while a client was connected: 100 ms after the end it said BYE and
    // exited (and its backup with it), so a client started a moment late got nothing from anyone.
    const seed = 4711;
    const ref = await reference(seed);
    const [repl, serveP, serveB] = await Promise.all([freePort(), freePort(), freePort()]);
    const backup = new Child(backupArgs(repl, serveB));
    const args = primaryArgs(repl, serveP, seed);
    args[args.indexOf('--linger') + 1] = '20s';
    const primary = new Child(args);
    try {
      expect(await primary.waitFor((e) => e.event === 'done')).not.toBeNull();
      await new Promise((r) => setTimeout(r, 800));
      const res = await followStream({
        addresses: [{ host: '127.0.0.1', port: serveP }, { host: '127.0.0.1', port: serveB }],
        verifier: new StreamVerifier(chainHex, ref), timeoutMs: 3000,
      });
      expect(res.problems).toEqual([]);
      expect(res.final).toBe(ref.final);
      // Served the end: it goes now, not at the end of the 20 s linger.
      const t0 = performance.now();
      expect(await primary.exited).toBe(0);
      expect(performance.now() - t0).toBeLessThan(5000);
    } finally {
      primary.kill();
      backup.kill();
      await Promise.all([primary.exited, backup.exited]);
    }
  }, 60_000);

  it('a primary that never had a backup does not say the backup is behind', async () => {
    // --retain 10: output held with no backup soon passes half of it, the guest is paused, and
    // the epoch loop (not ready) lengthens its interval: that is not a backup falling behind.
    const port = await freePort();
    const p = new Child(['primary', '--connect', local(port), '--steps', String(4 * STEPS), '--memory', MEM, '--seed', '9', '--interval', '10ms', '--retain', '10', ...common]);
    const paused = await p.waitFor((e) => e.event === 'log' && /guest paused until a backup connects/.test(String(e.line)));
    expect(paused).not.toBeNull();
    // 10 ms doubling to 160 ms: four lengthenings within 300 ms.
    await new Promise((r) => setTimeout(r, 600));
    p.kill();
    await p.exited;
    const lines = p.events.filter((e) => e.event === 'log').map((e) => String(e.line));
    expect(lines.filter((l) => /backup is behind|backup caught up/.test(l))).toEqual([]);
  }, 30_000);
});
