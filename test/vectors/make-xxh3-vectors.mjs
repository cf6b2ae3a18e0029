#!/usr/bin/env node
// Regenerates test/vectors/xxh3.json: known answers for hashPages, fingerprintPages and xxh3,
// computed by Debian's `xxhsum` 0.8.1 (package `xxhash`), not by our code. Run it by hand:
//   node test/vectors/make-xxh3-vectors.mjs > test/vectors/xxh3.json
// The inputs come from lcg(length, salt), which test/hash.test.ts re-implements.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function lcg(length, salt) {
  const out = new Uint8Array(length);
  let x = salt >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'xxh3-vectors-'));
function xxhsum(bytes, algo) {
  const file = join(dir, 'in.bin');
  writeFileSync(file, bytes);
  const text = execFileSync('xxhsum', [algo, file], { encoding: 'utf8' });
  // -H3: "XXH3 (file) = <16 hex>"; -H2: "<32 hex>  file"
  const m = algo === '-H3' ? /= ([0-9a-f]{16})/.exec(text) : /^([0-9a-f]{32}) /.exec(text);
  if (!m) throw new Error(`unexpected xxhsum output: ${text}`);
  return m[1];
}

const pageCases = [
  { name: 'lcg-512x3', pageSize: 512, pages: 3, salt: 2, zeroPage: -1 },
  { name: 'lcg-4096x4-page2-zero', pageSize: 4096, pages: 4, salt: 1, zeroPage: 2 },
  { name: 'lcg-65536x2', pageSize: 65536, pages: 2, salt: 3, zeroPage: -1 },
];
const pages = pageCases.map((c) => {
  const data = lcg(c.pageSize * c.pages, c.salt);
  if (c.zeroPage >= 0) data.fill(0, c.zeroPage * c.pageSize, (c.zeroPage + 1) * c.pageSize);
  const xxh3 = [], xxh128 = [];
  for (let p = 0; p < c.pages; p++) {
    const page = data.subarray(p * c.pageSize, (p + 1) * c.pageSize);
    xxh3.push(xxhsum(page, '-H3'));
    xxh128.push(xxhsum(page, '-H2'));
  }
  return { ...c, xxh3, xxh128 };
});
const lengths = [0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1000, 1024, 4096, 100000];
const whole = lengths.map((length) => ({ length, salt: 4, xxh3: xxhsum(lcg(length, 4), '-H3') }));
rmSync(dir, { recursive: true });

// xxhsum prints its version on stderr.
const v = spawnSync('xxhsum', ['--version'], { encoding: 'utf8' });
const version = `${v.stdout}${v.stderr}`.split('\n')[0].trim();
process.stdout.write(JSON.stringify({
  comment: `Known answers from \`${version}\` (Debian package xxhash), seed 0, made by test/vectors/make-xxh3-vectors.mjs. Inputs: lcg(length, salt) with x = x * 1103515245 + 12345 mod 2^32, byte = x >>> 24; zeroPage is filled with zeros. xxh128 is the canonical (big-endian) hex that xxhsum -H2 prints.`,
  pages,
  whole,
}, null, 1) + '\n');
