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
const families = readdirSync(here).filter((f) => f.endsWith('.bench.ts')).map((f) => f.replace(/\.bench\.ts$/, ''));
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(`usage: npm run bench [-- FAMILY ...] [--json] [--quick] [--real-pages FILE | --real-pages A.img,B.img[,...]]

Runs the benchmarks of each FAMILY (default: all but replication and store, which have
npm run bench:replication and npm run bench:store) in one process, one table per scenario, every
ratio measured side by side. Families: ${families.join(', ')}.
  --json        one JSON document on stdout instead of tables
  --quick       fewer iterations (also UNDERSTUDY_BENCH_QUICK=1)
  --real-pages  delta: real guest pages, from a pairs file (npx tsx bench/real-pages.ts) or two or
                more raw memory images of one guest taken in turn, joined by commas
`);
  process.exit(0);
}
const known = new Set(['--json', '--quick', '--real-pages']);
// replication and store read options of their own (--target, --guest=, --memory=, ...).
const ownOptions = args.includes('replication') || args.includes('store');
const badFlag = ownOptions ? undefined : args.find((a) => a.startsWith('-') && !known.has(a) && !a.startsWith('--real-pages='));
if (badFlag) {
  console.error(`unknown option: ${badFlag} (npm run bench -- --help)`);
  process.exit(2);
}
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

const files = families.filter((n) => (wanted.length ? wanted.includes(n) : !own.has(n)));

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
