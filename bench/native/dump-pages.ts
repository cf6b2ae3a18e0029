/**
 * Writes the benchmark's page pairs to files for bench/native/encode-pages.cc:
 *   npx tsx bench/native/dump-pages.ts [kind] [count] [dir]   (default realistic 4096 .)
 * -> <dir>/<kind>.old, <dir>/<kind>.new (count pages of 4 KiB each, seed 42 as in delta.bench.ts)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pagePairs, type PageKind } from '../../test/reference/pages.js';

const kind = (process.argv[2] ?? 'realistic') as PageKind;
const count = Number(process.argv[3] ?? 4096);
const dir = process.argv[4] ?? '.';
const { old, next } = pagePairs(42, kind, count);
writeFileSync(join(dir, `${kind}.old`), old);
writeFileSync(join(dir, `${kind}.new`), next);
console.log(`wrote ${count} ${kind} page pairs to ${dir}`);
