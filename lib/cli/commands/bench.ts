/**
 * `understudy bench`: runs the native kernels on generated guest memory and prints what they did
 * and how fast — a self-contained smoke benchmark that needs nothing but the installed package.
 * The full side-by-side benchmarks with baselines are `npm run bench` in a clone.
 */
import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  allocateMemory,
  countBitmap,
  encodePages,
  gatherPages,
  hashPages,
  isa,
  scanBitmap,
} from '../../index.js';
import { intOption, parse } from '../util.js';

export const summary = 'run the native kernels on generated memory and print their speed';
export const usage = `usage: understudy bench [--memory MiB] [--dirty PERCENT] [--seed N] [--json]

Fills a guest-sized buffer with generated pages, dirties a fraction of them with small
realistic changes (a few short runs per page), and times the checkpoint kernels on it:
bitmap scan, gather of the dirty pages, delta encoding against the previous version, and
page hashing. Medians of repeated runs; ratios are within this one run.

options:
  --memory MiB     guest memory to generate (default 256)
  --dirty PERCENT  share of pages dirtied per epoch, 0.01 to 100 (default 1)
  --seed N         generator seed (default 1)
  --json           print one JSON object instead of a table`;

const PAGE = 4096;

function rng(seed: number) {
  let s = BigInt(seed) | 1n;
  return () => {
    // xorshift64*: deterministic and cheap; the data only needs to look varied
    s ^= s >> 12n;
    s ^= (s << 25n) & 0xffffffffffffffffn;
    s ^= s >> 27n;
    return Number(((s * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn) >> 11n) / 2 ** 53;
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(fn: () => void, reps: number): number {
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse('bench', argv, {
    memory: { type: 'string' },
    dirty: { type: 'string' },
    seed: { type: 'string' },
    json: { type: 'boolean' },
  });
  const mib = intOption('bench', 'memory', values.memory as string | undefined, 256, 4, 65536);
  const dirtyPct = values.dirty === undefined ? 1 : Number(values.dirty);
  if (!(dirtyPct >= 0.01 && dirtyPct <= 100)) {
    process.stderr.write(`understudy: bench: --dirty must be a percentage from 0.01 to 100, got ${values.dirty}\n`);
    return 2;
  }
  const seed = intOption('bench', 'seed', values.seed as string | undefined, 1, 0);
  const json = values.json === true;
  const say = (s: string) => process.stderr.write(s + '\n');

  const rand = rng(seed);
  const pages = (mib * 1024 * 1024) / PAGE;
  say(`bench: generating ${mib} MiB of guest memory (${pages} pages), isa ${isa()}`);
  const mem = allocateMemory(pages * PAGE);
  try {
    const view = mem.view;
    // Three quarters of the pages hold data, the rest stay zero, as in a booted guest.
    const chunk = new Uint8Array(1 << 20);
    for (let off = 0; off < view.length; off += chunk.length) {
      randomFillSync(chunk);
      view.set(chunk.subarray(0, Math.min(chunk.length, view.length - off)), off);
    }
    const bitmap = new Uint8Array(Math.ceil(pages / 8));
    const dirty = Math.max(1, Math.round((pages * dirtyPct) / 100));
    let marked = 0;
    while (marked < dirty) {
      const p = Math.floor(rand() * pages);
      if (bitmap[p >> 3]! & (1 << (p & 7))) continue;
      bitmap[p >> 3]! |= 1 << (p & 7);
      marked++;
    }
    const shadow = new Uint8Array(view); // what the backup holds
    for (let p = 0; p < pages; p++) if (rand() < 0.25) view.fill(0, p * PAGE, (p + 1) * PAGE);
    shadow.set(view);
    const pfns = scanBitmap(bitmap);
    // A few short runs of changed bytes per dirty page (what real guests show).
    for (const p of pfns) {
      const runs = 4 + Math.floor(rand() * 12);
      for (let r = 0; r < runs; r++) {
        const at = p * PAGE + Math.floor(rand() * (PAGE - 64));
        const len = 8 + Math.floor(rand() * 56);
        for (let i = 0; i < len; i++) view[at + i] = (view[at + i]! + 1 + Math.floor(rand() * 255)) & 0xff;
      }
    }

    say('bench: timing scanBitmap, gatherPages, encodePages, hashPages');
    const reps = 9;
    const scanMs = time(() => void scanBitmap(bitmap), reps);
    const bytes = pfns.length * PAGE;
    // Both copies write into a buffer allocated once, as the epoch loop's staging buffer is.
    const gathered = new Uint8Array(bytes);
    const gatherMs = time(() => void gatherPages(view, pfns, { pageSize: PAGE, out: gathered }), reps);
    const big = new Uint8Array(bytes);
    const memcpyMs = time(() => big.set(view.subarray(0, bytes)), reps);
    // encodePages updates the shadow, so each timed run starts from a fresh copy of it.
    const encodeRuns: number[] = [];
    let frameBytes = 0;
    for (let i = 0; i < 3; i++) {
      const s = new Uint8Array(shadow);
      const t0 = performance.now();
      const frame = await encodePages(s, gathered, pfns, { pageSize: PAGE });
      encodeRuns.push(performance.now() - t0);
      frameBytes = frame.length;
    }
    const encodeNetMs = median(encodeRuns);
    const hashMs = time(() => void hashPages(view, { pageSize: PAGE }), 3);

    const result = {
      isa: isa(),
      memoryMiB: mib,
      dirtyPages: countBitmap(bitmap),
      scanBitmap: { bitmapBytes: bitmap.length, us: +(scanMs * 1000).toFixed(1) },
      gatherPages: { bytes, gbps: +(bytes / gatherMs / 1e6).toFixed(2), vsMemcpy: +(memcpyMs / gatherMs).toFixed(2) },
      encodePages: { bytes, frameBytes, outputPct: +((100 * frameBytes) / bytes).toFixed(1), gbps: +(bytes / encodeNetMs / 1e6).toFixed(2) },
      hashPages: { bytes: view.length, gbps: +(view.length / hashMs / 1e6).toFixed(2) },
    };
    if (json) {
      process.stdout.write(JSON.stringify(result) + '\n');
    } else {
      const lines = [
        `isa ${result.isa}; ${mib} MiB guest, ${result.dirtyPages} dirty pages (${dirtyPct}%)`,
        `scanBitmap   ${result.scanBitmap.bitmapBytes} B bitmap in ${result.scanBitmap.us} us`,
        `gatherPages  ${result.gatherPages.gbps} GB/s (${result.gatherPages.vsMemcpy}x one memcpy of the same bytes)`,
        `encodePages  ${result.encodePages.gbps} GB/s in, frame ${result.encodePages.frameBytes} B = ${result.encodePages.outputPct}% of whole dirty pages`,
        `hashPages    ${result.hashPages.gbps} GB/s (XXH3-64 per page over all memory)`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    }
    return 0;
  } finally {
    mem.close();
  }
}
