/**
 * npm run bench -- delta
 *
 * encodePages / applyPages on the page kinds of issue 3 §4 (a few words, ~640 bytes in ~10 runs,
 * half the page, a new random page, unchanged, zero), on "realistic" fine-grained changes
 * (median ~700 changed bytes per page in many short runs; test/reference/pages.ts) and on
 * "counters" (as many changed bytes, but by small XOR values, where the Huffman stage pays), 1 and 2
 * threads, against: the plain TypeScript XOR + zero-run encoder (test/reference/delta.ts),
 * node:zlib deflate level 1 of the XOR page, and lz4 (LZ4_compress_default) and zstd level 1 of
 * the XOR page, each page on its own, in C via liblz4/libzstd (the addon's bench_xor_compress).
 *
 * GB/s is of input (whole new pages); "out %" is output bytes over whole pages. The sync rows
 * (encodePagesSync) never let the event loop turn, so frames are not finalized during the run
 * and every call writes its frame into fresh memory (page faults); the async rows (encodePages,
 * the Promise API the replication path uses) let finalizers return frame buffers for reuse.
 * encodePages
 * alternates between the new and the old pages so the shadow never settles; for kinds whose
 * reverse is a different change (zero, random, half) the shadow is reset before each call,
 * outside the timed region (encode rows there are timed by a plain loop, not tinybench).
 *
 * With --real-pages FILE (or UNDERSTUDY_REAL_PAGES=FILE), a last section measures the same
 * codec and baselines on real dirty pages of a Linux guest captured by bench/real-pages.ts.
 */
import { deflateRawSync } from 'node:zlib';
import { applyPages, encodePages, encodePagesSync, type EncodePagesOptions } from '../lib/index.js';
import { native } from '../lib/native.js';
import { encodeBody, forEachLiteral, KIND } from '../test/reference/delta.js';
import { PAGE_KINDS, pagePairs } from '../test/reference/pages.js';
import { changedBytesPerPair, loadRealPages, selectPairs, type RealPages } from '../test/helpers/real-pages.js';
import { type BenchContext, fmt, measure, type Row, settle } from './harness.js';

export const name = 'delta';

const PS = 4096;

function xorPage(a: Uint8Array, b: Uint8Array, out: Uint8Array): void {
  const a32 = new Uint32Array(a.buffer, a.byteOffset, a.length >> 2);
  const b32 = new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
  const o32 = new Uint32Array(out.buffer, out.byteOffset, out.length >> 2);
  for (let i = 0; i < o32.length; i++) o32[i] = a32[i] ^ b32[i];
}

export async function run(ctx: BenchContext): Promise<void> {
  const count = ctx.quick ? 512 : 4096; // 2 or 16 MiB of pages per call
  const small = ctx.quick ? 32 : 128; // pages for the slow TS / deflate baselines
  const time = ctx.quick ? 150 : 600;
  const pfns = Uint32Array.from({ length: count }, (_, i) => i);
  const rows: Row[] = [];
  const summary: Row[] = [];
  for (const kind of PAGE_KINDS) {
    const { old, next } = pagePairs(42, kind, count);
    const shadow = old.slice();
    // XOR-symmetric kinds encode the same changes in alternating direction. For 'zero',
    // 'random' and 'half' the reverse is a different kind of change, so there the shadow is
    // reset (untimed) before each call.
    const reset = kind === 'zero' || kind === 'random' || kind === 'half';
    let flip = false;
    const encode = (threads: number, compress = true, entropy = true) => {
      flip = !flip;
      return encodePagesSync(shadow, reset || flip ? next : old, pfns, { threads, compress, entropy });
    };
    const encodeAsync = (threads: number) => {
      flip = !flip;
      return encodePages(shadow, reset || flip ? next : old, pfns, { threads });
    };
    // Mean time of fn over `time` ms (at least 5 runs), with the shadow reset before each run.
    const timedWithReset = async (fn: () => unknown): Promise<{ timeNs: number; p99Ns: number; samples: number }> => {
      for (let i = 0; i < 2; i++) {
        shadow.set(old);
        await fn();
      }
      let total = 0;
      let runs = 0;
      while (runs < 5 || total < time * 1e6) {
        shadow.set(old);
        const t0 = process.hrtime.bigint();
        await fn();
        total += Number(process.hrtime.bigint() - t0);
        runs++;
      }
      return { timeNs: total / runs, p99Ns: total / runs, samples: runs };
    };
    // Frames both ways for apply, and output sizes.
    const fwd = encodePagesSync(old.slice(), next, pfns);
    const first = encodePagesSync(old.slice(), next, pfns, { compress: false });
    const noEntropy = encodePagesSync(old.slice(), next, pfns, { entropy: false });
    // Applying the same frame again does the same work (XOR toggles, RAW/ZERO rewrite).
    const replica = old.slice();
    const apply = (threads: number) => applyPages(replica, fwd, { threads });
    const x = new Uint8Array(PS);
    const oldS = old.subarray(0, small * PS);
    const nextS = next.subarray(0, small * PS);
    let tsBytes = 0;
    let deflateBytes = 0;
    const tasks = {
      'encodePages 1t': () => encode(1),
      'encodePages 2t': () => encode(2),
      'encodePages async 1t': () => encodeAsync(1),
      'encodePages async 2t': () => encodeAsync(2),
      'entropy off 1t': () => encode(1, true, false),
      'first stage only 1t': () => encode(1, false),
      'applyPages 1t': () => apply(1),
      'applyPages 2t': () => apply(2),
      'TS XOR+zero-run': () => {
        tsBytes = 0;
        for (let p = 0; p < small; p++) tsBytes += 8 + encodeBody(oldS.subarray(p * PS, (p + 1) * PS), nextS.subarray(p * PS, (p + 1) * PS)).body.length;
      },
      'XOR+deflate(1)': () => {
        deflateBytes = 0;
        for (let p = 0; p < small; p++) {
          xorPage(oldS.subarray(p * PS, (p + 1) * PS), nextS.subarray(p * PS, (p + 1) * PS), x);
          deflateBytes += deflateRawSync(x, { level: 1 }).length;
        }
      },
      'XOR+lz4': () => native.bench_xor_compress(oldS, nextS, PS, 0),
      'XOR+zstd(1)': () => native.bench_xor_compress(oldS, nextS, PS, 1),
    };
    const encodeTasks = ['encodePages 1t', 'encodePages 2t', 'encodePages async 1t', 'encodePages async 2t', 'entropy off 1t', 'first stage only 1t'] as const;
    const res = await measure(
      reset ? Object.fromEntries(Object.entries(tasks).filter(([t]) => !(encodeTasks as readonly string[]).includes(t))) : tasks,
      { quick: ctx.quick, time },
    );
    if (reset) {
      for (const t of encodeTasks) {
        await settle();
        res[t] = await timedWithReset(tasks[t]);
      }
    }
    const lz4Bytes = native.bench_xor_compress(oldS, nextS, PS, 0) as number;
    const zstdBytes = native.bench_xor_compress(oldS, nextS, PS, 1) as number;
    (tasks['TS XOR+zero-run'] as () => void)();
    (tasks['XOR+deflate(1)'] as () => void)();
    const big = count * PS;
    const smallBytes = small * PS;
    const sizes: Record<string, number> = {
      'encodePages 1t': fmt.pct(fwd.length, big),
      'encodePages 2t': fmt.pct(fwd.length, big),
      'encodePages async 1t': fmt.pct(fwd.length, big),
      'encodePages async 2t': fmt.pct(fwd.length, big),
      'entropy off 1t': fmt.pct(noEntropy.length, big),
      'first stage only 1t': fmt.pct(first.length, big),
      'applyPages 1t': fmt.pct(fwd.length, big),
      'applyPages 2t': fmt.pct(fwd.length, big),
      'TS XOR+zero-run': fmt.pct(tsBytes, smallBytes),
      'XOR+deflate(1)': fmt.pct(deflateBytes, smallBytes),
      'XOR+lz4': fmt.pct(lz4Bytes, smallBytes),
      'XOR+zstd(1)': fmt.pct(zstdBytes, smallBytes),
    };
    for (const [task, r] of Object.entries(res)) {
      const bytes = /^(encodePages|apply|first|entropy)/.test(task) ? big : smallBytes;
      rows.push({ kind, method: task, 'GB/s in': fmt.gbps(bytes, r.timeNs), 'out %': sizes[task] });
    }
    summary.push({
      kind,
      'encode 1t GB/s': fmt.gbps(big, res['encodePages 1t'].timeNs),
      'encode 2t GB/s': fmt.gbps(big, res['encodePages 2t'].timeNs),
      'async 1t GB/s': fmt.gbps(big, res['encodePages async 1t'].timeNs),
      'async 2t GB/s': fmt.gbps(big, res['encodePages async 2t'].timeNs),
      'apply 1t GB/s': fmt.gbps(big, res['applyPages 1t'].timeNs),
      'out %': sizes['encodePages 1t'],
      'entropy off 1t GB/s': fmt.gbps(big, res['entropy off 1t'].timeNs),
      'entropy off %': sizes['entropy off 1t'],
      'vs TS x': fmt.ratio(res['TS XOR+zero-run'].timeNs / smallBytes, res['encodePages 1t'].timeNs / big),
      'zstd(1) %': sizes['XOR+zstd(1)'],
      'zstd(1) GB/s': fmt.gbps(smallBytes, res['XOR+zstd(1)'].timeNs),
    });
    ctx.log(`  ${kind} done`);
  }
  // Epoch-sized batches: issue 5's replication target dirties ~2 MiB per 25 ms epoch, gathered
  // just before encoding, so the pages are cache-warm rather than DRAM-bound as above.
  for (const kind of ['realistic', 'counters'] as const) {
    const n = 512;
    const { old, next } = pagePairs(43, kind, n);
    const ep = pfns.subarray(0, n);
    const shadow = old.slice();
    let flip = false;
    const enc = (threads: number, entropy = true) => {
      flip = !flip;
      return encodePagesSync(shadow, flip ? next : old, ep, { threads, entropy });
    };
    const res = await measure({ '1t': () => enc(1), '2t': () => enc(2), off: () => enc(1, false) }, { quick: ctx.quick, time });
    const size = encodePagesSync(old.slice(), next, ep).length;
    const offSize = encodePagesSync(old.slice(), next, ep, { entropy: false }).length;
    summary.push({
      kind: `${kind}, 2 MiB batch`,
      'encode 1t GB/s': fmt.gbps(n * PS, res['1t'].timeNs),
      'encode 2t GB/s': fmt.gbps(n * PS, res['2t'].timeNs),
      'apply 1t GB/s': '',
      'out %': fmt.pct(size, n * PS),
      'entropy off 1t GB/s': fmt.gbps(n * PS, res.off.timeNs),
      'entropy off %': fmt.pct(offSize, n * PS),
      'vs TS x': '',
      'zstd(1) %': '',
      'zstd(1) GB/s': '',
    });
  }
  ctx.report({
    family: 'delta',
    title: `encodePages / applyPages vs baselines (${count} pages of 4 KiB; baselines on ${small} pages)`,
    rows,
    notes: [
      'GB/s = input (whole new pages) per second; out % = output bytes / whole pages.',
      'Targets (issue 3 §4), real-looking fine-grained pages (realistic, counters): out <= 20 % and >= 2 GB/s per thread.',
      'encodePages rows use the default codec (XRLE or XBM per page, lz4 where it pays, the Huffman stage where an 8-page sample says it saves a quarter, and an own literal code for XBM pages of 1280 changed bytes or more); "entropy off" is lz4 only; GB/s from the median call.',
    ],
  });
  ctx.report({ family: 'delta', title: 'delta summary', rows: summary });
  if (ctx.realPages) await realPages(ctx, ctx.realPages);
  else ctx.log('real guest pages: skipped: none given (run npx tsx bench/real-pages.ts, then pass --real-pages FILE; or pass raw memory images of one guest, --real-pages A.img,B.img)');
}

// ---- real Linux guest pages (bench/real-pages.ts) ----

/** Pages per encodePages call: a 2 MiB batch, what replication gathers per epoch. */
const REAL_BATCH = 512;
/** Fine-grained pages, the target: fewer than half the bytes changed. */
const FINE_BELOW = 2048;

interface Pass {
  ns: number;
  bytes: number;
  frames: Uint8Array[];
}

/**
 * Encodes every pair of `set` in REAL_BATCH-page calls against a fresh shadow (the old pages,
 * reset untimed) and times only the encode calls.
 */
async function encodePass(set: RealPages, opts: EncodePagesOptions, useAsync: boolean, shadow: Uint8Array): Promise<Pass> {
  const ps = set.pageSize;
  shadow.set(set.old);
  const pfns = Uint32Array.from({ length: set.count }, (_, i) => i);
  const frames: Uint8Array[] = [];
  let ns = 0;
  for (let at = 0; at < set.count; at += REAL_BATCH) {
    const end = Math.min(set.count, at + REAL_BATCH);
    const pages = set.next.subarray(at * ps, end * ps);
    const t0 = process.hrtime.bigint();
    const f = useAsync ? await encodePages(shadow, pages, pfns.subarray(at, end), opts) : encodePagesSync(shadow, pages, pfns.subarray(at, end), opts);
    ns += Number(process.hrtime.bigint() - t0);
    frames.push(f);
  }
  return { ns, bytes: frames.reduce((n, f) => n + f.length, 0), frames };
}

/**
 * Repeats `pass` for about `time` ms (at least 5 times); the median ns of a pass (see measure()
 * in harness.ts: a shared machine's bursts skew a mean) and the last pass.
 */
async function repeat<T extends { ns: number }>(time: number, pass: () => Promise<T>): Promise<{ timeNs: number; last: T }> {
  let total = 0;
  const times: number[] = [];
  let last = await pass(); // warm-up, not counted
  while (times.length < 5 || total < time * 1e6) {
    last = await pass();
    total += last.ns;
    times.push(last.ns);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  return { timeNs: times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2, last };
}

/** Applies the frames to a copy of the old pages and checks the result is the new pages. */
function checkRoundTrip(set: RealPages, frames: Uint8Array[]): void {
  const replica = set.old.slice();
  for (const f of frames) applyPages(replica, f, { pageSize: set.pageSize });
  if (Buffer.compare(replica, set.next) !== 0) throw new Error('real pages: applyPages of the frames did not reproduce the new pages');
}

/**
 * Where frame bytes go, as % of whole pages: header + index, first-stage metadata (XRLE token
 * bytes and varints, XBM masks), first-stage literal bytes (XRLE and XBM), lz4-compressed
 * bodies, Huffman-coded bodies (kinds 6, 7, 9, 10 and 12), RAW bodies; and how many pages of each
 * kind (docs/FORMAT.md).
 */
function breakdown(frames: Uint8Array[], ps: number, pages: number): Row {
  const acc = { 'head+index %': 0, 'tokens/masks %': 0, 'literals %': 0, 'lz4 bodies %': 0, 'huffman bodies %': 0, 'raw %': 0 };
  const kinds = new Array<number>(13).fill(0);
  for (const f of frames) {
    const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
    const count = dv.getUint32(8, true);
    acc['head+index %'] += 32 + 8 * count;
    let body = 32 + 8 * count;
    for (let i = 0; i < count; i++) {
      const kind = f[32 + 8 * i + 4]!;
      const len = dv.getUint32(32 + 8 * i + 4, true) >>> 8;
      const b = f.subarray(body, body + len);
      kinds[kind]!++;
      if (kind === KIND.XRLE || kind === XBM) {
        let lit = 0;
        if (kind === XBM) lit = len - xbmMaskBytes(b, ps);
        else forEachLiteral(b, ps, (_pos, n) => (lit += n));
        acc['literals %'] += lit;
        acc['tokens/masks %'] += len - lit;
      } else if (kind === KIND.RAW) acc['raw %'] += len;
      else if (kind === KIND.XRLE_LZ4 || kind === KIND.RAW_LZ4 || kind === XBM_LZ4) acc['lz4 bodies %'] += len;
      else acc['huffman bodies %'] += len;
      body += len;
    }
  }
  const row: Row = {};
  for (const [k, v] of Object.entries(acc)) row[k] = fmt.pct(v, pages * ps);
  row['kinds S/Z/X/R/XL/RL/H/HT/B/BH/BHT/BL/BO'] = kinds.join('/');
  return row;
}

/** Page kinds XBM and XBM+LZ4 (docs/FORMAT.md). */
const XBM = 8;
const XBM_LZ4 = 11;

/** Bytes of the masks of an XBM body (of our own encoder: well formed) for a page of `ps` bytes. */
function xbmMaskBytes(body: Uint8Array, ps: number): number {
  let at = ps / 512;
  for (let i = 0; i < ps / 512; i++) {
    for (let bit = 0; bit < 8; bit++) {
      if ((body[i]! >> bit) & 1) {
        const words = body[at]!;
        at += 1;
        for (let w = 0; w < 8; w++) at += (words >> w) & 1;
      }
    }
  }
  return at;
}

/** Median of the changed bytes of a set's pairs. */
function medianChanged(set: RealPages): number {
  const b = changedBytesPerPair(set).sort();
  return b[b.length >> 1] ?? 0;
}

async function measureReal(label: string, set: RealPages, time: number): Promise<{ rows: Row[]; split: Row }> {
  const ps = set.pageSize;
  const whole = set.count * ps;
  const shadow = new Uint8Array(set.old.length);
  const encode = async (opts: EncodePagesOptions, useAsync: boolean) => {
    await settle();
    return repeat(time, () => encodePass(set, opts, useAsync, shadow));
  };
  const sync1 = await encode({ threads: 1 }, false);
  checkRoundTrip(set, sync1.last.frames);
  const results: [string, number, number][] = [
    ['encodePagesSync 1t', sync1.timeNs, sync1.last.bytes],
  ];
  for (const [method, opts, useAsync] of [
    ['encodePages (async) 1t', { threads: 1 }, true],
    ['encodePages (async) 2t', { threads: 2 }, true],
    ['own codes from 1024 B (sync) 1t', { threads: 1, ownCodes: 1024 }, false],
    ['own codes off (sync) 1t', { threads: 1, ownCodes: false }, false],
    ['entropy off (sync) 1t', { threads: 1, entropy: false }, false],
    ['first stage only (sync) 1t', { threads: 1, compress: false }, false],
  ] as const) {
    const r = await encode(opts, useAsync);
    results.push([method, r.timeNs, r.last.bytes]);
  }
  for (const [method, level] of [['XOR+zstd(1) per page', 1], ['XOR+lz4 per page', 0]] as const) {
    let bytes = 0;
    const r = await repeat(time, async () => {
      const t0 = process.hrtime.bigint();
      bytes = native.bench_xor_compress(set.old, set.next, ps, level) as number;
      return { ns: Number(process.hrtime.bigint() - t0) };
    });
    results.push([method, r.timeNs, bytes]);
  }
  const median = medianChanged(set);
  const rows = results.map(([method, ns, bytes]) => ({
    pages: label, count: set.count, 'median changed B': median, method, 'GB/s in': fmt.gbps(whole, ns), 'out %': fmt.pct(bytes, whole),
  }));
  return { rows, split: { pages: label, ...breakdown(sync1.last.frames, ps, set.count) } };
}

async function realPages(ctx: BenchContext, spec: string): Promise<void> {
  const all = loadRealPages(spec);
  const changed = changedBytesPerPair(all);
  const fine = selectPairs(all, (i) => changed[i]! < FINE_BELOW);
  const time = ctx.quick ? 300 : 1500;
  const rows: Row[] = [];
  const split: Row[] = [];
  for (const [label, set] of [['all', all], [`fine (< ${FINE_BELOW} B changed)`, fine]] as const) {
    if (set.count === 0) continue;
    const r = await measureReal(label, set, time);
    rows.push(...r.rows);
    split.push(r.split);
    ctx.log(`  real pages, ${label} done`);
  }
  ctx.report({
    family: 'delta',
    title: `real guest pages (${all.count} changed pages over ${all.intervals} intervals of ${all.source}, ${REAL_BATCH}-page batches)`,
    rows,
    notes: [
      'GB/s = input (whole new pages) per second; out % = output bytes / whole pages; encodePages counts its frame header and 8-byte index entries, the per-page baselines count nothing but compressed bytes.',
      'Every frame of the encodePagesSync pass is applied to a copy of the old pages and checked against the new pages.',
      'Targets (issue 3 §4), fine-grained pages: out <= 20 % and >= 2 GB/s per thread.',
    ],
  });
  ctx.report({ family: 'delta', title: 'real pages: where the encodePages bytes go (% of whole pages; page kinds by docs/FORMAT.md number: S SAME, Z ZERO, X XRLE, R RAW, XL XRLE+LZ4, RL RAW+LZ4, H/HT XRLE+HUF, B XBM, BH/BHT XBM+HUF, BL XBM+LZ4, BO XBM+HUF with its own code)', rows: split });
}
