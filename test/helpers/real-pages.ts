/**
 * Real dirty pages of a Linux guest, for the delta codec benchmark (bench/real-pages.ts captures,
 * bench/delta.bench.ts measures, test/real-pages.test.ts checks): a tiny QEMU guest
 * (test/helpers/qemu-guest.ts) runs a busybox "server" workload; every ~100 ms it is stopped
 * through QMP, its RAM copied and continued, and each 4 KiB page that changed between two
 * consecutive copies is kept as an (old page, new page) pair.
 *
 * Pairs file, version 1 (little-endian; written and read only here, validated on read):
 *
 *   offset size  field
 *        0    4  magic "URPG" (55 52 50 47)
 *        4    2  version = 1
 *        6    2  header length = 32
 *        8    4  page size (a power of two, 512 .. 1 MiB)
 *       12    4  count: number of pairs
 *       16    4  intervals captured
 *       20    4  reserved, 0
 *       24    8  XXH3-64 of every byte after the header
 *       32 8×count  index: pfn u32, interval u32 (0-based) per pair
 *        …  count×page size  old pages, in index order
 *        …  count×page size  new pages, in index order
 *
 * Old and new pages are stored as two contiguous blocks so a reader gets the shadow and the
 * dirty pages of encodePages(shadow, pages, 0..count-1) without copying.
 */
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { captureQemu, changedPages, mapFile, xxh3 } from '../../lib/index.js';
import { changedBytes } from '../reference/pages.js';
import { bootQemuGuest, buildInitramfs, cloudKernel, INIT_PREAMBLE, qemuMissing, READY_LINE, type BootedGuest, type BootOptions } from './qemu-guest.js';

export const MAGIC = 'URPG';
export const VERSION = 1;
const HEADER = 32;

/** Captured page pairs; `old` and `next` hold `count` pages each, pair i at page i. */
export interface RealPages {
  pageSize: number;
  count: number;
  intervals: number;
  pfns: Uint32Array;
  interval: Uint32Array;
  old: Uint8Array;
  next: Uint8Array;
}

/**
 * A busybox-only imitation of a small server: a request loop appending access-log lines and
 * rewriting a counter file, a monitor reading /proc (ps, every process's stat, meminfo) into a
 * log, an indexer walking /proc with find, a batch job sorting, checksumming and gzipping a
 * tmpfs file, and log rotation. Each loop forks busybox applets, so page tables, the slab, the
 * page cache, tmpfs and process stacks and heaps all change, as on a real guest.
 */
export const SERVER_INIT = `${INIT_PREAMBLE}/bin/busybox --install -s /bin
export PATH=/bin
seq 1 40000 > /tmp/nums
ls -lR /proc/sys > /tmp/sys.txt 2>/dev/null
( n=0; while true; do
    n=$((n+1)); echo $n > /tmp/counter
    echo "$(date +%s) GET /item/$((n % 97)) 200 $((n * 7919 % 5000))" >> /tmp/access.log
    sleep 0.02
  done ) &
( while true; do
    ps > /tmp/ps.out; cat /proc/[0-9]*/stat > /tmp/stat.out 2>/dev/null
    cat /proc/loadavg /proc/meminfo >> /tmp/monitor.log
    sleep 0.2
  done ) &
( while true; do find /proc -type f 2>/dev/null | head -300 > /tmp/find.out; sleep 0.5; done ) &
( while true; do
    sort -r /tmp/nums > /tmp/sorted; md5sum /tmp/sorted /tmp/sys.txt >> /tmp/md5.log
    gzip -c /tmp/sorted > /tmp/sorted.gz; gunzip -c /tmp/sorted.gz | wc -l > /tmp/lines
    sleep 0.3
  done ) &
( while true; do
    for f in /tmp/access.log /tmp/monitor.log /tmp/md5.log; do
      if [ $(wc -c < $f) -gt 500000 ]; then tail -n 200 $f > $f.1; mv $f.1 $f; fi
    done
    sleep 1
  done ) &
echo ${READY_LINE} > /dev/ttyS0
while true; do sleep 3600; done
`;

function fail(what: string, why: string): never {
  throw new RangeError(`${what}: not a real-pages file: ${why}`);
}

/** Serializes pairs in the format above. */
export function encodeRealPages(p: RealPages): Buffer {
  const ps = p.pageSize;
  const body = Buffer.alloc(p.count * (8 + 2 * ps));
  for (let i = 0; i < p.count; i++) {
    body.writeUInt32LE(p.pfns[i]!, 8 * i);
    body.writeUInt32LE(p.interval[i]!, 8 * i + 4);
  }
  body.set(p.old.subarray(0, p.count * ps), 8 * p.count);
  body.set(p.next.subarray(0, p.count * ps), 8 * p.count + p.count * ps);
  const head = Buffer.alloc(HEADER);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt16LE(VERSION, 4);
  head.writeUInt16LE(HEADER, 6);
  head.writeUInt32LE(ps, 8);
  head.writeUInt32LE(p.count, 12);
  head.writeUInt32LE(p.intervals, 16);
  head.writeBigUInt64LE(xxh3(body), 24);
  return Buffer.concat([head, body]);
}

/**
 * Parses and validates a pairs file image; `what` names it in errors.
 * @throws RangeError naming `what` and the first problem found.
 */
export function decodeRealPages(buf: Uint8Array, what = 'real pages'): RealPages {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < HEADER) fail(what, `${b.length} bytes, shorter than the ${HEADER}-byte header`);
  if (b.toString('latin1', 0, 4) !== MAGIC) fail(what, `bad magic (want "${MAGIC}")`);
  const version = b.readUInt16LE(4);
  if (version !== VERSION) fail(what, `version ${version} (this reader knows ${VERSION})`);
  if (b.readUInt16LE(6) !== HEADER) fail(what, `header length ${b.readUInt16LE(6)} (want ${HEADER})`);
  const ps = b.readUInt32LE(8);
  if (ps < 512 || ps > 1 << 20 || (ps & (ps - 1)) !== 0) fail(what, `page size ${ps} is not a power of two in 512 .. 1 MiB`);
  const count = b.readUInt32LE(12);
  const intervals = b.readUInt32LE(16);
  if (b.readUInt32LE(20) !== 0) fail(what, 'reserved field is not 0');
  const want = HEADER + count * (8 + 2 * ps);
  if (b.length !== want) fail(what, `${b.length} bytes, but ${count} pairs of ${ps}-byte pages need ${want} (truncated or padded)`);
  // The checksum catches corrupted pages, which no structural check could.
  if (xxh3(b.subarray(HEADER)) !== b.readBigUInt64LE(24)) fail(what, 'checksum mismatch (corrupted)');
  const pfns = new Uint32Array(count);
  const interval = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    pfns[i] = b.readUInt32LE(HEADER + 8 * i);
    interval[i] = b.readUInt32LE(HEADER + 8 * i + 4);
    if (interval[i]! >= intervals) fail(what, `pair ${i} is from interval ${interval[i]}, but only ${intervals} were captured`);
  }
  // Plain Uint8Array views, not Buffer subarrays: Buffer#slice() does not copy, and callers
  // (benchmarks, tests) take .slice() of these as their scratch copies.
  const oldAt = b.byteOffset + HEADER + 8 * count;
  const old = new Uint8Array(b.buffer, oldAt, count * ps);
  const next = new Uint8Array(b.buffer, oldAt + count * ps, count * ps);
  return { pageSize: ps, count, intervals, pfns, interval, old, next };
}

export function writeRealPages(file: string, p: RealPages): void {
  fs.writeFileSync(file, encodeRealPages(p));
}

/** Reads and validates a pairs file. @throws RangeError naming the file. */
export function readRealPages(file: string): RealPages {
  return decodeRealPages(fs.readFileSync(file), file);
}

/**
 * Pairs from raw memory images of one guest taken in turn (a QEMU memory-backend-file or
 * `dump-guest-memory -z`-less raw dump, /proc/PID/mem copies, ...): every page that differs
 * between images k and k + 1 is a pair of interval k. All images must have the same size, a
 * multiple of `pageSize`. Past `maxPairs` pairs, every n-th is kept (evenly over all intervals).
 * @throws RangeError naming the image at fault.
 */
export function pairsFromImages(files: string[], pageSize = 4096, maxPairs = 65536): RealPages & { changed: number } {
  if (files.length < 2) throw new RangeError(`memory images: need two or more, got ${files.length}`);
  const maps = files.map((f) => mapFile(f));
  try {
    const size = maps[0]!.byteLength;
    maps.forEach((m, k) => {
      if (m.byteLength !== size) throw new RangeError(`${files[k]}: ${m.byteLength} bytes, but ${files[0]} has ${size}: the images must be of one guest`);
      if (m.byteLength === 0 || m.byteLength % pageSize !== 0) throw new RangeError(`${files[k]}: ${m.byteLength} bytes is not a whole number of ${pageSize}-byte pages`);
    });
    const found: [number, number][] = []; // [interval, pfn]
    for (let k = 0; k + 1 < maps.length; k++) {
      for (const pfn of changedPages(maps[k]!.view, maps[k + 1]!.view, pageSize)) found.push([k, pfn]);
    }
    const step = Math.max(1, Math.ceil(found.length / maxPairs));
    const kept = found.filter((_, i) => i % step === 0);
    const old = new Uint8Array(kept.length * pageSize);
    const next = new Uint8Array(kept.length * pageSize);
    kept.forEach(([k, pfn], i) => {
      old.set(maps[k]!.view.subarray(pfn * pageSize, (pfn + 1) * pageSize), i * pageSize);
      next.set(maps[k + 1]!.view.subarray(pfn * pageSize, (pfn + 1) * pageSize), i * pageSize);
    });
    return {
      pageSize, count: kept.length, intervals: files.length - 1, old, next, changed: found.length,
      pfns: Uint32Array.from(kept, ([, pfn]) => pfn), interval: Uint32Array.from(kept, ([k]) => k),
    };
  } finally {
    for (const m of maps) m.close();
  }
}

/**
 * What `--real-pages` names: a pairs file, or two or more raw memory images joined by commas
 * (see pairsFromImages).
 */
export function loadRealPages(spec: string): RealPages & { source: string } {
  if (spec.includes(',')) {
    const files = spec.split(',');
    const p = pairsFromImages(files);
    const sampled = p.count < p.changed ? `, every ${Math.ceil(p.changed / p.count)}th of ${p.changed} kept` : '';
    return { ...p, source: `${files.length} memory images${sampled}` };
  }
  return { ...readRealPages(spec), source: spec };
}

/** The pairs whose index satisfies `keep`, as a new contiguous set. */
export function selectPairs(p: RealPages, keep: (i: number) => boolean): RealPages {
  const idx: number[] = [];
  for (let i = 0; i < p.count; i++) if (keep(i)) idx.push(i);
  const ps = p.pageSize;
  const old = new Uint8Array(idx.length * ps);
  const next = new Uint8Array(idx.length * ps);
  idx.forEach((i, j) => {
    old.set(p.old.subarray(i * ps, (i + 1) * ps), j * ps);
    next.set(p.next.subarray(i * ps, (i + 1) * ps), j * ps);
  });
  return {
    pageSize: ps, count: idx.length, intervals: p.intervals, old, next,
    pfns: Uint32Array.from(idx, (i) => p.pfns[i]!), interval: Uint32Array.from(idx, (i) => p.interval[i]!),
  };
}

/** Page `i` of a set: [old, new]. */
export function pair(p: RealPages, i: number): [Uint8Array, Uint8Array] {
  const ps = p.pageSize;
  return [p.old.subarray(i * ps, (i + 1) * ps), p.next.subarray(i * ps, (i + 1) * ps)];
}

/** Maximal runs of differing bytes (no gap bridging: what a page "looks like", not the codec's tokens). */
export function changedRuns(a: Uint8Array, b: Uint8Array): number {
  let runs = 0;
  let inRun = false;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] !== b[i];
    if (d && !inRun) runs++;
    inRun = d;
  }
  return runs;
}

/** Changed bytes of every pair (what the benchmark splits fine-grained pages by). */
export function changedBytesPerPair(p: RealPages): Uint32Array {
  return Uint32Array.from({ length: p.count }, (_, i) => changedBytes(...pair(p, i)));
}

function percentile(sorted: Uint32Array, q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0;
}

export interface PairStats {
  count: number;
  changedBytes: { p10: number; median: number; p90: number };
  runs: { p10: number; median: number; p90: number };
  /** Share of pairs with more than 3/4 of the bytes changed. */
  whollyNew: number;
  /** Share of pairs whose new page is all zero (freed and cleared, or a fresh mapping). */
  zeroed: number;
  /** Share of pairs with fewer than half the bytes changed. */
  fineGrained: number;
}

export function pairStats(p: RealPages): PairStats {
  const bytes = changedBytesPerPair(p);
  const runs = Uint32Array.from({ length: p.count }, (_, i) => changedRuns(...pair(p, i)));
  let whole = 0;
  let zero = 0;
  let fine = 0;
  for (let i = 0; i < p.count; i++) {
    if (bytes[i]! * 4 > p.pageSize * 3) whole++;
    if (bytes[i]! * 2 < p.pageSize) fine++;
    if (pair(p, i)[1].every((x) => x === 0)) zero++;
  }
  const q = (a: Uint32Array) => {
    const s = a.slice().sort();
    return { p10: percentile(s, 0.1), median: percentile(s, 0.5), p90: percentile(s, 0.9) };
  };
  const share = (n: number) => (p.count ? n / p.count : 0);
  return { count: p.count, changedBytes: q(bytes), runs: q(runs), whollyNew: share(whole), zeroed: share(zero), fineGrained: share(fine) };
}

export interface CaptureOptions {
  memMiB?: number;
  intervals?: number;
  intervalMs?: number;
  /** Stop keeping pairs beyond this many (the file holds 2 pages per pair). */
  maxPairs?: number;
  /** Let the workload reach a steady state before the first image. */
  settleMs?: number;
  accel?: 'tcg' | 'kvm';
  log?: (line: string) => void;
  /** Also write every RAM image taken, raw, to `<dir>/mem-<k>.img` (k = 0 .. intervals). */
  saveImages?: string;
}

export interface CaptureResult {
  pages: RealPages;
  accel: 'kvm' | 'tcg';
  bootMs: number;
  /** Per interval: ms since the previous image, pages changed, pairs kept, ms the VM was stopped. */
  perInterval: { ms: number; changed: number; kept: number; stoppedMs: number }[];
}

/** Appends the changed pages between two images to `out` (up to `room` of them); returns how many changed. */
function diffImages(prev: Uint8Array, next: Uint8Array, ps: number, room: number, out: { pfn: number; old: Uint8Array; next: Uint8Array }[]): number {
  const changed = changedPages(prev, next, ps);
  for (const pfn of changed.subarray(0, Math.max(0, room))) {
    out.push({ pfn, old: prev.slice(pfn * ps, (pfn + 1) * ps), next: next.slice(pfn * ps, (pfn + 1) * ps) });
  }
  return changed.length;
}

/**
 * Boots the guest with SERVER_INIT, takes `intervals + 1` RAM images `intervalMs` apart and
 * returns the changed-page pairs between consecutive images.
 * @throws Error when QEMU or the packages are missing, or the guest does not boot.
 */
export async function captureRealPages(o: CaptureOptions = {}): Promise<CaptureResult> {
  const missing = qemuMissing();
  if (missing) throw new Error(`cannot capture real pages: ${missing}`);
  const log = o.log ?? (() => {});
  const ps = 4096;
  const intervals = o.intervals ?? 20;
  const maxPairs = o.maxPairs ?? 50_000;
  const tmp = fs.mkdtempSync(join(os.tmpdir(), 'understudy-realpages-'));
  const kernel = cloudKernel(join(os.tmpdir(), 'understudy-qemu-kernel'));
  const initrd = join(tmp, 'initrd');
  buildInitramfs(initrd, SERVER_INIT);
  log(`booting a ${o.memMiB ?? 256} MiB guest (${o.accel === 'kvm' ? 'KVM if available, else TCG' : 'TCG'})...`);
  let guest: BootedGuest | undefined;
  try {
    guest = await boot({ dir: tmp, kernel, initrd, memMiB: o.memMiB ?? 256 }, o.accel ?? 'tcg', log);
    const { qmp, memPath } = guest;
    log(`booted in ${guest.bootMs} ms (${guest.accel}); settling ${o.settleMs ?? 2000} ms`);
    await sleep(o.settleMs ?? 2000);
    let taken = 0;
    const grab = async () => {
      const cap = await captureQemu({ qmp, memPath, pageSize: ps });
      if (o.saveImages) fs.writeFileSync(join(o.saveImages, `mem-${taken}.img`), cap.memory);
      taken++;
      return cap;
    };
    let prev = (await grab()).memory;
    let prevAt = performance.now();
    const kept: { pfn: number; old: Uint8Array; next: Uint8Array }[] = [];
    const intervalOf: number[] = [];
    const perInterval: CaptureResult['perInterval'] = [];
    for (let k = 0; k < intervals; k++) {
      // The guest has been running since the last copy (while we diffed): top up to intervalMs.
      await sleep(Math.max(0, (o.intervalMs ?? 100) - (performance.now() - prevAt)));
      const cap = await grab();
      const at = performance.now();
      const before = kept.length;
      const changed = diffImages(prev, cap.memory, ps, maxPairs - kept.length, kept);
      for (let i = before; i < kept.length; i++) intervalOf.push(k);
      const row = { ms: Math.round(at - prevAt), changed, kept: kept.length - before, stoppedMs: Math.round(cap.stoppedMs) };
      perInterval.push(row);
      // The guest's clock stands still while it is stopped, so it ran about ms - stoppedMs.
      log(`interval ${k + 1}/${intervals}: guest ran ~${row.ms - row.stoppedMs} ms, ${changed} pages changed${row.kept < changed ? ` (${row.kept} kept: max pairs reached)` : ''} (stopped ${row.stoppedMs} ms for the copy)`);
      prev = cap.memory;
      prevAt = at;
    }
    const pages: RealPages = {
      pageSize: ps, count: kept.length, intervals,
      pfns: Uint32Array.from(kept, (x) => x.pfn), interval: Uint32Array.from(intervalOf),
      old: concatPages(kept.map((x) => x.old), ps), next: concatPages(kept.map((x) => x.next), ps),
    };
    return { pages, accel: guest.accel, bootMs: guest.bootMs, perInterval };
  } finally {
    guest?.kill();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Boots with KVM when asked and it works, else TCG. QEMU falls back to TCG by itself only when
 * KVM cannot initialize; a KVM that initializes but cannot run the guest (some nested or
 * sandboxed /dev/kvm) shows up as a silent serial console, so that case gets a short timeout
 * and a second boot on TCG.
 */
async function boot(o: Omit<BootOptions, 'accel'>, accel: 'tcg' | 'kvm', log: (line: string) => void): Promise<BootedGuest> {
  if (accel === 'kvm') {
    try {
      // Its own directory: the killed QEMU may not have let go of its socket and RAM file yet.
      const dir = join(o.dir, 'kvm');
      fs.mkdirSync(dir);
      return await bootQemuGuest({ ...o, dir, accel: 'kvm', bootTimeoutMs: 15_000 });
    } catch (e) {
      log(`KVM boot failed (${(e as Error).message.split('\n')[0]!.slice(0, 160)}); falling back to TCG`);
    }
  }
  return bootQemuGuest({ ...o, accel: 'tcg' });
}

function concatPages(list: Uint8Array[], ps: number): Uint8Array {
  const out = new Uint8Array(list.length * ps);
  list.forEach((p, i) => out.set(p, i * ps));
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
