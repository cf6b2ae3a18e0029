/**
 * Shared benchmark plumbing: every bench/<family>.bench.ts exports `name` and
 * `run(ctx)`; ctx.report() collects rows, which bench/run.ts prints as tables (or JSON with
 * --json). Timings come from tinybench; ratios are always computed within one run.
 */
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Bench } from 'tinybench';
import { isa } from '../lib/index.js';

export interface Row {
  [column: string]: string | number;
}

export interface Report {
  family: string;
  title: string;
  rows: Row[];
  notes?: string[];
}

export interface BenchContext {
  json: boolean;
  /** Shorter runs (CI smoke, --quick). */
  quick: boolean;
  /** A pairs file from bench/real-pages.ts (--real-pages FILE or UNDERSTUDY_REAL_PAGES). */
  realPages?: string;
  report(r: Report): void;
  log(line: string): void;
}

export interface BenchModule {
  name: string;
  run(ctx: BenchContext): Promise<void>;
}

/**
 * One benchmark run's output: prints the machine line, then each report as a table as it comes
 * (or, with --json, log lines on stderr and everything as one JSON document at finish()).
 */
export function benchSession(json: boolean): { log(line: string): void; report(r: Report): void; finish(): void } {
  const machine = {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    isa: isa(),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
  const reports: Report[] = [];
  if (!json) console.log(`machine: ${machine.cpu}, ${machine.cores} cores, isa ${machine.isa}, node ${machine.node}\n`);
  return {
    log: (line) => (json ? console.error(line) : console.log(line)),
    report(r) {
      reports.push(r);
      if (json) return;
      console.log(`## ${r.title}`);
      console.table(r.rows);
      for (const n of r.notes ?? []) console.log(`  ${n}`);
      console.log('');
    },
    finish() {
      if (json) process.stdout.write(JSON.stringify({ machine, reports }, null, 2) + '\n');
    },
  };
}

/**
 * Collects garbage and lets pending finalizers run: a task that allocates (frames of
 * encodePagesSync) leaves buffers that would otherwise be freed while the next task is timed.
 */
export async function settle(): Promise<void> {
  gcFn ??= (() => {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as () => void;
  })();
  gcFn();
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}
let gcFn: (() => void) | undefined;

/**
 * Runs tinybench tasks and returns, per task name, the median time of one call (ns), its p99
 * and the number of samples. The median, not the mean: on a shared machine another tenant's
 * burst lands in a few samples and would drag the mean of every row it touches.
 */
export async function measure(tasks: Record<string, () => unknown | Promise<unknown>>, opts: { quick: boolean; time?: number }): Promise<Record<string, { timeNs: number; p99Ns: number; samples: number }>> {
  const bench = new Bench({ time: opts.time ?? (opts.quick ? 100 : 500), warmupTime: opts.quick ? 20 : 100 });
  // Each task starts from a settled heap, so none is timed freeing what the one before left.
  for (const [name, fn] of Object.entries(tasks)) bench.add(name, fn, { beforeAll: settle });
  await bench.run();
  const out: Record<string, { timeNs: number; p99Ns: number; samples: number }> = {};
  for (const t of bench.tasks) {
    const r = t.result as unknown as { latency?: { mean: number; p50?: number; p99?: number; samples?: number[] | number }; samples?: number };
    const lat = r?.latency;
    if (!lat) throw new Error(`benchmark task ${t.name} failed: ${JSON.stringify((t.result as { error?: unknown })?.error ?? 'no result')}`);
    const samples = Array.isArray(lat.samples) ? lat.samples.length : typeof lat.samples === 'number' ? lat.samples : 0;
    out[t.name] = { timeNs: (lat.p50 ?? lat.mean) * 1e6, p99Ns: (lat.p99 ?? lat.mean) * 1e6, samples };
  }
  return out;
}

export const fmt = {
  gbps: (bytes: number, ns: number) => +(bytes / ns).toFixed(2),
  us: (ns: number) => +(ns / 1000).toFixed(2),
  ratio: (a: number, b: number) => +(a / b).toFixed(2),
  pct: (a: number, b: number) => +((100 * a) / b).toFixed(2),
};
