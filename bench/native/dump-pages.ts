/**
 * Writes the benchmark's page pairs to files for bench/native/encode-pages.cc:
 *   npx tsx bench/native/dump-pages.ts [kind] [count] [dir]   (default realistic 4096 .)
 * -> <dir>/<kind>.old, <dir>/<kind>.new (count pages of 4 KiB each, seed 42 as in delta.bench.ts)
 *
 *   npx tsx bench/native/dump-pages.ts FILE.bin [dir] [name]
 * -> the real pages of a pairs file (bench/real-pages.ts): <dir>/<name>-all.{old,new} and the
 *    fine-grained ones (< 2048 bytes changed, the benchmark's split) <dir>/<name>-fine.{old,new}
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pagePairs, type PageKind } from '../../test/reference/pages.js';
import { changedBytesPerPair, readRealPages, selectPairs } from '../../test/helpers/real-pages.js';

const FINE_BELOW = 2048; // as in bench/delta.bench.ts

if (process.argv[2]?.endsWith('.bin')) {
  const file = process.argv[2];
  const dir = process.argv[3] ?? '.';
  const name = process.argv[4] ?? 'real';
  const all = readRealPages(file);
  const changed = changedBytesPerPair(all);
  const fine = selectPairs(all, (i) => changed[i]! < FINE_BELOW);
  for (const [label, set] of [['all', all], ['fine', fine]] as const) {
    writeFileSync(join(dir, `${name}-${label}.old`), set.old);
    writeFileSync(join(dir, `${name}-${label}.new`), set.next);
    console.log(`wrote ${set.count} ${label} real page pairs to ${join(dir, `${name}-${label}`)}.{old,new}`);
  }
} else {
  const kind = (process.argv[2] ?? 'realistic') as PageKind;
  const count = Number(process.argv[3] ?? 4096);
  const dir = process.argv[4] ?? '.';
  const { old, next } = pagePairs(42, kind, count);
  writeFileSync(join(dir, `${kind}.old`), old);
  writeFileSync(join(dir, `${kind}.new`), next);
  console.log(`wrote ${count} ${kind} page pairs to ${dir}`);
}
