/**
 * npx tsx bench/real-pages.ts [--out FILE] [--seconds S | --intervals N] [--interval-ms MS]
 *                             [--mem MiB] [--max-pairs N] [--kvm] [--save-images DIR]
 *
 * Captures real dirty pages of a tiny Linux guest under QEMU (busybox "server" workload, see
 * SERVER_INIT in test/helpers/real-pages.ts): boots it, then every ~100 ms stops it through QMP,
 * copies its RAM and continues; pages that changed between consecutive copies are written as
 * (old, new) pairs to FILE (default: <tmpdir>/understudy-real-pages.bin). 20 intervals by
 * default; --seconds S captures S seconds of guest run time instead. Then measure with
 * `npm run bench -- delta --real-pages FILE`.
 *
 * --save-images DIR also writes each raw RAM image taken (DIR/mem-0.img, mem-1.img, ...): the
 * bench takes such images directly, `--real-pages DIR/mem-0.img,DIR/mem-1.img`.
 * --kvm tries KVM first (QEMU falls back to TCG by itself); the default is TCG, like the tests.
 * Needs qemu-system-x86, busybox-static, dpkg and apt (the cloud kernel is fetched once).
 */
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { captureRealPages, pairStats, writeRealPages, type PairStats } from '../test/helpers/real-pages.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join(os.tmpdir(), 'understudy-real-pages.bin') },
    intervals: { type: 'string', default: '20' },
    seconds: { type: 'string' },
    'interval-ms': { type: 'string', default: '100' },
    mem: { type: 'string', default: '256' },
    'max-pairs': { type: 'string', default: '50000' },
    kvm: { type: 'boolean', default: false },
    'save-images': { type: 'string' },
  },
});

function positive(name: string, v: string, integer = true): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    console.error(`real-pages: --${name} must be a positive ${integer ? 'integer' : 'number'}, got ${v}`);
    process.exit(2);
  }
  return n;
}

function summary(s: PairStats, bytes: number): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  return [
    `pairs: ${s.count} (${(bytes / 2 ** 20).toFixed(1)} MiB file)`,
    `changed bytes per page: p10 ${s.changedBytes.p10}, median ${s.changedBytes.median}, p90 ${s.changedBytes.p90}`,
    `runs of changed bytes per page: p10 ${s.runs.p10}, median ${s.runs.median}, p90 ${s.runs.p90}`,
    `wholly new (> 3/4 of bytes changed): ${pct(s.whollyNew)}; new page all zero: ${pct(s.zeroed)}; fewer than half changed: ${pct(s.fineGrained)}`,
  ];
}

const intervalMs = positive('interval-ms', values['interval-ms']);
const intervals = values.seconds === undefined
  ? positive('intervals', values.intervals)
  : Math.max(1, Math.round((positive('seconds', values.seconds, false) * 1000) / intervalMs));
const t0 = Date.now();
const res = await captureRealPages({
  intervals,
  intervalMs,
  memMiB: positive('mem', values.mem),
  maxPairs: positive('max-pairs', values['max-pairs']),
  accel: values.kvm ? 'kvm' : 'tcg',
  log: (l) => console.log(l),
  saveImages: values['save-images'],
});
writeRealPages(values.out, res.pages);
const fileBytes = 32 + res.pages.count * (8 + 2 * res.pages.pageSize);
console.log(`\ncaptured ${res.perInterval.length} intervals on ${res.accel} in ${((Date.now() - t0) / 1000).toFixed(1)} s; wrote ${values.out}`);
for (const line of summary(pairStats(res.pages), fileBytes)) console.log(line);
console.log(`\nmeasure: npm run bench -- delta --real-pages ${values.out}`);
if (values['save-images']) {
  const dir = values['save-images'];
  console.log(`raw images in ${dir}: mem-0.img .. mem-${intervals}.img (npm run bench -- delta --real-pages ${join(dir, 'mem-0.img')},${join(dir, 'mem-1.img')})`);
}
