/**
 * `npm run bench:replication [-- --quick] [-- --json]`: the replication engine end to end on this
 * machine (primary and backup in one process, loopback TCP, real guest via --guest auto and the
 * native kernels). For each epoch interval (5, 10, 25, 100 ms) and workload: epochs/s achieved,
 * pause p50/p99 against the floor measured in the same run (dirty-log fetch + one copy of the
 * dirty pages), bytes per epoch against Remus-style whole dirty pages and against full memory,
 * output latency (resume to backup acknowledgement), and the guest's work rate replicated vs
 * alone. Then the sustained-rate case: a 1 GiB guest dirtying at most 2 MiB per epoch
 * (`--target` runs only that).
 */
import { performance } from 'node:perf_hooks';
import { cpus } from 'node:os';
import { createGuest, readProgress, isa, type Guest, type WorkloadName } from '../lib/index.js';
import { startPrimary, type EpochStats } from '../lib/replication/primary.js';
import { startBackup } from '../lib/replication/backup.js';
import { generateKey } from '../lib/replication/auth.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const quick = args.includes('--quick');
const guestType = (args.find((a) => a.startsWith('--guest='))?.slice(8) ?? 'auto') as 'kvm' | 'sim' | 'auto';
const memoryMiB = Number(args.find((a) => a.startsWith('--memory='))?.slice(9) ?? 64);
const runMs = quick ? 1200 : 3000;
// --target: only the sustained-rate case (1 GiB guest, ~2 MiB dirtied per epoch).
const targetOnly = args.includes('--target');
const intervals = quick ? [5, 25, 100] : [5, 10, 25, 100];
const workloads: WorkloadName[] = quick ? ['uniform', 'sparse', 'kv'] : ['uniform', 'hotset', 'sequential', 'sparse', 'memcheck', 'kv'];
const key = generateKey();

function pct(v: number[], p: number): number {
  if (!v.length) return 0;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const mean = (v: number[]): number => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0);

/** The guest of one cell: the matrix's (memoryMiB, the workload's defaults) or the target's. */
interface GuestSpec {
  workload: WorkloadName;
  memoryMiB: number;
  params?: Record<string, number>;
}

async function newGuest(spec: GuestSpec): Promise<Guest> {
  return createGuest({ type: guestType, workload: spec.workload, seed: 1, steps: 2 ** 40, memoryMiB: spec.memoryMiB, params: spec.params, start: false });
}

async function alone(spec: GuestSpec): Promise<number> {
  const g = await newGuest(spec);
  g.start();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, runMs));
  await g.pause();
  const done = readProgress(g.memory).stepsDone;
  const rate = done / ((performance.now() - t0) / 1000);
  await g.close();
  return rate;
}

async function replicated(spec: GuestSpec, intervalMs: number) {
  const backup = await startBackup({ key, listen: { host: '127.0.0.1', port: 0 }, takeover: false, timeoutMs: 5000 });
  const guest = await newGuest(spec);
  const stats: EpochStats[] = [];
  const primary = await startPrimary({ guest, key, connect: backup.address!, intervalMs, timeoutMs: 5000, guestType: guest.type });
  primary.on('epoch', (s) => stats.push(s));
  // Measure from the first acknowledged epoch (after the initial full copy).
  while (stats.length === 0) await new Promise((r) => setTimeout(r, 10));
  const s0 = readProgress(guest.memory).stepsDone;
  const n0 = stats.length;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, runMs));
  const secs = (performance.now() - t0) / 1000;
  const steps = readProgress(guest.memory).stepsDone - s0;
  const w = stats.slice(n0).filter((s) => !s.full);
  await primary.close();
  await backup.close();
  return {
    type: guest.type,
    epochsPerSec: w.length / secs,
    pauseP50: pct(w.map((s) => s.pauseMs), 50),
    pauseP99: pct(w.map((s) => s.pauseMs), 99),
    floorP50: pct(w.map((s) => s.floorMs), 50),
    floorP99: pct(w.map((s) => s.floorMs), 99),
    bytes: mean(w.map((s) => s.frameBytes)),
    pageBytes: mean(w.map((s) => s.pageBytes)),
    outputMs: pct(w.map((s) => s.commitMs), 50),
    outputP99: pct(w.map((s) => s.commitMs), 99),
    rate: steps / secs,
  };
}

const rows: Record<string, string | number>[] = [];
let typeUsed = '';

async function cell(label: string, spec: GuestSpec, base: number, iv: number): Promise<void> {
  const r = await replicated(spec, iv);
  typeUsed = r.type;
  const fullBytes = spec.memoryMiB * 1024 * 1024;
  rows.push({
    workload: label, intervalMs: iv, epochsPerSec: +r.epochsPerSec.toFixed(1),
    pauseP50Ms: +r.pauseP50.toFixed(3), pauseP99Ms: +r.pauseP99.toFixed(3), floorP50Ms: +r.floorP50.toFixed(3), floorP99Ms: +r.floorP99.toFixed(3),
    pauseP99VsFloor: r.floorP99 > 0 ? +(r.pauseP99 / r.floorP99).toFixed(2) : 0,
    bytesPerEpoch: Math.round(r.bytes), wholePagesPerEpoch: Math.round(r.pageBytes),
    vsWholePagesPct: r.pageBytes > 0 ? +((100 * r.bytes) / r.pageBytes).toFixed(1) : 0,
    vsFullMemoryPct: +((100 * r.bytes) / fullBytes).toFixed(3),
    outputLatencyP50Ms: +r.outputMs.toFixed(2), outputLatencyP99Ms: +r.outputP99.toFixed(2),
    workRatePct: base > 0 ? +((100 * r.rate) / base).toFixed(1) : 0,
  });
  if (!json) process.stderr.write(`  ${label} @ ${iv} ms done\n`);
}

if (!targetOnly) {
  for (const wl of workloads) {
    const spec = { workload: wl, memoryMiB };
    const base = await alone(spec);
    for (const iv of intervals) await cell(wl, spec, base, iv);
  }
}
// The sustained-rate setup: a 1 GiB guest whose writes stay in 2 MiB, so each epoch
// dirties at most ~2 MiB (uniform 8-byte writes over a 2 MiB working set).
{
  const spec = { workload: 'uniform' as WorkloadName, memoryMiB: 1024, params: { workingSet: 2 * 1024 * 1024 } };
  const base = await alone(spec);
  for (const iv of [5, 10, 25]) await cell('uniform 1 GiB, 2 MiB set', spec, base, iv);
}
const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, isa: isa(), guest: typeUsed, memoryMiB, runMs };
if (json) {
  process.stdout.write(JSON.stringify({ family: 'replication', machine, rows }, null, 1) + '\n');
} else {
  process.stdout.write(`replication: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, isa ${machine.isa}, guest ${machine.guest}, ${memoryMiB} MiB (the target rows: 1024 MiB), ${runMs} ms per cell\n`);
  const cols = Object.keys(rows[0] ?? {});
  process.stdout.write(cols.join('\t') + '\n');
  for (const r of rows) process.stdout.write(cols.map((c) => String(r[c])).join('\t') + '\n');
}
process.exit(0);
