/**
 * The simulated guest: determinism of every workload (records, hash chain, final checksum),
 * pauses at random instants, save + restore at random points, the software dirty log against
 * full-memory diffs, memcheck's corruption detection, hostile CPU blobs and memory images, and
 * the `understudy run` output format. The hash chain is recomputed independently here with
 * @node-rs/xxhash.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { xxh3 } from '@node-rs/xxhash';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGuest, endLine, GuestError, recordLine, restoreGuest, WORKLOAD_NAMES } from '../lib/guest/index.js';
import type { Guest, GuestOptions, OutputRecord, WorkloadName } from '../lib/guest/types.js';
import { native, packageRoot } from '../lib/native.js';
import { MAX_MEMORY_BYTES } from '../lib/kernels/memory.js';
import { rng } from './reference/random.js';

const MEM = 16; // MiB
const STEPS: Record<WorkloadName, number> = { uniform: 4000, hotset: 4000, sequential: 2000, sparse: 3000, memcheck: 1500, kv: 800 };

// The tests' seeded PRNG (mulberry32), so a failure reproduces.
const prng = rng;

function spinUs(us: number): void {
  const end = process.hrtime.bigint() + BigInt(Math.round(us * 1000));
  while (process.hrtime.bigint() < end);
}

/** Checks the hash chain of a whole stream from seq 0, independently of the addon. */
function checkChain(recs: OutputRecord[]): void {
  let prev = 0n;
  recs.forEach((r, i) => {
    expect(r.seq).toBe(i);
    const buf = Buffer.alloc(8 + r.data.length);
    buf.writeBigUInt64LE(prev, 0);
    buf.set(r.data, 8);
    prev = xxh3.xxh64(buf, 0n);
    expect(r.chain).toBe(prev.toString(16).padStart(16, '0'));
  });
}

interface Run {
  lines: string[];
  records: OutputRecord[];
  final: string;
  pauses: number;
}

function opts(workload: WorkloadName, seed: number, extra: Partial<GuestOptions> = {}): GuestOptions {
  return { type: 'sim', workload, seed, steps: STEPS[workload], memoryMiB: MEM, start: false, ...extra };
}

/** Runs a guest to the end, pausing `pauses` times at random instants (0: never). */
async function finish(g: Guest, rand: () => number, pauses: number, records: OutputRecord[] = [], clock?: () => bigint): Promise<Run> {
  if (clock) g.setClock(clock()); // before the first step, so the run always diverges
  g.start();
  let n = 0;
  while (!g.result && n < pauses) {
    spinUs(rand() * 150);
    await g.pause();
    if (clock) g.setClock(clock());
    records.push(...g.takeOutput());
    g.resume();
    n++;
    if (n % 16 === 0) await tick();
  }
  const { final } = await g.wait();
  records.push(...g.takeOutput());
  await g.close();
  return { lines: records.map(recordLine), records, final, pauses: n };
}

async function runOnce(o: GuestOptions, pauses = 0, seed = 1): Promise<Run> {
  return finish(await createGuest(o), prng(seed), pauses);
}

const reference = new Map<string, Run>();
async function ref(workload: WorkloadName, seed: number, vcpus = 1): Promise<Run> {
  const key = `${workload}/${seed}/${vcpus}`;
  if (!reference.has(key)) reference.set(key, await runOnce(opts(workload, seed, { vcpus })));
  return reference.get(key)!;
}

describe('sim workloads are deterministic', () => {
  for (const w of WORKLOAD_NAMES) {
    it(`${w}: same seed, same records, chain and final; other seeds differ`, async () => {
      const finals = new Set<string>();
      for (const seed of [1, 2, 3]) {
        const a = await ref(w, seed);
        const b = await runOnce(opts(w, seed));
        expect(a.records.length).toBeGreaterThan(10);
        expect(b.lines).toEqual(a.lines);
        expect(b.final).toBe(a.final);
        expect(a.final).toMatch(/^[0-9a-f]{16}$/);
        checkChain(a.records);
        finals.add(a.final);
      }
      expect(finals.size).toBe(3);
      expect((await ref(w, 1)).lines).not.toEqual((await ref(w, 2)).lines);
    });
  }

  it('params by name and as the raw control->params array run the same configuration', async () => {
    const a = await runOnce(opts('uniform', 4, { params: { writesPerStep: 16, recordEvery: 8 } }));
    const b = await runOnce(opts('uniform', 4, { params: [0, 16, 0, 0, 0, 0, 0, 8n] }));
    expect(b.lines).toEqual(a.lines);
    expect(b.final).toBe(a.final);
    expect(a.final).not.toBe((await runOnce(opts('uniform', 4))).final);
    expect(a.records.length).toBe(STEPS.uniform / 8);
  });

  it('kv records follow the documented response layout', async () => {
    const { records } = await ref('kv', 1);
    for (const r of records.slice(0, 200)) {
      const op = String.fromCharCode(r.data[0]!);
      expect(['G', 'P', 'D']).toContain(op);
      expect([0, 1, 2]).toContain(r.data[1]);
      const vlen = r.data[2]!;
      expect(r.data.length).toBe(op === 'G' && r.data[1] === 1 ? 16 + vlen : 16);
    }
  });

  it('two vCPUs: deterministic, and not the same run as one vCPU', async () => {
    for (const w of ['uniform', 'memcheck', 'kv'] as const) {
      const a = await ref(w, 5, 2);
      const b = await runOnce(opts(w, 5, { vcpus: 2 }));
      expect(b.lines).toEqual(a.lines);
      expect(b.final).toBe(a.final);
      expect(a.final).not.toBe((await ref(w, 5, 1)).final);
    }
  });
});

describe('pausing at random instants changes nothing', () => {
  for (const w of WORKLOAD_NAMES) {
    it(`${w}, 1 and 2 vCPUs`, async () => {
      for (const vcpus of [1, 2]) {
        const expected = await ref(w, 7, vcpus);
        const got = await runOnce(opts(w, 7, { vcpus, steps: STEPS[w] }), 400, 100 + vcpus);
        expect(got.lines).toEqual(expected.lines);
        expect(got.final).toBe(expected.final);
        console.log(`${w} ${vcpus} vCPU(s): ${got.pauses} pauses, ${got.records.length} records, final ${got.final}`);
      }
    });
  }

  it('nondeterministic mode: the clock changes the path, the chain stays whole', async () => {
    const det = await ref('kv', 9);
    let c = 0n;
    const a = await finish(await createGuest(opts('kv', 9, { nondeterministic: true })), prng(3), 50, [], () => (c += 12345n));
    checkChain(a.records);
    expect(a.records.length).toBe(det.records.length);
    expect(a.final).not.toBe(det.final);
    // Without any clock the nondeterministic run takes the deterministic path.
    const b = await runOnce(opts('kv', 9, { nondeterministic: true }));
    expect(b.lines).toEqual(det.lines);
  });
});

describe('save and restore', () => {
  for (const w of WORKLOAD_NAMES) {
    it(`${w}: restore at random points gives the same stream and final checksum`, async () => {
      for (const [vcpus, seed] of [[1, 11], [2, 12]] as const) {
        const expected = await ref(w, seed, vcpus);
        const rand = prng(seed * 31 + vcpus);
        const g = await createGuest(opts(w, seed, { vcpus }));
        g.start();
        const delivered: OutputRecord[] = [];
        const saves: { image: Uint8Array; cpu: Uint8Array; delivered: number }[] = [];
        let pauses = 0;
        while (!g.result && pauses < 300) {
          spinUs(rand() * 100);
          await g.pause();
          // Take output on some pauses only, so blobs carry undelivered records too.
          if (rand() < 0.5) delivered.push(...g.takeOutput());
          if (rand() < 0.1 || pauses === 3) saves.push({ image: g.memory.view.slice(), cpu: g.saveCpu(), delivered: delivered.length });
          g.resume();
          pauses++;
          if (pauses % 16 === 0) await tick();
        }
        const { final } = await g.wait();
        delivered.push(...g.takeOutput());
        await g.close();
        expect(delivered.map(recordLine)).toEqual(expected.lines);
        expect(final).toBe(expected.final);
        for (const s of saves.slice(0, 4)) {
          const r = await restoreGuest({ memoryImage: s.image, cpu: s.cpu, start: false });
          expect(r.type).toBe('sim');
          const after = await finish(r, rand, 20);
          expect(after.final).toBe(expected.final);
          // What was delivered before the save, then what the restored guest emits: the reference.
          expect([...expected.lines.slice(0, s.delivered), ...after.lines]).toEqual(expected.lines);
        }
        console.log(`${w} ${vcpus} vCPU(s): ${saves.length} saves, restored ${Math.min(4, saves.length)}`);
      }
    });
  }

  it('a finished guest restores to the same final checksum at once', async () => {
    const g = await createGuest(opts('sparse', 4));
    g.start();
    const { final } = await g.wait();
    await g.pause();
    const image = g.memory.view.slice();
    const cpu = g.saveCpu();
    await g.close();
    const r = await restoreGuest({ type: 'sim', memoryImage: image, cpu });
    expect((await r.wait()).final).toBe(final);
    await r.close();
  });
});

describe('the sim dirty log', () => {
  for (const w of WORKLOAD_NAMES) {
    it(`${w}: every changed page is reported`, async () => {
      const rand = prng(77);
      const g = await createGuest(opts(w, 3, { steps: STEPS[w] * 10 }));
      // Setup wrote the control page: the first log has it (and nothing else).
      expect([...g.takeDirty().pfns]).toEqual([16]);
      let prev = g.memory.view.slice();
      g.start();
      let truth = 0;
      let reported = 0;
      let epochs = 0;
      for (;;) {
        const last = g.result !== null; // one more epoch after the end: the final writes count too
        spinUs(100 + rand() * 400);
        await g.pause();
        epochs++;
        const now = g.memory.view.slice();
        const dirty = g.takeDirty();
        const set = new Set(dirty.pfns);
        for (let p = 0; p < g.pageCount; p++) {
          const a = prev.subarray(p * 4096, (p + 1) * 4096);
          const b = now.subarray(p * 4096, (p + 1) * 4096);
          if (Buffer.compare(a, b) !== 0) {
            truth++;
            if (!set.has(p)) throw new Error(`page ${p} changed but was not reported`);
          }
        }
        for (const p of dirty.pfns) expect((dirty.bitmap[p >> 3]! >> (p & 7)) & 1).toBe(1);
        let bits = 0;
        for (const byte of dirty.bitmap) for (let b = byte; b; b &= b - 1) bits++;
        expect(bits).toBe(dirty.pfns.length);
        reported += dirty.pfns.length;
        g.takeOutput(); // a host write: the control page shows up in the next epoch's log
        prev = g.memory.view.slice();
        g.resume();
        if (last) break;
        await tick();
      }
      await g.close();
      console.log(`${w}: ${epochs} epochs, dirty log reported ${reported} pages, ${truth} actually changed (${((reported / truth - 1) * 100).toFixed(1)}% over)`);
      expect(truth).toBeGreaterThan(0);
      expect(reported).toBeGreaterThanOrEqual(truth);
    });
  }
});

describe('memcheck detects corruption', () => {
  // 64 pages, 2 per step: a sweep every 32 steps.
  const mc = (seed: number) => opts('memcheck', seed, { steps: 40_000, params: { workingSet: 256 * 1024, pagesPerStep: 2 } });

  async function saveMidway(seed: number): Promise<{ image: Uint8Array; cpu: Uint8Array; older: Uint8Array; final: string }> {
    const g = await createGuest(mc(seed));
    g.start();
    let older: Uint8Array | null = null;
    let olderSteps = 0;
    while (!g.result) {
      await g.pause();
      const { stepsDone } = (g as unknown as { progress(): { stepsDone: number } }).progress();
      if (!older && stepsDone >= 500) {
        older = g.memory.view.slice();
        olderSteps = stepsDone;
      } else if (older && stepsDone >= olderSteps + 100) {
        // At least three sweeps later: every page has a newer counter than in `older`.
        const image = g.memory.view.slice();
        const cpu = g.saveCpu();
        g.resume();
        const { final } = await g.wait();
        await g.close();
        return { image, cpu, older, final };
      }
      g.resume();
      await tick();
    }
    throw new Error('memcheck finished before the save point; raise its steps');
  }

  it('an intact image verifies and restores to the reference checksum', async () => {
    const s = await saveMidway(21);
    expect(native.guest_memcheck_verify(s.image)).toBe(null);
    const r = await restoreGuest({ memoryImage: s.image, cpu: s.cpu });
    expect((await r.wait()).final).toBe(s.final);
    await r.close();
  });

  it('a flipped byte is found by the host verifier and makes the restored guest panic', async () => {
    const s = await saveMidway(22);
    const gpa = 0x400000 + 17 * 4096;
    s.image[gpa + 1000]! ^= 0x40;
    expect(native.guest_memcheck_verify(s.image)).toEqual({ code: BigInt(gpa + 1), gpa, reason: 'torn' });
    const r = await restoreGuest({ memoryImage: s.image, cpu: s.cpu });
    const err = (await r.wait().then(() => null, (e: unknown) => e)) as GuestError;
    expect(err).toBeInstanceOf(GuestError);
    expect(err.message).toBe('guest panic on vCPU 0: memcheck found a torn page (its checksum does not match its contents) at gpa 0x411000');
    expect(err.code).toBe('GUEST_PANIC');
    expect(err.panicCode).toBe(BigInt(gpa + 1));
    expect(r.result).toBe(null);
    await r.close();
  });

  it('a stale page (an older copy) is found as lost', async () => {
    const s = await saveMidway(23);
    const gpa = 0x400000 + 5 * 4096;
    s.image.set(s.older.subarray(gpa, gpa + 4096), gpa);
    expect(native.guest_memcheck_verify(s.image)).toEqual({ code: BigInt(gpa + 2), gpa, reason: 'lost' });
    const r = await restoreGuest({ memoryImage: s.image, cpu: s.cpu });
    await expect(r.wait()).rejects.toThrow('guest panic on vCPU 0: memcheck found a lost or stale page (its counter does not match the sweep) at gpa 0x405000');
    await r.close();
  });
});

describe('hostile input', () => {
  let image: Uint8Array;
  let cpu: Uint8Array;
  let later: Uint8Array;
  beforeAll(async () => {
    const g = await createGuest(opts('kv', 1, { steps: 3000 }));
    g.start();
    await g.pause();
    image = g.memory.view.slice();
    cpu = g.saveCpu();
    g.resume();
    await g.wait();
    await g.pause();
    later = g.saveCpu();
    await g.close();
  });

  const reseal = (b: Uint8Array): Uint8Array => {
    const out = b.slice();
    const dv = new DataView(out.buffer);
    dv.setBigUint64(out.length - 8, xxh3.xxh64(out.subarray(0, out.length - 8), 0n), true);
    return out;
  };
  const restore = (memoryImage: Uint8Array, c: Uint8Array) => restoreGuest({ type: 'sim', memoryImage, cpu: c, start: false });

  it('rejects bad CPU blobs with exact messages', async () => {
    await expect(restore(image, new Uint8Array(10))).rejects.toThrow(new RangeError('`cpu` is not a CPU state blob: 10 bytes is shorter than the 40-byte minimum'));
    const magic = cpu.slice();
    magic[0] = 0;
    await expect(restore(image, magic)).rejects.toThrow(new RangeError('`cpu` is not a CPU state blob (bad magic)'));
    const version = cpu.slice();
    version[4] = 9;
    await expect(restore(image, version)).rejects.toThrow(new RangeError('`cpu` is a CPU state blob of version 9; this build reads versions 1 to 2'));
    await expect(restore(image, cpu.subarray(0, cpu.length - 1))).rejects.toThrow(
      new RangeError(`\`cpu\` is truncated or padded: its header says ${cpu.length} bytes, got ${cpu.length - 1}`),
    );
    for (const at of [13, 40, cpu.length - 9, cpu.length - 1]) {
      const flipped = cpu.slice();
      flipped[at]! ^= 1;
      await expect(restore(image, flipped)).rejects.toThrow(new RangeError('`cpu` is corrupt (checksum mismatch)'));
    }
    const kvm = cpu.slice();
    kvm[6] = 2;
    await expect(restore(image, reseal(kvm))).rejects.toThrow(new RangeError('`cpu` is a kvm CPU state blob; a sim guest cannot restore it'));
    const unknown = cpu.slice();
    unknown[6] = 7;
    await expect(restore(image, reseal(unknown))).rejects.toThrow(new RangeError('`cpu` has an unknown CPU state type 7'));
    // Version 2 names the pause it was saved at (bytes 28-31); version 1 had 0 there and is still read.
    const asV1 = (b: Uint8Array) => {
      const v1 = b.slice();
      v1[4] = 1;
      v1.fill(0, 28, 32);
      return reseal(v1);
    };
    const reserved = asV1(cpu);
    reserved[28] = 1;
    await expect(restore(image, reseal(reserved))).rejects.toThrow(new RangeError('`cpu` has a non-zero reserved field (bytes 28-31)'));
    const pauseOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(28, true);
    expect([cpu[4], pauseOf(cpu), pauseOf(later)]).toEqual([2, 1, 2]);
    await expect(restore(image, later)).rejects.toThrow(
      new RangeError('`cpu` does not match the memory image: it was saved at pause 2 of the guest and the image at pause 1 (low 32 bits of the count)'),
    );
    // A version-1 blob is tied to its image by the step counters alone.
    const steps = new DataView(image.buffer).getBigUint64(0x10000 + 192, true);
    const laterSteps = new DataView(later.buffer).getBigUint64(40, true);
    await expect(restore(image, asV1(later))).rejects.toThrow(
      new RangeError(`\`cpu\` does not match the memory image: vCPU 0 is at step ${laterSteps} in the blob and ${steps} in the image`),
    );
    const old = await restore(image, asV1(cpu));
    await old.close();
    const body = cpu.slice();
    new DataView(body.buffer).setBigUint64(32, 5n, true); // 5 pending records that are not there
    await expect(restore(image, reseal(body))).rejects.toThrow(new RangeError('`cpu` has a malformed sim body'));
    await expect(restoreGuest({ memoryImage: image, cpu: 'x' as unknown as Uint8Array })).rejects.toThrow(new TypeError('`cpu` must be a Uint8Array'));
  });

  it('rejects memory images of the wrong size or with a bad control page', async () => {
    const n = image.length;
    await expect(restore(image.subarray(0, n - 4096), cpu)).rejects.toThrow(
      new RangeError(`\`memoryImage\` is ${n - 4096} bytes but its control page says ${n}`),
    );
    await expect(restore(image.subarray(0, n - 100), cpu)).rejects.toThrow(
      new RangeError(`\`memoryImage\` must be whole 4096-byte pages and at least 8388608 bytes, got ${n - 100} bytes`),
    );
    await expect(restore(new Uint8Array(4096), cpu)).rejects.toThrow(
      new RangeError('`memoryImage` must be whole 4096-byte pages and at least 8388608 bytes, got 4096 bytes'),
    );
    await expect(restore(new Uint8Array(n), cpu)).rejects.toThrow(new RangeError('`memoryImage` is not an understudy guest memory image (no control page at 0x10000)'));
    const bad = (patch: (dv: DataView) => void) => {
      const img = image.slice();
      patch(new DataView(img.buffer, 0x10000));
      return img;
    };
    await expect(restore(bad((dv) => dv.setUint32(4, 2, true)), cpu)).rejects.toThrow(new RangeError('`memoryImage` has guest ABI version 2; this build runs version 1'));
    await expect(restore(bad((dv) => dv.setUint32(8, 99, true)), cpu)).rejects.toThrow(new RangeError('`memoryImage` names an unknown workload (id 99)'));
    await expect(restore(bad((dv) => dv.setUint32(12, 17, true)), cpu)).rejects.toThrow(new RangeError('`memoryImage` has 17 vCPUs (1 to 16 allowed)'));
    await expect(restore(bad((dv) => dv.setBigUint64(128, 1n << 40n, true)), cpu)).rejects.toThrow(/^`memoryImage` has a corrupt output ring \(head \d+, tail 1099511627776, next \d+\)$/);
    await expect(restore(bad((dv) => dv.setBigUint64(192, 1n << 40n, true)), cpu)).rejects.toThrow(
      new RangeError('`memoryImage` has an inconsistent state for vCPU 0 (step 1099511627776 of 3000, done 0)'),
    );
  });

  it('garbage that passes the control-page checks (params, scratch, data) never crashes the sim', async () => {
    const rand = prng(99);
    for (const w of WORKLOAD_NAMES) {
      const g = await createGuest(opts(w, 2, { steps: 600 }));
      g.start();
      await g.pause();
      const image = g.memory.view.slice();
      const cpu = g.saveCpu();
      await g.close();
      const dv = new DataView(image.buffer, 0x10000);
      for (let i = 0; i < 8; i++) dv.setBigUint64(40 + 8 * i, BigInt(Math.floor(rand() * 2 ** 53)) * BigInt(1 + (i % 3) * 4096), true);
      for (let i = 0; i < 9; i++) dv.setBigUint64(192 + 56 + 8 * i, BigInt(Math.floor(rand() * 2 ** 53)) << 11n, true);
      for (let o = 0x400000; o < image.length; o += 4096) if (rand() < 0.5) image.fill(Math.floor(rand() * 256), o, o + 256);
      const r = await restoreGuest({ memoryImage: image, cpu, start: false });
      r.start();
      const out = await r.wait().then((x) => x.final, (e: Error) => e.message);
      r.takeOutput();
      await r.close();
      // memcheck panics on the scribbled pages; the others finish. Either way, an answer.
      if (w === 'memcheck') expect(out).toMatch(/^guest panic on vCPU 0: memcheck found a /);
      else expect(out).toMatch(/^[0-9a-f]{16}$/);
    }
  });

  it('rejects bad createGuest options', async () => {
    await expect(createGuest({ type: 'sim', workload: 'nope' as WorkloadName })).rejects.toThrow(
      new RangeError('`workload` must be one of uniform, hotset, sequential, sparse, memcheck, kv, got "nope"'),
    );
    await expect(createGuest({ type: 'sim', workload: 'kv', vcpus: 17 })).rejects.toThrow(new RangeError('`vcpus` must be an integer from 1 to 16, got 17'));
    await expect(createGuest({ type: 'sim', workload: 'kv', memoryMiB: 4 })).rejects.toThrow(new RangeError('`memoryMiB` must be an integer from 8 to 1048576, got 4'));
    // own keys only: an inherited name is no parameter
    await expect(createGuest({ type: 'sim', workload: 'uniform', params: { toString: 5 } as never })).rejects.toThrow(
      new RangeError('`params.toString` is not a parameter of uniform; it has workingSet, writesPerStep, recordEvery'),
    );
    await expect(createGuest({ type: 'sim', workload: 'kv', memoyMiB: 64 } as never)).rejects.toThrow(
      new TypeError('`options` has no option `memoyMiB` (known: type, workload, seed, steps, memoryMiB, vcpus, nondeterministic, start, params, dirtyTracking, dirty, ringEntries, testEntry, rawParams)'),
    );
    // the sim guest's RAM is one buffer: past what this Node.js allows, a RangeError naming memoryMiB
    const most = Math.floor(MAX_MEMORY_BYTES / 1048576);
    if (most < 1 << 20) {
      await expect(createGuest({ type: 'sim', workload: 'kv', memoryMiB: most + 1 })).rejects.toThrow(
        new RangeError(`\`memoryMiB\` must be at most ${most} for a sim guest in this Node.js (one buffer holds ${MAX_MEMORY_BYTES} bytes), got ${most + 1}`),
      );
    }
    await expect(createGuest({ type: 'sim', workload: 'uniform', params: { writesPerStep: 10000 } })).rejects.toThrow(
      new RangeError('`params.writesPerStep` must be an integer from 1 to 4096 for uniform, got 10000'),
    );
    await expect(createGuest({ type: 'sim', workload: 'uniform', params: { hotSet: 1 } })).rejects.toThrow(
      new RangeError('`params.hotSet` is not a parameter of uniform; it has workingSet, writesPerStep, recordEvery'),
    );
    await expect(createGuest({ type: 'bogus' as 'sim', workload: 'kv' })).rejects.toThrow(new RangeError("`type` must be 'kvm', 'sim' or 'auto', got \"bogus\""));
  });

  it('guest type selection: sim is always there; auto says which and why', async () => {
    const g = await createGuest({ workload: 'kv', steps: 10, memoryMiB: MEM });
    expect(['sim', 'kvm']).toContain(g.type);
    expect(g.typeReason).toMatch(/^auto: /);
    await g.wait();
    await g.close();
    const hasKvm = existsSync(join(packageRoot, 'lib/guest/kvm.ts'));
    if (!hasKvm) {
      expect(g.typeReason).toBe('auto: using sim because this build has no KVM backend (lib/guest/kvm.js is missing)');
      await expect(createGuest({ type: 'kvm', workload: 'kv' })).rejects.toThrow('kvm guest unavailable: this build has no KVM backend (lib/guest/kvm.js is missing)');
    }
  });
});

describe('understudy run', () => {
  const main = join(packageRoot, 'dist/cli/main.js');
  beforeAll(() => {
    // The CLI runs from dist/: compile if it is missing or older than its sources.
    const newest = (dir: string): number =>
      Math.max(...readdirSync(dir, { recursive: true }).map((f) => statSync(join(dir, String(f))).mtimeMs));
    if (!existsSync(main) || statSync(join(packageRoot, 'dist/cli/commands/run.js'), { throwIfNoEntry: false }) === undefined ||
        statSync(join(packageRoot, 'dist/cli/commands/run.js')).mtimeMs < newest(join(packageRoot, 'lib'))) {
      execFileSync(process.execPath, [join(packageRoot, 'node_modules/typescript/bin/tsc'), '-p', join(packageRoot, 'tsconfig.json')]);
    }
  }, 120_000);
  const cli = (...args: string[]) => spawnSync(process.execPath, [main, 'run', ...args], { encoding: 'utf8' });

  it('a process that leaves guests unclosed exits normally (sim, and kvm where it runs)', async () => {
    // Two or more guests never closed aborted the process at exit (SIGABRT): Node freed their
    // event functions before it finalized the guests, which then released them again.
    const { kvmAvailable } = await import('../lib/guest/kvm.js');
    const types = kvmAvailable().ok ? ['sim', 'kvm'] : ['sim'];
    for (const type of types) {
      for (const mode of ['nostart', 'paused', 'finished']) {
        const script = `import { createGuest } from ${JSON.stringify(join(packageRoot, 'dist/index.js'))};
for (let i = 0; i < 2; i++) {
  const g = await createGuest({ type: '${type}', workload: 'kv', memoryMiB: 8, steps: ${mode === 'finished' ? 10 : 1e9}, start: ${mode !== 'nostart'} });
  if ('${mode}' === 'finished') await g.wait();
  if ('${mode}' === 'paused') await g.pause();
}
console.log('end');`;
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
        expect([type, mode, r.status, r.signal, r.stdout]).toEqual([type, mode, 0, null, 'end\n']);
      }
      // Guests still running while the process exits, finishing (each vCPU thread calls its event
      // function) around the moment Node frees those functions: the calls must not reach freed ones.
      for (let round = 0; round < 3; round++) {
        const script = `import { createGuest } from ${JSON.stringify(join(packageRoot, 'dist/index.js'))};
const gs = [];
for (let i = 0; i < 8; i++) gs.push(await createGuest({ type: '${type}', workload: 'uniform', seed: i, memoryMiB: 8, steps: ${600 + round * 700} + i * 3 }));
for (const g of gs) g.start();
gs[0].wait().finally(() => { console.log('end'); process.exit(0); });`;
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
        expect([type, 'running', r.status, r.signal, r.stdout]).toEqual([type, 'running', 0, null, 'end\n']);
      }
    }
  }, 120_000);

  it('--records prints the record lines and the end line, identical to the library', async () => {
    const r = cli('--guest', 'sim', '--workload', 'kv', '--seed', '1', '--steps', '800', '--memory', String(MEM), '--records');
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    const expected = await ref('kv', 1);
    expect(lines).toEqual([...expected.lines, endLine(expected.final)]);
    for (const l of lines.slice(0, -1)) expect(l).toMatch(/^\{"seq":\d+,"data":"[0-9a-f]*","chain":"[0-9a-f]{16}"\}$/);
    expect(lines.at(-1)).toMatch(/^\{"end":true,"final":"[0-9a-f]{16}"\}$/);
    expect(r.stderr).toContain('guest sim, workload kv, seed 1, 1 vCPU(s), 16 MiB');
  });

  it('prints final <checksum>, or JSON with --json', async () => {
    const expected = await ref('memcheck', 2);
    const a = cli('--guest', 'sim', '--workload', 'memcheck', '--seed', '2', '--steps', String(STEPS.memcheck), '--memory', String(MEM));
    expect(a.status).toBe(0);
    expect(a.stdout).toBe(`final ${expected.final}\n`);
    const b = cli('--guest', 'sim', '--workload', 'memcheck', '--seed', '2', '--steps', String(STEPS.memcheck), '--memory', String(MEM), '--json');
    const j = JSON.parse(b.stdout) as Record<string, unknown>;
    expect(j).toMatchObject({ final: expected.final, guest: 'sim', workload: 'memcheck', seed: '2', steps: STEPS.memcheck, vcpus: 1, memoryMiB: MEM, records: expected.records.length });
  });

  it('rejects bad options with the flag named', () => {
    const r = cli('--guest', 'sim', '--workload', 'nope');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('understudy: run: --workload must be one of uniform, hotset, sequential, sparse, memcheck, kv, got "nope"\n');
    const v = cli('--guest', 'sim', '--vcpus', '0');
    expect(v.stderr).toBe('understudy: run: --vcpus must be from 1 to 16, got 0\n');
  });
});

describe('record lines', () => {
  it('formats exactly', () => {
    expect(recordLine({ seq: 3, data: new Uint8Array([0, 1, 0xab]), chain: '00000000000000ff' })).toBe('{"seq":3,"data":"0001ab","chain":"00000000000000ff"}');
    expect(endLine('0123456789abcdef')).toBe('{"end":true,"final":"0123456789abcdef"}');
  });
});

afterAll(() => reference.clear());
