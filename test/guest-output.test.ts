/**
 * The Guest interface's 'output' event (shared ARCHITECTURE.md: `on('output' | 'exit', ...)`), on
 * both backends: a listener alone gets the whole record stream of a run, the same records
 * takeOutput() gives, each once and in order; pause() and close() drain for listeners; once
 * takeOutput() is called its caller owns the stream and listeners see what it returns.
 *
 * The kvm cases need /dev/kvm: they fail with the reason when it cannot be opened, unless
 * UNDERSTUDY_SKIP_KVM=1 (then they are skipped and the reason is printed).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createGuest } from '../lib/guest/index.js';
import { kvmAvailable } from '../lib/guest/kvm.js';
import type { Guest, GuestOptions, OutputRecord } from '../lib/guest/types.js';

const avail = kvmAvailable();
const skipKvm = !avail.ok && process.env.UNDERSTUDY_SKIP_KVM === '1';
if (skipKvm) console.log(`kvm 'output' tests skipped (UNDERSTUDY_SKIP_KVM=1): ${avail.reason}`);

const lines = (recs: OutputRecord[]) => recs.map((r) => `${r.seq} ${Buffer.from(r.data).toString('hex')} ${r.chain}`);

function opts(type: 'sim' | 'kvm', seed: number, steps: number): GuestOptions {
  return { type, workload: 'kv', seed, steps, memoryMiB: 16, start: false };
}

/** The reference stream: takeOutput() at the end of an unlistened run. */
async function reference(type: 'sim' | 'kvm', seed: number, steps: number): Promise<{ records: OutputRecord[]; final: string }> {
  const g = await createGuest(opts(type, seed, steps));
  g.start();
  const { final } = await g.wait();
  const records = g.takeOutput();
  await g.close();
  return { records, final };
}

for (const type of ['sim', 'kvm'] as const) {
  const suite = type === 'kvm' && skipKvm ? describe.skip : describe;
  suite(`${type}: the 'output' event`, () => {
    it('a listener alone gets every record once, in order, and the exit after the last', async () => {
      const ref = await reference(type, 9127, 1500);
      expect(ref.records.length).toBeGreaterThan(100);
      const g = await createGuest(opts(type, 9127, 1500));
      const got: OutputRecord[] = [];
      const events: string[] = [];
      g.on('output', (r) => {
        got.push(r);
        if (events.at(-1) !== 'output') events.push('output');
      });
      g.on('exit', () => events.push('exit'));
      g.start();
      const { final } = await g.wait();
      expect(final).toBe(ref.final);
      expect(lines(got)).toEqual(lines(ref.records));
      expect(events.at(-1)).toBe('exit');
      expect(g.takeOutput()).toEqual([]);
      await g.close();
    });

    it('pause() drains for listeners; takeOutput() then takes over and listeners see what it returns', async () => {
      const ref = await reference(type, 31, 100_000);
      const g = await createGuest(opts(type, 31, 100_000));
      const heard: OutputRecord[] = [];
      g.on('output', (r) => heard.push(r));
      g.start();
      await sleep(5);
      await g.pause();
      // Every record written before the pause has gone to the listener, none is left to take.
      expect(g.result).toBeNull();
      const beforeTake = heard.length;
      expect(beforeTake).toBeGreaterThan(0);
      expect(g.takeOutput()).toEqual([]);
      g.resume();
      const { final } = await g.wait();
      await sleep(20); // no drain of the guest's own now: only what takeOutput() returns is heard
      expect(heard.length).toBe(beforeTake);
      const taken = g.takeOutput();
      await new Promise((r) => process.nextTick(r));
      expect(final).toBe(ref.final);
      expect(lines(heard)).toEqual(lines(ref.records));
      expect(lines(taken)).toEqual(lines(ref.records.slice(beforeTake)));
      await g.close();
    });

    it('close() of an unfinished guest gives listeners the records it has; a listener added after exit gets the rest', async () => {
      const ref = await reference(type, 77, 200_000);
      const g = await createGuest(opts(type, 77, 200_000));
      const heard: OutputRecord[] = [];
      g.on('output', (r) => heard.push(r));
      g.start();
      await sleep(30);
      await g.close();
      expect(heard.length).toBeGreaterThan(0);
      expect(lines(heard)).toEqual(lines(ref.records.slice(0, heard.length)));

      const h: Guest = await createGuest(opts(type, 78, 400));
      h.start();
      const { final } = await h.wait();
      const late: OutputRecord[] = [];
      h.on('output', (r) => late.push(r));
      await new Promise((r) => process.nextTick(r));
      const ref78 = await reference(type, 78, 400);
      expect(final).toBe(ref78.final);
      expect(lines(late)).toEqual(lines(ref78.records));
      await h.close();
    });
  });
}
