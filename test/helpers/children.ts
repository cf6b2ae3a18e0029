/**
 * TEST ONLY: spawn `understudy` subcommands as child processes and watch their --json event lines:
 * either the real CLI (dist/cli/main.js, built by `npm install`: real kvm/sim guests) or
 * test/helpers/cli-fake.ts (the stand-in guest with the native kernels).
 */
import { expect } from 'vitest';
import { existsSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { followStream, type FollowResult, type StreamVerifier } from '../../lib/replication/client.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The compiled CLI (`node dist/cli/main.js`); throws if `npm install` / tsc has not built it. */
export function realCli(): string {
  const main = join(root, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`npx tsc -p tsconfig.json\` (npm install does) first`);
  return main;
}

export interface Ev {
  event: string;
  [k: string]: unknown;
}

export class Child {
  readonly proc: ChildProcess;
  readonly events: Ev[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  private waiters: { pred: (e: Ev) => boolean; resolve: (e: Ev) => void }[] = [];

  constructor(args: string[], opts: { real?: boolean } = {}) {
    const entry = opts.real ? [realCli()] : ['--import', 'tsx', join(root, 'test/helpers/cli-fake.ts')];
    this.proc = spawn(process.execPath, [...entry, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => {
      let e: Ev;
      try {
        e = JSON.parse(l) as Ev;
      } catch {
        return;
      }
      this.events.push(e);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(e)) return true;
        w.resolve(e);
        return false;
      });
    });
    createInterface({ input: this.proc.stderr! }).on('line', (l) => this.stderr.push(l));
    this.exited = new Promise((r) => this.proc.on('exit', (code) => r(code)));
  }

  /** Resolves with the first event (past or future) matching pred; null on exit. */
  waitFor(pred: (e: Ev) => boolean): Promise<Ev | null> {
    const past = this.events.find(pred);
    if (past) return Promise.resolve(past);
    return Promise.race([new Promise<Ev>((resolve) => this.waiters.push({ pred, resolve })), this.exited.then(() => null)]);
  }

  kill(sig: NodeJS.Signals = 'SIGKILL'): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(sig);
  }
}

export interface KillTrial {
  backup: Child;
  primary: Child;
  /** Every child of the trial; a backup started after the failover is added here. */
  children: Child[];
  /** Arguments of the backup that joins the promoted one (started once, on 'failover'). */
  joinArgs: string[];
  childOpts?: { real?: boolean };
  /** Where the client reads: the primary's service port, then the backup's. */
  addresses: { host: string; port: number }[];
  verifier: StreamVerifier;
  /** SIGKILL the primary once the client holds this many records. */
  killAfter: number;
}

/**
 * Follows the stream of a backup + primary pair and SIGKILLs the primary once the client holds
 * `killAfter` records (a share of the stream, not a wall-clock delay: on a quiet machine a run
 * ends sooner than any fixed delay). After the trial no child is started any more: a leftover
 * backup would keep dialling a port a later test may be given.
 */
export async function killPrimaryDuringStream(t: KillTrial): Promise<{ res: FollowResult; failover: boolean; killed: boolean }> {
  let failover = false;
  let over = false;
  void t.backup.waitFor((e) => e.event === 'failover').then((e) => {
    if (!e || over) return;
    failover = true;
    t.children.push(new Child(t.joinArgs, t.childOpts));
  });
  let killed = false;
  let watch: NodeJS.Timeout | undefined;
  void t.primary.waitFor((e) => e.event === 'protected').then((e) => {
    if (!e) return;
    watch = setInterval(() => {
      if (t.verifier.records >= t.killAfter) {
        clearInterval(watch);
        killed = t.verifier.final === null;
        t.primary.kill();
      }
    }, 1);
  });
  const res = await followStream({ addresses: t.addresses, verifier: t.verifier, timeoutMs: 20_000 });
  clearInterval(watch);
  over = true;
  return { res, failover, killed };
}

/**
 * SIGKILLs the backup once the primary is protected, then starts a fresh backup and follows the
 * primary's whole stream. Returns what the primary said when it noticed (its degraded reason and
 * the records it had released by then), the client's result, and how often it was protected.
 */
/**
 * What both backup-kill tests (stand-in and real guest) assert: the primary noticed the lost
 * link while output was still held, the client's stream has no problems and ends at the
 * reference's final state, and protection came back after the resync.
 */
export function expectResyncedAfterBackupKill(
  t: Awaited<ReturnType<typeof killBackupThenResync>>,
  ref: { final: string | null; records: unknown[] },
): void {
  expect(t.degradedReason).toMatch(/^backup link (lost|closed)/);
  expect(t.res.problems).toEqual([]);
  expect(t.res.final).toBe(ref.final);
  expect(t.releasedAtDegraded).toBeLessThan(ref.records.length);
  expect(t.protectedCount).toBeGreaterThanOrEqual(2);
}

export async function killBackupThenResync(o: {
  backupArgs: string[];
  primaryArgs: string[];
  childOpts?: { real?: boolean };
  serve: number;
  verifier: StreamVerifier;
}): Promise<{ degradedReason: unknown; releasedAtDegraded: number; res: FollowResult; protectedCount: number }> {
  const backup = new Child(o.backupArgs, o.childOpts);
  const primary = new Child(o.primaryArgs, o.childOpts);
  const children = [backup, primary];
  try {
    await primary.waitFor((e) => e.event === 'protected');
    backup.kill();
    const degraded = await primary.waitFor((e) => e.event === 'degraded');
    const releasedAtDegraded = (primary.events.filter((e) => e.event === 'stats').pop()?.released as number | undefined) ?? 0;
    children.push(new Child(o.backupArgs, o.childOpts));
    const res = await followStream({ addresses: [{ host: '127.0.0.1', port: o.serve }], verifier: o.verifier, timeoutMs: 20_000 });
    // Event lines may trail the TCP stream a little: give stdout a moment.
    const count = () => primary.events.filter((e) => e.event === 'protected').length;
    for (let i = 0; i < 60 && count() < 2; i++) await new Promise((r) => setTimeout(r, 50));
    return { degradedReason: degraded?.reason, releasedAtDegraded, res, protectedCount: count() };
  } finally {
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.exited));
  }
}

/** Resolves once the client holds `records` records, or the stream ended or broke. */
export async function untilClientHolds(v: StreamVerifier, records: number): Promise<void> {
  while (v.records < records && v.final === null && v.ok) await new Promise((r) => setTimeout(r, 1));
}
