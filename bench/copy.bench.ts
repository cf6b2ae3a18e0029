/**
 * gatherPages / scatterPages: listed pages of a 256 MiB guest memory into one contiguous buffer,
 * against Buffer.copy per page and against one big memcpy (Buffer.copy) of the same number of
 * contiguous bytes, per ISA, with 1 and 2 threads.
 */
import { allocateMemory, gatherPages, isa, scatterPages, setIsa, supportedIsas } from '../lib/index.js';
import { fmt, measure, type BenchContext } from './harness.js';
import { rng } from '../test/reference/random.js';

export const name = 'copy';


/** `n` distinct pfns below `pages`, ascending (as scanBitmap returns them), in runs up to `run`. */
function pickPfns(n: number, pages: number, run: number, seed: number): Uint32Array {
  const rand = rng(seed);
  const set = new Set<number>();
  while (set.size < n) {
    const start = Math.floor(rand() * pages);
    const len = 1 + Math.floor(rand() * run);
    for (let p = start; p < Math.min(pages, start + len) && set.size < n; p++) set.add(p);
  }
  return Uint32Array.from([...set].sort((a, b) => a - b));
}

export async function run(ctx: BenchContext): Promise<void> {
  const pageSize = 4096;
  const memBytes = 256 * 1024 * 1024;
  const mem = allocateMemory(memBytes);
  const view = mem.view;
  for (let off = 0; off < memBytes; off += pageSize) view[off] = off >>> 12;
  const memBuf = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  const cases = [
    { label: '4096 random pages (16 MiB)', pfns: pickPfns(4096, memBytes / pageSize, 1, 1) },
    { label: '4096 pages in runs of 1-32', pfns: pickPfns(4096, memBytes / pageSize, 32, 2) },
    { label: '512 random pages (2 MiB)', pfns: pickPfns(512, memBytes / pageSize, 1, 3) },
  ];
  const start = isa();
  const rows = [];
  const time = ctx.quick ? 150 : 500;
  for (const c of cases) {
    const bytes = c.pfns.length * pageSize;
    const out = Buffer.alloc(bytes, 1);
    const spanStart = 64 * 1024 * 1024;
    const base = await measure(
      {
        perPage: () => {
          for (let i = 0; i < c.pfns.length; i++) {
            const src = c.pfns[i]! * pageSize;
            memBuf.copy(out, i * pageSize, src, src + pageSize);
          }
        },
        allocFloor: () => Buffer.allocUnsafe(bytes).fill(1),
      },
      { quick: ctx.quick, time },
    );
    for (const name of supportedIsas()) {
      setIsa(name);
      const r = await measure(
        {
          out1: () => gatherPages(view, c.pfns, { pageSize, out, threads: 1 }),
          out2: () => gatherPages(view, c.pfns, { pageSize, out, threads: 2 }),
          alloc1: () => gatherPages(view, c.pfns, { pageSize, threads: 1 }),
          scatter1: () => scatterPages(view, c.pfns, out, { pageSize, threads: 1 }),
          // Measured in the same batch as gatherPages, so the ratio holds under shared load.
          memcpy: () => memBuf.copy(out, 0, spanStart, spanStart + bytes),
        },
        { quick: ctx.quick, time },
      );
      rows.push({
        case: c.label,
        isa: name,
        'Buffer.copy/page GB/s': fmt.gbps(bytes, base.perPage!.timeNs),
        'one memcpy GB/s': fmt.gbps(bytes, r.memcpy!.timeNs),
        'gather 1T GB/s': fmt.gbps(bytes, r.out1!.timeNs),
        'gather 2T GB/s': fmt.gbps(bytes, r.out2!.timeNs),
        'gather new buf GB/s': fmt.gbps(bytes, r.alloc1!.timeNs),
        'new Buffer+fill GB/s': fmt.gbps(bytes, base.allocFloor!.timeNs),
        'scatter 1T GB/s': fmt.gbps(bytes, r.scatter1!.timeNs),
        '1T / memcpy': fmt.ratio(r.memcpy!.timeNs, r.out1!.timeNs),
        '2T / memcpy': fmt.ratio(r.memcpy!.timeNs, r.out2!.timeNs),
        '1T / per page': fmt.ratio(base.perPage!.timeNs, r.out1!.timeNs),
      });
    }
  }
  setIsa(start);
  mem.close();
  ctx.report({
    family: 'copy',
    title: 'gatherPages from 256 MiB of guest memory (4 KiB pages)',
    rows,
    notes: [
      'gather 1T/2T: into a reused `out` buffer, 1 or 2 threads; gather new buf: a fresh result each call (includes its page faults).',
      'new Buffer+fill: Buffer.allocUnsafe(bytes).fill(1), the cost of touching any fresh buffer of that size (page faults; slow under nested virtualisation).',
      'X / memcpy: one Buffer.copy of the same number of contiguous bytes into the same `out`, divided by gatherPages time (target >= 0.9).',
    ],
  });
}
