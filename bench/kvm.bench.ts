/**
 * KVM guest benchmarks: pause latency (call to all vCPUs parked), dirty-log fetch + scan cost by
 * guest size and dirty fraction (manual-protect bitmap vs dirty ring), the guest's work rate with
 * and without dirty logging, and the cost of one VM exit.
 *
 *   npm run bench -- kvm [--quick] [--json]
 *
 * Targets (issue 4): pause p99 < 200 us with 2 vCPUs; fetch + scan of a 1 GiB guest with 1 % dirty
 * < 300 us; dirty logging costs `uniform` < 15 % of its write rate.
 */
import os from 'node:os';
import type { BenchContext, Row } from './harness.js';
import { fmt } from './harness.js';
import { createKvmGuest, kvmAvailable, type KvmDirtyMode, type KvmGuestOptions } from '../lib/guest/kvm.js';
import type { Guest, WorkloadName } from '../lib/guest/types.js';

export const name = 'kvm';

const TOUCHER = 0xf3;
const MIX = 0xf4;
const DOORBELLS = 0xf6;
const STEP0 = 0x10000 + 192; // us_control.vcpu[0].step

const spin = (us: number) => {
  const end = process.hrtime.bigint() + BigInt(Math.round(us * 1000));
  while (process.hrtime.bigint() < end);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

function step0(g: Guest): bigint {
  return new DataView(g.memory.view.buffer, g.memory.view.byteOffset).getBigUint64(STEP0, true);
}

async function waitPasses(g: Guest, passes: bigint, timeoutMs = 60_000): Promise<void> {
  const start = step0(g);
  const t0 = Date.now();
  while (step0(g) < start + passes) {
    if (Date.now() - t0 > timeoutMs) throw new Error('toucher made no progress');
    await sleep(1);
  }
}

async function pauseLatency(ctx: BenchContext): Promise<void> {
  const rows: Row[] = [];
  const n = ctx.quick ? 300 : 1500;
  for (const vcpus of [1, 2]) {
    const g = await createKvmGuest({ workload: 'uniform', testEntry: TOUCHER, rawParams: [0, 2048, 1], memoryMiB: 64, vcpus } as KvmGuestOptions);
    await waitPasses(g, 1n);
    const native: number[] = [];
    const wall: number[] = [];
    for (let i = 0; i < n; i++) {
      // Sleep (not spin) so the vCPU threads get the cores and are inside the guest when we pause.
      await sleep(1 + Math.floor(Math.random() * 2));
      const t0 = process.hrtime.bigint();
      await g.pause();
      wall.push(Number(process.hrtime.bigint() - t0));
      native.push((g as unknown as { lastPauseNs: number }).lastPauseNs);
      g.resume();
    }
    await g.close();
    rows.push({
      vcpus,
      samples: n,
      'p50 us': fmt.us(pct(native, 50)),
      'p99 us': fmt.us(pct(native, 99)),
      'max us': fmt.us(pct(native, 100)),
      'p99 us (JS call)': fmt.us(pct(wall, 99)),
      'target p99 us': vcpus === 2 ? 200 : '',
    });
  }
  ctx.report({ family: name, title: 'pause latency (pause() called to all vCPUs parked)', rows });
}

async function dirtyFetch(ctx: BenchContext): Promise<void> {
  const rows: Row[] = [];
  const freeGiB = os.freemem() / 2 ** 30;
  const sizes = ctx.quick ? [256, 1024] : freeGiB > 8 ? [256, 1024, 4096] : [256, 1024];
  const fractions = [0.001, 0.01, 0.1];
  const modes: KvmDirtyMode[] = ['bitmap', 'ring'];
  const samples = ctx.quick ? 5 : 15;
  for (const mib of sizes) {
    const dataPages = (mib * 256) - 1024;
    for (const f of fractions) {
      const count = Math.max(1, Math.floor(dataPages * f));
      const stride = Math.floor(dataPages / count);
      for (const dirty of modes) {
        const g = await createKvmGuest({
          workload: 'uniform', testEntry: TOUCHER, rawParams: [0, count, stride], memoryMiB: mib, dirty,
        } as KvmGuestOptions);
        await waitPasses(g, 1n);
        const times: number[] = [];
        let reported = 0;
        for (let s = 0; s < samples; s++) {
          await g.pause();
          g.takeDirty();
          g.resume();
          await waitPasses(g, 2n);
          await g.pause();
          const t0 = process.hrtime.bigint();
          const log = g.takeDirty();
          times.push(Number(process.hrtime.bigint() - t0));
          reported = log.pfns.length;
          g.resume();
        }
        await g.close();
        rows.push({
          'guest MiB': mib,
          'dirty %': +(f * 100).toFixed(1),
          mode: dirty,
          'dirty pages': reported,
          'p50 us': fmt.us(pct(times, 50)),
          'p99 us': fmt.us(pct(times, 99)),
          'target us': mib === 1024 && f === 0.01 ? 300 : '',
        });
      }
    }
  }
  ctx.report({
    family: name,
    title: 'dirty-log fetch + clear + scan to pfn list (takeDirty(), guest paused)',
    rows,
    notes: ['dirty pages spread evenly over the data region by the toucher test entry; ring: 65536 entries per vCPU'],
  });
}

interface RateRow { steps: number; seconds: number; exits: number }

async function rate(o: KvmGuestOptions, epochMs: number): Promise<RateRow> {
  const g = await createKvmGuest(o);
  const t0 = process.hrtime.bigint();
  const done = g.wait();
  let finished = false;
  void done.then(() => (finished = true), () => (finished = true));
  while (!finished) {
    await sleep(epochMs);
    if (finished) break;
    await g.pause();
    g.takeDirty();
    g.takeOutput();
    g.resume();
  }
  await done;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const exits = (g as unknown as { stats(): { exits: number } }).stats().exits;
  await g.close();
  return { steps: Number(o.steps), seconds, exits };
}

async function writeRate(ctx: BenchContext): Promise<void> {
  const rows: Row[] = [];
  // The six workloads once they are in the payload; the VMM's own mix entry always.
  const workloads: Array<[string, Partial<KvmGuestOptions>]> = [
    ['test mix (0xF4)', { testEntry: MIX, steps: ctx.quick ? 100_000 : 500_000 }],
  ];
  for (const w of ['uniform', 'hotset', 'sequential', 'sparse', 'memcheck', 'kv'] as WorkloadName[]) {
    workloads.push([w, { workload: w, steps: ctx.quick ? 3_000 : 20_000 }]);
  }
  for (const [label, extra] of workloads) {
    const base = { workload: 'uniform', memoryMiB: 256, seed: 1, ...extra } as KvmGuestOptions;
    let off: RateRow;
    let on: RateRow;
    try {
      off = await rate({ ...base, dirty: 'none' }, 25);
      on = await rate({ ...base, dirty: 'bitmap' }, 25);
    } catch (err) {
      rows.push({ workload: label, note: `not runnable: ${(err as Error).message.slice(0, 80)}` });
      continue;
    }
    const ring = await rate({ ...base, dirty: 'ring' }, 25);
    rows.push({
      workload: label,
      'steps/s no log': Math.round(off.steps / off.seconds),
      'steps/s bitmap': Math.round(on.steps / on.seconds),
      'steps/s ring': Math.round(ring.steps / ring.seconds),
      'bitmap cost %': +(100 * (1 - off.seconds / on.seconds)).toFixed(1),
      'ring cost %': +(100 * (1 - off.seconds / ring.seconds)).toFixed(1),
      'exits/s': Math.round(on.exits / on.seconds),
      'run s (bitmap)': +on.seconds.toFixed(2),
    });
  }
  ctx.report({
    family: name,
    title: 'guest work rate with and without dirty logging (pause + takeDirty every 25 ms)',
    rows,
    notes: ['cost % = share of the unlogged rate lost to dirty logging; target for uniform < 15 %'],
  });
}

async function exitCost(ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 2000 : 20_000;
  const rows: Row[] = [];
  const g = await createKvmGuest({ workload: 'uniform', testEntry: DOORBELLS, steps: n, memoryMiB: 16 } as KvmGuestOptions);
  const t0 = process.hrtime.bigint();
  await g.wait();
  const ns = Number(process.hrtime.bigint() - t0);
  await g.close();
  rows.push({ exit: 'doorbell OUT from ring 3 (#GP, emulated)', count: n, 'us each': fmt.us(ns / n), 'exits/s': Math.round(n / (ns / 1e9)) });
  ctx.report({ family: name, title: 'VM exits per second (payload rings the doorbell in a loop)', rows });
}

const parts: Record<string, (ctx: BenchContext) => Promise<void>> = { pause: pauseLatency, fetch: dirtyFetch, exits: exitCost, rate: writeRate };

export async function run(ctx: BenchContext): Promise<void> {
  const a = kvmAvailable();
  if (!a.ok) {
    ctx.report({ family: name, title: 'KVM', rows: [], notes: [`skipped: ${a.reason}`] });
    return;
  }
  // UNDERSTUDY_BENCH_KVM=pause,fetch runs a subset.
  const only = (process.env.UNDERSTUDY_BENCH_KVM ?? '').split(',').filter(Boolean);
  for (const [part, fn] of Object.entries(parts)) {
    if (only.length === 0 || only.includes(part)) await fn(ctx);
  }
}
