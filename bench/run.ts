/**
 * npm run bench [-- <family> ...] [--json] [--quick] [--real-pages FILE | --real-pages A.img,B.img[,...]]
 *
 * Runs the kernel and guest benchmarks (bench/<family>.bench.ts) in one process so that every
 * ratio compares numbers measured side by side, and prints one table per scenario.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchSession, type BenchModule } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const json = args.includes('--json');
const quick = args.includes('--quick') || process.env.UNDERSTUDY_BENCH_QUICK === '1';
/**
 * Takes `--real-pages FILE` or `--real-pages=FILE` (captured guest pages for the delta family:
 * a pairs file from bench/real-pages.ts, or two or more raw memory images of one guest joined by
 * commas, whose changed pages make the pairs) out of `argv`; UNDERSTUDY_REAL_PAGES is the fallback.
 */
function takeRealPages(argv: string[]): { file: string | undefined; rest: string[] } {
  const at = argv.findIndex((a) => a === '--real-pages' || a.startsWith('--real-pages='));
  if (at < 0) return { file: process.env.UNDERSTUDY_REAL_PAGES || undefined, rest: argv };
  const joined = argv[at]!.startsWith('--real-pages=');
  const file = joined ? argv[at]!.slice('--real-pages='.length) : argv[at + 1];
  if (!file || file.startsWith('--')) {
    console.error('--real-pages needs a pairs file (from npx tsx bench/real-pages.ts) or raw memory images A.img,B.img[,...]');
    process.exit(2);
  }
  // Checked now, not when the delta family gets to it minutes later.
  for (const f of file.split(',')) {
    if (!existsSync(f)) {
      console.error(`--real-pages: ${f} does not exist (capture pairs with npx tsx bench/real-pages.ts, or give raw memory images A.img,B.img)`);
      process.exit(2);
    }
  }
  return { file, rest: argv.filter((_, i) => i !== at && (joined || i !== at + 1)) };
}
const { file: realPages, rest } = takeRealPages(args);
const wanted = rest.filter((a) => !a.startsWith('--'));
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

const out = benchSession(json);
for (const name of files) {
  const mod = (await import(pathToFileURL(join(here, `${name}.bench.ts`)).href)) as BenchModule;
  out.log(`# ${mod.name}`);
  await mod.run({ json, quick, realPages, log: out.log, report: out.report });
}
out.finish();
