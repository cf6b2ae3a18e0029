/**
 * The six workloads on the KVM guest against the simulated guest: byte-identical output records
 * and the same final checksum for every workload on several seeds (1 and 2 vCPUs), and the same
 * after a save/restore of the KVM guest at a random point.
 *
 * Needs /dev/kvm: fails with the reason if it cannot be opened, unless UNDERSTUDY_SKIP_KVM=1.
 */
import { describe, expect, it } from 'vitest';
import { createGuest, restoreGuest, WORKLOAD_NAMES } from '../lib/guest/index.js';
import { kvmAvailable } from '../lib/guest/kvm.js';
import type { Guest, GuestOptions, OutputRecord } from '../lib/guest/types.js';

const avail = kvmAvailable();
const skip = !avail.ok && process.env.UNDERSTUDY_SKIP_KVM === '1';
if (skip) console.log(`KVM workload tests skipped (UNDERSTUDY_SKIP_KVM=1): ${avail.reason}`);
const suite = skip ? describe.skip : describe;

async function runToEnd(g: Guest): Promise<{ final: string; records: OutputRecord[] }> {
  const records: OutputRecord[] = [];
  const { final } = await g.wait();
  records.push(...g.takeOutput());
  await g.close();
  return { final, records };
}

const STEPS = 3000;

suite('kvm vs sim on every workload', () => {
  it('/dev/kvm can be opened', () => {
    expect(avail.reason ?? null).toBe(null);
  });
  for (const workload of WORKLOAD_NAMES) {
    for (const [seed, vcpus] of [[1, 1], [2, 1], [3, 2]] as const) {
      it(`${workload}, seed ${seed}, ${vcpus} vCPU: same records and final checksum`, async () => {
        const o: GuestOptions = { workload, seed, vcpus, steps: STEPS, memoryMiB: 32 };
        const sim = await runToEnd(await createGuest({ ...o, type: 'sim' }));
        const kvmGuest = await createGuest({ ...o, type: 'kvm' });
        expect(kvmGuest.type).toBe('kvm');
        const kvm = await runToEnd(kvmGuest);
        expect(sim.records.length).toBeGreaterThan(0);
        expect(kvm.records).toEqual(sim.records);
        expect(kvm.final).toBe(sim.final);
      });
    }
  }
  it('kv: save at a random point, restore into a fresh KVM guest: same records and final', async () => {
    const o: GuestOptions = { workload: 'kv', seed: 9, steps: 20_000, memoryMiB: 32 };
    const ref = await runToEnd(await createGuest({ ...o, type: 'sim' }));
    const g = await createGuest({ ...o, type: 'kvm' });
    await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
    await g.pause();
    const before = g.takeOutput();
    const image = g.memory.view.slice();
    const cpu = g.saveCpu();
    await g.close();
    const r = await restoreGuest({ memoryImage: image, cpu });
    expect(r.type).toBe('kvm');
    const after = await runToEnd(r);
    expect([...before, ...after.records]).toEqual(ref.records);
    expect(after.final).toBe(ref.final);
  });
});
