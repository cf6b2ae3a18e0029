/**
 * Network faults between primary and backup (in-process, native kernels, the TEST STAND-IN
 * guest): cut connections, delays, flipped bits, replayed frames. Every time the client's stream
 * equals the reference run and the backup refuses what it must refuse, with the reason logged.
 */
import { describe, it, expect } from 'vitest';
import { startPrimary } from '../lib/replication/primary.js';
import { startBackup } from '../lib/replication/backup.js';
import { followStream, StreamVerifier, type Reference } from '../lib/replication/client.js';
import { generateKey } from '../lib/replication/auth.js';
import { createFakeGuest, restoreFakeGuest, referenceRun, chainHex } from './helpers/fake-guest.js';
import { FaultProxy } from './helpers/proxy.js';

const key = generateKey();
const LOCAL = { host: '127.0.0.1', port: 0 };

async function reference(seed: number, steps: number): Promise<Reference> {
  const r = await referenceRun({ seed, steps, memoryMiB: 2 });
  return { records: r.lines.map((l) => JSON.parse(l) as { seq: number; data: string; chain: string }), final: r.final };
}

/** Injects `fault` when the released stream reaches each record count in `atRecords`. */
async function scenario(fault: (proxy: FaultProxy) => void, atRecords: number[]) {
  const steps = 60000;
  const ref = await reference(21, steps);
  const backup = await startBackup({ key, listen: LOCAL, restore: restoreFakeGuest, timeoutMs: 2000 });
  const logs: string[] = [];
  backup.on('log', (l) => logs.push(l));
  const proxy = new FaultProxy({ host: '127.0.0.1', port: backup.address!.port });
  const via = await proxy.listen();
  const primary = await startPrimary({ guest: createFakeGuest({ seed: 21, steps, memoryMiB: 2, batch: 10 }), key, connect: via, serve: LOCAL, intervalMs: 10 });
  const plogs: string[] = [];
  primary.on('log', (l) => plogs.push(l));
  let failovers = 0;
  backup.on('failover', () => failovers++);
  const pending = [...atRecords];
  primary.log.on('release', (n: number) => {
    if (pending.length && n >= pending[0]!) {
      pending.shift();
      fault(proxy); // one fault per release, so each lands on a fresh connection
    }
  });
  const res = await followStream({ addresses: [{ host: '127.0.0.1', port: primary.service!.address().port }], verifier: new StreamVerifier(chainHex, ref), timeoutMs: 20_000 });
  await primary.close();
  await backup.close();
  proxy.close();
  return { res, ref, logs, plogs, proxy, failovers, backup };
}

describe('replication under network faults (stand-in guest)', () => {
  it('connection cut twice: the primary reconnects, resyncs fully, nothing lost', async () => {
    const s = await scenario((p) => p.cut(), [300, 1200]);
    expect(s.res.problems).toEqual([]);
    expect(s.res.final).toBe(s.ref.final);
    // The second cut may land after the final acknowledgement; the first always lands mid-run.
    expect(s.proxy.connections).toBeGreaterThanOrEqual(2);
    expect(s.plogs.filter((l) => l.includes('full resync')).length).toBe(s.proxy.connections);
    expect(s.plogs.filter((l) => l.startsWith('backup link lost')).length).toBeGreaterThanOrEqual(2);
    expect(s.failovers).toBe(0);
  });

  it('delayed link (below the timeout): no failover, same stream', async () => {
    const s = await scenario((p) => {
      p.delayMs = p.delayMs ? 0 : 150;
    }, [200, 1500]);
    expect(s.res.problems).toEqual([]);
    expect(s.res.final).toBe(s.ref.final);
    expect(s.failovers).toBe(0);
  });

  it('a flipped bit drops the connection and the half-received epoch; the replica stays committed', async () => {
    const s = await scenario((p) => p.flip(64), [300]);
    expect(s.proxy.flipped).toBe(1);
    expect(s.res.problems).toEqual([]);
    expect(s.res.final).toBe(s.ref.final);
    expect(s.logs.some((l) => /primary link dropped: (frame MAC mismatch|frame magic|frame version|unknown frame type|frame flags|frame payload length)/.test(l))).toBe(true);
  });

  it('a replayed frame is refused and logged', async () => {
    const s = await scenario((p) => p.replay(), [300]);
    expect(s.proxy.replayed).toBe(1);
    expect(s.res.problems).toEqual([]);
    expect(s.res.final).toBe(s.ref.final);
    expect(s.logs.some((l) => /primary link dropped: (frame sequence must be \d+, got \d+: replayed|frame MAC mismatch|frame magic)/.test(l))).toBe(true);
  });
});
