/**
 * The KVM guest (lib/guest/kvm.ts over native/vmm): determinism under pause/resume, save/restore
 * into a fresh VM, dirty-log completeness, hostile CPU blobs, and guest faults as 'error' events.
 *
 * Needs /dev/kvm. If it cannot be opened the tests fail with the reason, unless
 * UNDERSTUDY_SKIP_KVM=1 (then they are skipped and the reason is printed).
 *
 * The VMM's own test entries (native/payload/selftest.c, `testEntry`) drive most tests, so they do
 * not depend on the workloads; test/guest-kvm-workloads.test.ts compares kvm and sim on those.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../lib/native.js';
import { xxh3 } from '@node-rs/xxhash';
import { createKvmGuest, kvmAvailable, restoreKvmGuest, type KvmGuestOptions } from '../lib/guest/kvm.js';
import type { Guest, OutputRecord } from '../lib/guest/types.js';
import { createGuest, GuestError } from '../lib/guest/index.js';

const avail = kvmAvailable();
const skip = !avail.ok && process.env.UNDERSTUDY_SKIP_KVM === '1';
if (skip) console.log(`KVM tests skipped (UNDERSTUDY_SKIP_KVM=1): ${avail.reason}`);
const suite = skip ? describe.skip : describe;

const MIX = 0xf4;
const TOUCHER = 0xf3;

function opts(o: Partial<KvmGuestOptions>): KvmGuestOptions {
  return { workload: 'uniform', memoryMiB: 32, ...o } as KvmGuestOptions;
}

/** Recomputes every record's chain from the previous one. */
function checkChain(records: OutputRecord[], start = 0n): void {
  let prev = start;
  records.forEach((r, i) => {
    expect(r.seq).toBe(i + (records[0]?.seq ?? 0));
    const buf = new Uint8Array(8 + r.data.length);
    new DataView(buf.buffer).setBigUint64(0, prev, true);
    buf.set(r.data, 8);
    prev = xxh3.xxh64(buf, 0n);
    expect(r.chain).toBe(prev.toString(16).padStart(16, '0'));
  });
}

async function runToEnd(g: Guest): Promise<{ final: string; records: OutputRecord[] }> {
  const { final } = await g.wait();
  const records = g.takeOutput();
  await g.close();
  return { final, records };
}

const spin = (us: number) => {
  const end = process.hrtime.bigint() + BigInt(Math.round(us * 1000));
  while (process.hrtime.bigint() < end);
};

// A small deterministic PRNG for the random instants (so failures reproduce).
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

suite('kvm guest', () => {
  it('/dev/kvm can be opened and a VM created', () => {
    expect(avail.reason ?? null).toBe(null);
    expect(avail.ok).toBe(true);
  });

  it('runs the test mix to the end with a consistent hash chain, the same on every run', async () => {
    const a = await runToEnd(await createKvmGuest(opts({ testEntry: MIX, steps: 20_000, seed: 7 })));
    const b = await runToEnd(await createKvmGuest(opts({ testEntry: MIX, steps: 20_000, seed: 7 })));
    const c = await runToEnd(await createKvmGuest(opts({ testEntry: MIX, steps: 20_000, seed: 8 })));
    expect(a.records.length).toBe(20_000 / 16);
    checkChain(a.records);
    expect(b.final).toBe(a.final);
    expect(b.records).toEqual(a.records);
    expect(c.final).not.toBe(a.final);
    expect(a.final).toMatch(/^[0-9a-f]{16}$/);
  });

  for (const vcpus of [1, 2]) {
    it(`pausing and resuming thousands of times at random instants changes nothing (${vcpus} vCPU)`, async () => {
      const o = opts({ testEntry: MIX, steps: 60_000, seed: 3, vcpus });
      const ref = await runToEnd(await createKvmGuest(o));
      const g = await createKvmGuest(o);
      const rand = rng(42 + vcpus);
      const records: OutputRecord[] = [];
      let pauses = 0;
      while (!g.result && !(g as unknown as { error: Error | null }).error) {
        spin(rand() * 100);
        await g.pause();
        pauses++;
        if (pauses % 7 === 0) records.push(...g.takeOutput());
        if (pauses % 13 === 0) g.takeDirty();
        g.resume();
      }
      const { final } = await g.wait();
      records.push(...g.takeOutput());
      await g.close();
      console.log(`${vcpus} vCPU: ${pauses} pauses during the run`);
      expect(pauses).toBeGreaterThanOrEqual(1000);
      expect(ref.records.length).toBe(60_000 / 16);
      expect(final).toBe(ref.final);
      expect(records).toEqual(ref.records);
    });
  }

  for (const vcpus of [1, 2]) {
    it(`save memory + CPU at random points, restore into a fresh VM: same result (${vcpus} vCPU)`, async () => {
      const o = opts({ testEntry: MIX, steps: 300_000, seed: 11, vcpus });
      const ref = await runToEnd(await createKvmGuest(o));
      const rand = rng(7 * vcpus);
      for (let k = 0; k < 3; k++) {
        const g = await createKvmGuest(o);
        spin(2000 + rand() * 60_000);
        await g.pause();
        const before = g.takeOutput();
        const image = g.memory.view.slice();
        const cpu = g.saveCpu();
        g.resume();
        const original = await runToEnd(g);
        expect(original.final).toBe(ref.final);
        const r = await restoreKvmGuest({ memoryImage: image, cpu });
        expect(r.vcpus).toBe(vcpus);
        const after = await runToEnd(r);
        expect(after.final).toBe(ref.final);
        expect([...before, ...after.records]).toEqual(ref.records);
      }
    });
  }

  for (const dirty of ['bitmap', 'ring'] as const) {
    it(`reports every page whose bytes changed between two pauses (${dirty})`, async () => {
      const g = await createKvmGuest(opts({ testEntry: MIX, steps: 2_000_000, seed: 5, vcpus: 2, memoryMiB: 64, dirty }));
      const page = g.pageSize;
      let truthTotal = 0;
      let reportedTotal = 0;
      await g.pause();
      g.takeDirty();
      let prev = Buffer.from(g.memory.view);
      for (let round = 0; round < 5; round++) {
        g.resume();
        spin(3000);
        await g.pause();
        const { bitmap, pfns } = g.takeDirty();
        const now = Buffer.from(g.memory.view);
        const reported = new Set(pfns);
        expect(pfns.length).toBe(bitmap.reduce((n, b) => n + popcount(b), 0));
        let truth = 0;
        for (let p = 0; p < g.pageCount; p++) {
          if (prev.compare(now, p * page, (p + 1) * page, p * page, (p + 1) * page) !== 0) {
            truth++;
            if (!reported.has(p)) throw new Error(`page ${p} changed but was not reported`);
            expect((bitmap[p >> 3]! >> (p & 7)) & 1).toBe(1);
          }
        }
        truthTotal += truth;
        reportedTotal += pfns.length;
        prev = now;
      }
      await g.close();
      console.log(`${dirty}: ${reportedTotal} pages reported, ${truthTotal} changed: ${(reportedTotal / truthTotal).toFixed(3)}x the truth`);
      expect(truthTotal).toBeGreaterThan(100);
      expect(reportedTotal).toBeLessThanOrEqual(truthTotal * 1.05 + 40);
    });
  }

  describe('hostile CPU blobs and memory images', () => {
    let image: Uint8Array;
    let cpu: Uint8Array;
    let cpu2: Uint8Array;
    it('(setup: a valid 1-vCPU and 2-vCPU save)', async () => {
      const g = await createKvmGuest(opts({ testEntry: MIX, steps: 1000, seed: 1, start: false }));
      await g.pause();
      image = g.memory.view.slice();
      cpu = g.saveCpu();
      await g.close();
      const g2 = await createKvmGuest(opts({ testEntry: MIX, steps: 1000, seed: 1, vcpus: 2, start: false }));
      await g2.pause();
      cpu2 = g2.saveCpu();
      await g2.close();
      expect(new TextDecoder().decode(cpu.subarray(0, 4))).toBe('USCP');
      expect(cpu[6]).toBe(2); // type kvm
    });
    const restore = (c: Uint8Array, m = image) => restoreKvmGuest({ memoryImage: m, cpu: c, start: false });
    const patched = (f: (b: Uint8Array) => void) => {
      const b = cpu.slice();
      f(b);
      return b;
    };
    it('bad magic', async () => {
      await expect(restore(patched((b) => (b[0] = 0x58)))).rejects.toThrow(new RangeError('`cpu` is not a CPU state blob (bad magic)'));
    });
    it('truncation', async () => {
      await expect(restore(cpu.subarray(0, 10))).rejects.toThrow(
        new RangeError('`cpu` is not a CPU state blob: 10 bytes is shorter than the 40-byte minimum'),
      );
      await expect(restore(cpu.subarray(0, cpu.length - 1))).rejects.toThrow(
        new RangeError(`\`cpu\` is truncated or padded: its header says ${cpu.length} bytes, got ${cpu.length - 1}`),
      );
    });
    it('bad checksum', async () => {
      await expect(restore(patched((b) => (b[200] ^= 1)))).rejects.toThrow(new RangeError('`cpu` is corrupt (checksum mismatch)'));
    });
    it('wrong version', async () => {
      await expect(restore(patched((b) => (b[4] = 3)))).rejects.toThrow(
        new RangeError('`cpu` is a CPU state blob of version 3; this build reads versions 1 to 2'),
      );
    });
    it('a blob from another pause than the image is refused (version 2); a version-1 blob is still read', async () => {
      const g = await createKvmGuest(opts({ testEntry: MIX, steps: 1_000_000_000, seed: 1 }));
      await g.pause();
      const first = g.memory.view.slice();
      const firstCpu = g.saveCpu();
      g.resume();
      await g.pause();
      const secondCpu = g.saveCpu();
      await g.close();
      const pauseOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(28, true);
      expect([firstCpu[4], pauseOf(firstCpu), pauseOf(secondCpu)]).toEqual([2, 1, 2]);
      await expect(restore(secondCpu, first)).rejects.toThrow(
        new RangeError('`cpu` does not match the memory image: it was saved at pause 2 of the guest and the image at pause 1 (low 32 bits of the count)'),
      );
      const v1 = firstCpu.slice();
      v1[4] = 1;
      v1.fill(0, 28, 32);
      new DataView(v1.buffer).setBigUint64(v1.length - 8, xxh3.xxh64(v1.subarray(0, v1.length - 8), 0n), true);
      const ok = await restore(v1, first);
      await ok.close();
      await (await restore(firstCpu, first)).close();
    });
    it('foreign type: a sim blob, and a kvm blob relabelled with a valid checksum', async () => {
      const sim = await createGuest({ type: 'sim', workload: 'uniform', memoryMiB: 32, steps: 100, start: false });
      await sim.pause();
      const simCpu = sim.saveCpu();
      await sim.close();
      await expect(restore(simCpu)).rejects.toThrow(new RangeError('`cpu` is a sim CPU state blob; a kvm guest cannot restore it'));
      const relabelled = patched((b) => {
        b[6] = 1;
        new DataView(b.buffer).setBigUint64(b.length - 8, xxh3.xxh64(b.subarray(0, b.length - 8), 0n), true);
      });
      await expect(restore(relabelled)).rejects.toThrow(new RangeError('`cpu` is a sim CPU state blob; a kvm guest cannot restore it'));
    });
    it('registers KVM refuses (a well-checksummed blob with garbage segment registers) are bad input: RangeError', async () => {
      const garbage = patched((b) => {
        for (let i = 200; i < 512; i++) b[i] = (i * 131 + 7) & 0xff;
        new DataView(b.buffer).setBigUint64(b.length - 8, xxh3.xxh64(b.subarray(0, b.length - 8), 0n), true);
      });
      await expect(restore(garbage)).rejects.toThrow(/^`cpu` holds a vCPU state KVM refuses: KVM_SET_\w+ failed: Invalid argument/);
      await expect(restore(garbage)).rejects.toBeInstanceOf(RangeError);
    });
    it('vCPU count mismatch', async () => {
      await expect(restore(cpu2)).rejects.toThrow(
        new RangeError('`cpu` holds 2 vCPUs but `memoryImage` was saved from a guest with 1'),
      );
    });
    it('memory image of the wrong size', async () => {
      const big = new Uint8Array(image.length + (1 << 20));
      big.set(image);
      await expect(restore(cpu, big)).rejects.toThrow(
        new RangeError(`\`memoryImage\` is ${big.length} bytes but the CPU state was saved from a guest of ${image.length} bytes`),
      );
      await expect(restore(cpu, image.subarray(0, image.length - 100))).rejects.toThrow(
        new RangeError(
          `\`memoryImage\` must be a whole number of 4096-byte pages from 8 MiB to 9216 MiB, got ${image.length - 100} bytes`,
        ),
      );
      await expect(restoreKvmGuest({ memoryImage: 'x' as unknown as Uint8Array, cpu })).rejects.toThrow(
        new TypeError('`memoryImage` must be a Uint8Array'),
      );
    });
    it('a valid blob still restores', async () => {
      const g = await restore(cpu);
      g.start();
      const { final } = await g.wait();
      await g.close();
      const ref = await runToEnd(await createKvmGuest(opts({ testEntry: MIX, steps: 1000, seed: 1 })));
      expect(final).toBe(ref.final);
    });
  });

  describe('faults become error events', () => {
    const cases: Array<[string, number, RegExp]> = [
      ['invalid opcode', 0xf0, /^vCPU 0: guest exception #UD \(vector 6\) at rip 0x10[0-9a-f]{4}$/],
      ['write past the end of RAM', 0xf1, /^vCPU 0: guest exception #PF \(vector 14\) at rip 0x10[0-9a-f]{4}, error code 0x6, rflags 0x[0-9a-f]+, address 0x2001000$/],
      ['triple fault', 0xf2, /^vCPU 0: triple fault \(KVM_EXIT_SHUTDOWN\) near rip 0x[0-9a-f]+$/],
      ['workload panic', 0xf5, /^guest panic on vCPU 0: the workload panicked with code 0x4d \(it detected corrupt memory or a broken invariant\)$/],
    ];
    for (const [what, entry, message] of cases) {
      it(what, async () => {
        const g = await createKvmGuest(opts({ testEntry: entry, steps: 1 }));
        const events: Error[] = [];
        g.on('error', (e: Error) => events.push(e));
        await expect(g.wait()).rejects.toThrow(message);
        await new Promise((r) => setImmediate(r));
        expect(events.map((e) => e.message)).toHaveLength(1);
        expect(events[0]!.message).toMatch(message);
        expect(g.result).toBe(null);
        // a GuestError as the sim guest's: a panic names its code, a fault has none
        expect(events[0]).toBeInstanceOf(GuestError);
        const e = events[0] as GuestError;
        expect([e.code, e.panicCode]).toEqual(entry === 0xf5 ? ['GUEST_PANIC', 77n] : ['GUEST_FAULT', 0n]);
        await g.pause();
        await g.close();
      });
    }
  });

  it('a guest that fails (its workload panics) does not keep the process alive', () => {
    // The restored image has every written page torn, so memcheck panics; the script handles
    // wait()'s rejection and never closes the guest: the process must still exit.
    const script = `import { createGuest, restoreGuest } from ${JSON.stringify(join(packageRoot, 'dist/index.js'))};
const g = await createGuest({ type: 'kvm', workload: 'memcheck', steps: 1e7, memoryMiB: 16, params: { workingSet: 1 << 20 } });
await new Promise((r) => setTimeout(r, 50));
await g.pause(); g.takeOutput();
const image = g.memory.view.slice(), cpu = g.saveCpu();
await g.close();
const dv = new DataView(image.buffer);
for (let p = 0x400000; p < 0x500000; p += 4096) if (dv.getBigUint64(p, true) !== 0n) image[p + 100] ^= 0xff;
const x = await restoreGuest({ memoryImage: image, cpu });
try { await x.wait(); console.log('finished'); } catch (e) { console.log('rejected'); }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect([r.status, r.signal, r.stdout]).toEqual([0, null, 'rejected\n']);
  }, 90_000);

  it('close() always works: while running, twice, and then every call says the guest is closed', async () => {
    const g = await createKvmGuest(opts({ testEntry: TOUCHER, rawParams: [0, 1000, 1], steps: 1 }));
    spin(2000);
    const waiting = g.wait();
    await g.close();
    await g.close();
    await expect(waiting).rejects.toThrow('the guest was closed before it finished');
    expect(() => g.takeDirty()).toThrow('the guest is closed');
    await expect(g.pause()).rejects.toThrow('the guest is closed');
    expect(g.memory.view.length).toBe(0);
  });

  it('rejects bad options with messages naming them', async () => {
    await expect(createKvmGuest(opts({ vcpus: 17 }))).rejects.toThrow(new RangeError('`vcpus` must be an integer from 1 to 16, got 17'));
    await expect(createKvmGuest(opts({ memoryMiB: 4 }))).rejects.toThrow(new RangeError('`memoryMiB` must be an integer from 8 to 9216, got 4'));
    await expect(createKvmGuest({ workload: 'nope' } as unknown as KvmGuestOptions)).rejects.toThrow(
      new RangeError('`workload` must be one of uniform, hotset, sequential, sparse, memcheck, kv, got "nope"'),
    );
    await expect(createKvmGuest(opts({ dirty: 'log' as 'ring' }))).rejects.toThrow(new RangeError("`dirty` must be 'bitmap', 'ring' or 'none', got log"));
    // the kernel refuses a dirty ring smaller than one page (256 entries of 16 bytes)
    await expect(createKvmGuest(opts({ dirty: 'ring', ringEntries: 128 }))).rejects.toThrow(
      new RangeError('`ringEntries` must be a power of two from 256 to 1048576, got 128'),
    );
  });

  it('restore: a CPU state of another workload is refused; one with more pending records than a ring holds restores', async () => {
    const kv = await createGuest({ type: 'kvm', workload: 'kv', memoryMiB: 16, steps: 1e9 });
    await new Promise((r) => setTimeout(r, 100));
    await kv.pause();
    const kvCpu = kv.saveCpu(); // before takeOutput: the records the host has not taken go in the blob
    const kvImage = kv.memory.view.slice();
    await kv.close();
    expect(kvCpu.length).toBeGreaterThan(64 * 1024 + 1000); // more than the 1024 records a ring holds
    const again = await restoreKvmGuest({ memoryImage: kvImage, cpu: kvCpu, start: false });
    await again.close();
    const uni = await createGuest({ type: 'kvm', workload: 'uniform', memoryMiB: 16, steps: 1e9 });
    await uni.pause();
    const uniImage = uni.memory.view.slice();
    await uni.close();
    await expect(restoreKvmGuest({ memoryImage: uniImage, cpu: kvCpu })).rejects.toThrow(
      new RangeError('`cpu` was saved from a guest running workload 6 but `memoryImage` holds workload 1'),
    );
  }, 60_000);
});

function popcount(b: number): number {
  let n = 0;
  for (; b; b &= b - 1) n++;
  return n;
}
