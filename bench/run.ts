/**
 * npm run bench [-- <family> ...] [--json] [--quick]
 *
 * Runs the kernel and guest benchmarks (bench/<family>.bench.ts) in one process so that every
 * ratio compares numbers measured side by side, and prints one table per scenario.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';
import type { BenchModule, Report } from './harness.js';
import { isa } from '../lib/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const json = args.includes('--json');
const quick = args.includes('--quick') || process.env.UNDERSTUDY_BENCH_QUICK === '1';
const wanted = args.filter((a) => !a.startsWith('--'));
// Replication and store have their own scripts (npm run bench:replication / bench:store).
const own = new Set(['replication', 'store']);

const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.replace(/\.bench\.ts$/, ''))
  .filter((n) => (wanted.length ? wanted.includes(n) : !own.has(n)));

const unknown = wanted.filter((w) => !files.includes(w));
if (unknown.length) {
  console.error(`unknown benchmark family: ${unknown.join(', ')}`);
  process.exit(2);
}

const machine = {
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.cpus().length,
  isa: isa(),
  node: process.version,
  platform: `${os.platform()} ${os.release()}`,
};
const reports: Report[] = [];
const log = (line: string) => {
  if (!json) console.log(line);
  else console.error(line);
};
if (!json) console.log(`machine: ${machine.cpu}, ${machine.cores} cores, isa ${machine.isa}, node ${machine.node}\n`);

for (const name of files) {
  const mod = (await import(pathToFileURL(join(here, `${name}.bench.ts`)).href)) as BenchModule;
  log(`# ${mod.name}`);
  await mod.run({
    json,
    quick,
    log,
    report(r) {
      reports.push(r);
      if (!json) {
        console.log(`## ${r.title}`);
        console.table(r.rows);
        for (const n of r.notes ?? []) console.log(`  ${n}`);
        console.log('');
      }
    },
  });
}
if (json) process.stdout.write(JSON.stringify({ machine, reports }, null, 2) + '\n');
