/**
 * gatherPages/scatterPages: every ISA path against the page-by-page TS reference (page sizes,
 * runs, repeats, 1 and 2 threads, streaming sizes, unaligned `out`), all-or-nothing pfn checks,
 * and exact errors for hostile inputs (bad sizes, overlaps, wrong types, detached and closed memory).
 */
import { describe, expect, it } from 'vitest';
import { allocateMemory, gatherPages, scatterPages } from '../lib/index.js';
import { forEachIsa } from './each-isa.js';
import { gatherPagesRef, scatterPagesRef } from './reference/copy.js';
import { randomBytes, rng } from './reference/random.js';

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0;

/** Random pfns below `pages`: runs of consecutive pfns, repeats and jumps mixed. */
function randomPfns(rand: () => number, n: number, pages: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (i > 0 && r < 0.4 && out[i - 1]! + 1 < pages) out[i] = out[i - 1]! + 1;
    else if (i > 0 && r < 0.45) out[i] = out[i - 1]!;
    else out[i] = Math.floor(rand() * pages);
  }
  return out;
}

function detached(): Uint8Array {
  const b = new Uint8Array(8192);
  structuredClone(b.buffer, { transfer: [b.buffer] });
  return b;
}

forEachIsa('gatherPages/scatterPages', () => {
  it('gathers like the reference for many page sizes and list lengths', () => {
    const rand = rng(10);
    for (const pageSize of [512, 4096, 65536]) {
      const pages = 40;
      const memory = randomBytes(rand, pages * pageSize);
      for (const n of [0, 1, 2, 7, 33, 100]) {
        const pfns = randomPfns(rand, n, pages);
        expect(same(gatherPages(memory, pfns, { pageSize }), gatherPagesRef(memory, pfns, pageSize)), `pageSize ${pageSize} n ${n}`).toBe(true);
      }
    }
  });

  it('gathers big batches with 1 and 2 threads, streaming and not', () => {
    const rand = rng(11);
    const pageSize = 4096;
    const memory = randomBytes(rand, 4096 * pageSize);
    for (const n of [1100, 2100]) {
      const pfns = randomPfns(rand, n, 4096);
      const want = gatherPagesRef(memory, pfns, pageSize);
      for (const threads of [1, 2]) expect(same(gatherPages(memory, pfns, { pageSize, threads }), want), `n ${n} threads ${threads}`).toBe(true);
    }
  });

  it('gathers big batches into `out` at every alignment the streaming stores care about', () => {
    // 2100 pages (8.2 MiB) take streaming stores: 64-byte ones where `out` is 64-byte aligned,
    // 16-byte ones where it is 16-byte aligned only, plain stores elsewhere. allocateMemory is
    // page-aligned, so its offsets 0, 16, 48 and 3 reach each case.
    const rand = rng(15);
    const pageSize = 4096;
    const memory = randomBytes(rand, 4096 * pageSize);
    const pfns = randomPfns(rand, 2100, 4096);
    const want = gatherPagesRef(memory, pfns, pageSize);
    const backing = allocateMemory(2101 * pageSize);
    try {
      for (const offset of [0, 16, 48, 3]) {
        backing.view.fill(0xee);
        const out = backing.view.subarray(offset, offset + want.length);
        expect(same(gatherPages(memory, pfns, { pageSize, out, threads: 1 }), want), `offset ${offset}`).toBe(true);
        expect(backing.view.subarray(0, offset).every((b) => b === 0xee), `offset ${offset}: bytes before`).toBe(true);
        expect(backing.view.subarray(offset + want.length).every((b) => b === 0xee), `offset ${offset}: bytes after`).toBe(true);
      }
    } finally {
      backing.close();
    }
  });

  it('gathers into `out`, aligned or not, and leaves the rest of it alone', () => {
    const rand = rng(12);
    const pageSize = 512;
    const memory = randomBytes(rand, 64 * pageSize);
    const pfns = randomPfns(rand, 20, 64);
    const want = gatherPagesRef(memory, pfns, pageSize);
    const exact = new Uint8Array(20 * pageSize);
    expect(gatherPages(memory, pfns, { pageSize, out: exact })).toBe(exact);
    expect(same(exact, want)).toBe(true);
    const backing = new Uint8Array(21 * pageSize + 3).fill(0xee);
    const out = backing.subarray(3);
    const got = gatherPages(memory, pfns, { pageSize, out });
    expect(got.byteOffset).toBe(3);
    expect(same(got, want)).toBe(true);
    expect(backing.subarray(0, 3).every((b) => b === 0xee) && out.subarray(want.length).every((b) => b === 0xee)).toBe(true);
  });

  it('scatters like the reference, repeated pfns ending with their last copy', () => {
    const rand = rng(13);
    for (const pageSize of [512, 4096]) {
      const memory = randomBytes(rand, 50 * pageSize);
      const expected = memory.slice();
      const pfns = randomPfns(rand, 60, 50);
      const pages = randomBytes(rand, 60 * pageSize);
      scatterPagesRef(expected, pfns, pages, pageSize);
      scatterPages(memory, pfns, pages, { pageSize });
      expect(same(memory, expected)).toBe(true);
    }
  });

  it('scatters big ascending batches with 2 threads, and gather inverts it', () => {
    const rand = rng(14);
    const pageSize = 4096;
    const memory = randomBytes(rand, 3000 * pageSize);
    const expected = memory.slice();
    const pfns = Uint32Array.from({ length: 2200 }, (_, i) => i + Math.floor(i / 3));
    const pages = randomBytes(rand, pfns.length * pageSize);
    scatterPagesRef(expected, pfns, pages, pageSize);
    scatterPages(memory, pfns, pages, { pageSize, threads: 2 });
    expect(same(memory, expected)).toBe(true);
    expect(same(gatherPages(memory, pfns, { pageSize, threads: 2 }), pages)).toBe(true);
  });
});

describe('gatherPages/scatterPages bad input', () => {
  const memory = new Uint8Array(10 * 4096).fill(1);

  it('checks every pfn before copying anything', () => {
    const out = new Uint8Array(4 * 4096);
    expect(() => gatherPages(memory, Uint32Array.of(0, 1, 2, 10), { pageSize: 4096, out })).toThrow(
      new RangeError('`pfns[3]` is 10, past the end of `memory` (10 pages of 4096 bytes)'),
    );
    expect(out.every((b) => b === 0)).toBe(true);
    const target = new Uint8Array(10 * 4096);
    expect(() => scatterPages(target, Uint32Array.of(1, 4294967295), new Uint8Array(2 * 4096).fill(9), { pageSize: 4096 })).toThrow(
      new RangeError('`pfns[1]` is 4294967295, past the end of `memory` (10 pages of 4096 bytes)'),
    );
    expect(target.every((b) => b === 0)).toBe(true);
  });

  it('never reads a partial last page: memory must be whole pages', () => {
    expect(() => gatherPages(memory.subarray(0, 4096 + 4095), Uint32Array.of(1), { pageSize: 4096 })).toThrow(
      new RangeError('`memory` length must be a multiple of `pageSize` (4096), got 8191'),
    );
    expect(() => gatherPages(memory.subarray(0, 4096), Uint32Array.of(1), { pageSize: 4096 })).toThrow(
      new RangeError('`pfns[0]` is 1, past the end of `memory` (1 pages of 4096 bytes)'),
    );
  });

  it('rejects bad page sizes, thread counts and buffer sizes', () => {
    const one = Uint32Array.of(0);
    expect(() => gatherPages(memory, one, { pageSize: 3000 })).toThrow(new RangeError('`pageSize` must be a power of two from 512 to 1048576, got 3000'));
    expect(() => gatherPages(memory, one, { pageSize: 256 })).toThrow(new RangeError('`pageSize` must be a power of two from 512 to 1048576, got 256'));
    expect(() => gatherPages(memory, one, {} as never)).toThrow(new TypeError('`pageSize` must be a number, got undefined'));
    expect(() => gatherPages(memory, one, undefined as never)).toThrow(new TypeError('`pageSize` must be a number, got undefined'));
    expect(() => gatherPages(memory, one, { pageSize: 4096, threads: 0 })).toThrow(new RangeError('`threads` must be an integer from 1 to 256, got 0'));
    expect(() => gatherPages(memory, one, { pageSize: 4096, out: new Uint8Array(4095) })).toThrow(
      new RangeError('`out` must hold at least `pfns`.length * `pageSize` = 4096 bytes, got 4095'),
    );
    expect(() => scatterPages(new Uint8Array(8192), one, new Uint8Array(4097), { pageSize: 4096 })).toThrow(
      new RangeError('`pages` length must be `pfns`.length * `pageSize` = 4096, got 4097'),
    );
  });

  it('rejects overlapping buffers', () => {
    const buf = new Uint8Array(8 * 4096);
    expect(() => gatherPages(buf.subarray(0, 4 * 4096), Uint32Array.of(0), { pageSize: 4096, out: buf.subarray(3 * 4096) })).toThrow(
      new RangeError('`out` must not overlap `memory`'),
    );
    expect(() => scatterPages(buf.subarray(0, 4 * 4096), Uint32Array.of(0), buf.subarray(2 * 4096, 3 * 4096), { pageSize: 4096 })).toThrow(
      new RangeError('`pages` must not overlap `memory`'),
    );
    const shared = new ArrayBuffer(8 * 4096);
    const pfns = new Uint32Array(shared, 0, 2);
    expect(() => gatherPages(new Uint8Array(4 * 4096), pfns, { pageSize: 4096, out: new Uint8Array(shared) })).toThrow(
      new RangeError('`out` must not overlap `pfns`'),
    );
    expect(() => scatterPages(new Uint8Array(shared), pfns, new Uint8Array(2 * 4096), { pageSize: 4096 })).toThrow(
      new RangeError('`pfns` must not overlap `memory`'),
    );
  });

  it('rejects wrong types and detached buffers', () => {
    expect(() => gatherPages([1, 2] as never, Uint32Array.of(0), { pageSize: 4096 })).toThrow(new TypeError('`memory` must be a Uint8Array, got Array'));
    expect(() => gatherPages(memory, [0] as never, { pageSize: 4096 })).toThrow(new TypeError('`pfns` must be a Uint32Array, got Array'));
    expect(() => gatherPages(memory, new Int32Array(1) as never, { pageSize: 4096 })).toThrow(new TypeError('`pfns` must be a Uint32Array, got Int32Array'));
    expect(() => gatherPages(memory, Uint32Array.of(0), { pageSize: 4096, out: {} as never })).toThrow(new TypeError('`out` must be a Uint8Array, got Object'));
    expect(() => scatterPages(memory, Uint32Array.of(0), 'x' as never, { pageSize: 4096 })).toThrow(new TypeError('`pages` must be a Uint8Array, got string "x"'));
    expect(() => gatherPages(detached(), Uint32Array.of(0), { pageSize: 4096 })).toThrow(
      new TypeError('`memory` is detached (its buffer was transferred or its memory closed)'),
    );
  });

  it('rejects memory that is not whole pages, as the other page kernels do', () => {
    const odd = new Uint8Array(3 * 4096 + 1);
    const err = new RangeError('`memory` length must be a multiple of `pageSize` (4096), got 12289');
    expect(() => gatherPages(odd, Uint32Array.of(0), { pageSize: 4096 })).toThrow(err);
    expect(() => scatterPages(odd, Uint32Array.of(0), new Uint8Array(4096).fill(7), { pageSize: 4096 })).toThrow(err);
    expect(odd.every((b) => b === 0)).toBe(true);
  });

  it('rejects guest memory after close()', () => {
    const mem = allocateMemory(4 * 4096);
    const view = mem.view;
    mem.close();
    expect(() => gatherPages(view, Uint32Array.of(0), { pageSize: 4096 })).toThrow(
      new TypeError('`memory` is detached (its buffer was transferred or its memory closed)'),
    );
  });
});
