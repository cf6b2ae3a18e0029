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
import { Child } from './helpers/children.js';

const dir = mkdtempSync(join(tmpdir(), 'us-repl-'));
const keyFile = join(dir, 'key');
writeKeyFile(keyFile);
const STEPS = 60000;
const MEM = '8';
const refs = new Map<number, Reference>();

async function reference(seed: number): Promise<Reference> {
  let r = refs.get(seed);
  if (!r) {
    const run = await referenceRun({ seed, steps: STEPS, memoryMiB: Number(MEM) });
    r = { records: run.lines.map((l) => JSON.parse(l) as { seq: number; data: string; chain: string }), final: run.final };
    refs.set(seed, r);
  }
  return r;
}

const common = ['--key', keyFile, '--json', '--quiet', '--timeout', '400ms'];
const local = (p: number) => `127.0.0.1:${p}`;

function backupArgs(listen: number, serve: number): string[] {
  return ['backup', '--listen', local(listen), '--serve', local(serve), '--interval', '10ms', '--linger', '200ms', ...common];
}
function primaryArgs(connect: number, serve: number, seed: number): string[] {
  return ['primary', '--connect', local(connect), '--serve', local(serve), '--steps', String(STEPS), '--memory', MEM, '--seed', String(seed), '--interval', '10ms', '--linger', '200ms', ...common];
}

async function killPrimaryTrial(seed: number, delayMs: number): Promise<{ problems: string[]; final: string | null; want: string | null; failover: boolean }> {
  const ref = await reference(seed);
  const [repl, serveP, serveB] = await Promise.all([freePort(), freePort(), freePort()]);
  const children: Child[] = [];
  const backup = new Child(backupArgs(repl, serveB));
  children.push(backup);
  const primary = new Child(primaryArgs(repl, serveP, seed));
  children.push(primary);
  let failover = false;
  void backup.waitFor((e) => e.event === 'failover').then((e) => {
    if (!e) return;
    failover = true;
    children.push(new Child(['backup', '--connect', local(repl), ...common]));
  });
  void primary.waitFor((e) => e.event === 'protected').then((e) => {
    if (e) setTimeout(() => primary.kill(), delayMs);
  });
  const res = await followStream({ addresses: [{ host: '127.0.0.1', port: serveP }, { host: '127.0.0.1', port: serveB }], verifier: new StreamVerifier(chainHex, ref), timeoutMs: 20_000 });
  for (const c of children) c.kill();
  await Promise.all(children.map((c) => c.exited));
  return { problems: res.problems, final: res.final, want: ref.final, failover };
}

describe('child processes: SIGKILL and failover (stand-in guest)', () => {
  it('primary SIGKILLed at 20 random instants: the stream always equals the reference', async () => {
    const results = [];
    for (let i = 0; i < 20; i += 2) {
      const pair = await Promise.all([0, 1].map((k) => {
        const delay = Math.floor(Math.random() * 1000);
        return killPrimaryTrial(100 + i + k, delay).then((r) => ({ ...r, delay }));
      }));
      results.push(...pair);
    }
    for (const r of results) {
      expect(r.problems, `killed ${r.delay} ms after protection`).toEqual([]);
      expect(r.final).toBe(r.want);
    }
    // The kills must mostly land mid-run, or this test would prove little.
    expect(results.filter((r) => r.failover).length).toBeGreaterThanOrEqual(10);
  }, 170_000);
});
