import { afterAll, describe, expect, it } from 'vitest';
import {
  applyDelta,
  applyPages,
  applyPagesAsync,
  encodeDelta,
  encodePages,
  encodePagesSync,
  inspectFrame,
  isa,
  setIsa,
  supportedIsas,
} from '../lib/index.js';
import { applyBodyRef, applyFrameRef, encodeBody, encodeDeltaRef, encodePagesRef, huffmanDecodeRef, KIND } from './reference/delta.js';
import { PAGE_KINDS, pagePairs, Rng } from './reference/pages.js';

const PS = 4096;
const startIsa = isa();
afterAll(() => {
  setIsa(startIsa);
});

const hex = (u: Uint8Array) => Buffer.from(u).toString('hex');
const range = (n: number, f: (i: number) => number = (i) => i) => Uint32Array.from({ length: n }, (_, i) => f(i));

/** Throws-with check that also proves `buf` was not modified. */
function expectRejected(fn: () => void, buf: Uint8Array, message: RegExp): void {
  const before = buf.slice();
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(RangeError);
  expect((err as Error).message).toMatch(message);
  expect(hex(buf) === hex(before)).toBe(true);
}

// The worked examples of docs/FORMAT.md.
const EXAMPLE_DELTA = '55444c54010200001000000007000000ef62a36a749da088421010004019f0';
const EXAMPLE_FRAME =
  '5544504601000c00030000000000000008000000000000000e7cbd3a5c21b03e' +
  '0700000000000000' +
  '0200000001000000' +
  '0500000002080000' +
  '2f5501021fc31680';

function exampleDeltaInputs() {
  const prev = Uint8Array.from({ length: 16 }, (_, i) => i);
  const next = prev.slice();
  next[2] = 0x12;
  next[3] = 0x13;
  next[5] = 0x45;
  next[15] = 0xff;
  return { prev, next };
}

function exampleFrameInputs() {
  const shadow = new Uint8Array(8 * PS);
  for (let i = 0; i < shadow.length; i++) shadow[i] = (i * 7) & 0xff;
  const pages = new Uint8Array(3 * PS);
  pages.set(shadow.subarray(7 * PS, 8 * PS), 0);
  pages.set(shadow.subarray(5 * PS, 6 * PS), 2 * PS);
  const p5 = pages.subarray(2 * PS);
  p5[100] ^= 0x01;
  p5[101] ^= 0x02;
  p5[3000] ^= 0x80;
  return { shadow, pages, pfns: Uint32Array.of(7, 2, 5) };
}

describe('docs/FORMAT.md worked examples', () => {
  it('delta example has the documented bytes and applies', () => {
    const { prev, next } = exampleDeltaInputs();
    for (const name of supportedIsas()) {
      setIsa(name);
      expect(hex(encodeDelta(prev, next, { compress: false }))).toBe(EXAMPLE_DELTA);
    }
    expect(hex(encodeDeltaRef(prev, next))).toBe(EXAMPLE_DELTA);
    const t = prev.slice();
    applyDelta(t, Buffer.from(EXAMPLE_DELTA, 'hex'));
    expect(hex(t)).toBe(hex(next));
  });

  it('frame example has the documented bytes, updates the shadow, inspects and applies', () => {
    for (const name of supportedIsas()) {
      setIsa(name);
      const { shadow, pages, pfns } = exampleFrameInputs();
      const replica = shadow.slice();
      const frame = encodePagesSync(shadow, pages, pfns, { compress: false });
      expect(hex(frame)).toBe(EXAMPLE_FRAME);
      for (let i = 0; i < 3; i++) expect(hex(shadow.subarray(pfns[i] * PS, (pfns[i] + 1) * PS)) === hex(pages.subarray(i * PS, (i + 1) * PS))).toBe(true);
      applyPages(replica, frame);
      expect(hex(replica) === hex(shadow)).toBe(true);
    }
    const { shadow, pages, pfns } = exampleFrameInputs();
    expect(hex(encodePagesRef(shadow, pages, pfns))).toBe(EXAMPLE_FRAME);
    const info = inspectFrame(Buffer.from(EXAMPLE_FRAME, 'hex'));
    expect(info).toEqual({ version: 1, pageSize: 4096, count: 3, pfns: Uint32Array.of(7, 2, 5), bytes: 64, payloadBytes: 8 });
  });
});

describe('encodeDelta / applyDelta', () => {
  const sizes = [0, 1, 2, 15, 16, 17, 63, 64, 65, 127, 4095, 4096, 4097, 12345];

  it.each(supportedIsas())('%s: matches the TS reference byte for byte and round-trips', (name) => {
    setIsa(name);
    const rng = new Rng(11);
    for (const n of sizes) {
      for (const mode of ['sparse', 'dense', 'same', 'zero', 'random'] as const) {
        const prev = new Uint8Array(n);
        rng.fill(prev);
        const next = prev.slice();
        if (mode === 'sparse') for (let k = 0; k < Math.max(1, n >> 6); k++) if (n) next[rng.int(n)] ^= 1 + rng.int(255);
        if (mode === 'dense') for (let i = 0; i < n; i++) if (rng.int(3) === 0) next[i] ^= 1 + rng.int(255);
        if (mode === 'zero') next.fill(0);
        if (mode === 'random') rng.fill(next);
        const d = encodeDelta(prev, next, { compress: false });
        expect(hex(d)).toBe(hex(encodeDeltaRef(prev, next)));
        for (const delta of [d, encodeDelta(prev, next)]) {
          const t = prev.slice();
          applyDelta(t, delta);
          expect(hex(t)).toBe(hex(next));
        }
      }
    }
  });

  it('chooses SAME, ZERO, XRLE and RAW as documented', () => {
    const prev = new Uint8Array(64).fill(7);
    expect(encodeDelta(prev, prev.slice(), { compress: false })[5]).toBe(KIND.SAME);
    expect(encodeDelta(prev, new Uint8Array(64), { compress: false })[5]).toBe(KIND.ZERO);
    const one = prev.slice();
    one[9] = 1;
    expect(hex(encodeDelta(prev, one, { compress: false }).subarray(24))).toBe('1906');
    const all = prev.map((v) => v ^ 0xff);
    expect(encodeDelta(prev, all, { compress: false })[5]).toBe(KIND.RAW);
    expect(encodeDelta(new Uint8Array(0), new Uint8Array(0)).length).toBe(24);
  });

  it('uses the lz4 second stage when it pays and round-trips it', () => {
    const prev = new Uint8Array(PS);
    const next = new Uint8Array(PS);
    for (let i = 0; i < PS; i++) next[i] = 'abcdefgh'.charCodeAt(i & 7);
    const d = encodeDelta(prev, next);
    expect(d[5]).toBe(KIND.RAW_LZ4);
    expect(d.length).toBeLessThan(200);
    const t = prev.slice();
    applyDelta(t, d);
    expect(hex(t)).toBe(hex(next));
    const half = prev.slice();
    for (let i = 0; i < 2048; i++) half[i] = next[i];
    const d2 = encodeDelta(prev.map((_, i) => (i < 2048 ? 1 : 0)), half);
    expect(d2[5]).toBe(KIND.XRLE_LZ4);
    const t2 = prev.map((_, i) => (i < 2048 ? 1 : 0));
    applyDelta(t2, d2);
    expect(hex(t2)).toBe(hex(half));
  });

  it('rejects bad arguments with errors naming them', () => {
    expect(() => encodeDelta(new Uint8Array(2), new Uint8Array(3))).toThrow(
      new RangeError('`next` must have the length of `prev` (2 bytes), got 3'),
    );
    expect(() => encodeDelta([] as never, new Uint8Array(3))).toThrow(new TypeError('`prev` must be a Uint8Array, got Array'));
    expect(() => applyDelta(new Uint8Array(2), 'x' as never)).toThrow(new TypeError('`delta` must be a Uint8Array, got string'));
    expect(() => encodeDelta(new Uint8Array(2), new Uint8Array(2), { compress: 1 } as never)).toThrow(
      new TypeError('`compress` must be a boolean, got number'),
    );
  });

  it('rejects hostile deltas with a RangeError naming `delta` and leaves the target unchanged', () => {
    const { old, next } = pagePairs(3, 'realistic', 1);
    const d = encodeDelta(old, next, { compress: false });
    const target = old.slice();
    for (let cut = 0; cut < d.length; cut++) {
      expectRejected(() => applyDelta(target, d.subarray(0, cut)), target, /^`delta` /);
    }
    expectRejected(() => applyDelta(target, d.subarray(0, 10)), target, /^`delta` is shorter than the 24-byte header$/);
    const rng = new Rng(5);
    for (let k = 0; k < 300; k++) {
      const bad = d.slice();
      const bit = rng.int(bad.length * 8);
      bad[bit >> 3] ^= 1 << (bit & 7);
      expectRejected(() => applyDelta(target, bad), target, /^`delta` /);
    }
    const v2 = d.slice();
    v2[4] = 2;
    expectRejected(() => applyDelta(target, v2), target, /^`delta` has an unsupported version$/);
    expectRejected(() => applyDelta(new Uint8Array(100), d), new Uint8Array(100), /^`delta` was made for a target of a different length \(4096 bytes, target has 100\)$/);
    for (let k = 0; k < 100; k++) {
      const junk = new Uint8Array(rng.int(200));
      rng.fill(junk);
      expectRejected(() => applyDelta(target, junk), target, /^`delta` /);
    }
  });

  it('rejects well-checksummed but corrupt bodies (lengths past the end)', () => {
    // Build deltas by hand with valid checksums so only the body check can catch them.
    const make = (kind: number, body: number[], n: number) => {
      const prev = new Uint8Array(n);
      const ref = encodeDeltaRef(prev, prev); // SAME, to borrow the container layout
      const head = Uint8Array.from([...ref.subarray(0, 4), 1, kind, 0, 0, n & 255, n >> 8, 0, 0, body.length, 0, 0, 0]);
      return Uint8Array.from([...head, ...checksum(head, body), ...body]);
    };
    const target = new Uint8Array(32).fill(9);
    expectRejected(() => applyDelta(target, make(KIND.XRLE, [0x1f, 0x7f, 0xaa], 32)), target, /^`delta` is corrupt: skip runs past the end of the page$/);
    expectRejected(() => applyDelta(target, make(KIND.XRLE, [0xf0, 0xaa], 32)), target, /^`delta` is corrupt: literal is truncated$/);
    expectRejected(() => applyDelta(target, make(KIND.XRLE, [0x0f, 0xff, 0xff, 0xff, 0xff, 0xff], 32)), target, /^`delta` is corrupt: truncated or oversized skip varint$/);
    expectRejected(() => applyDelta(target, make(KIND.RAW, [1, 2, 3], 32)), target, /^`delta` is corrupt: RAW body length differs from the page size$/);
    expectRejected(() => applyDelta(target, make(9, [], 32)), target, /^`delta` has an unknown encoding kind$/);
    expectRejected(() => applyDelta(target, make(KIND.RAW_LZ4, [0xff, 0xff, 0xff], 32)), target, /^`delta` is corrupt: corrupt lz4 block$/);
  });
});

import { xxh3 } from '@node-rs/xxhash';
function checksum(head: Uint8Array, body: number[]): number[] {
  const v = xxh3.xxh64(Buffer.concat([head, Uint8Array.from(body)]));
  return Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
}

describe('the Huffman stage (page kinds XRLE+HUF)', () => {
  // 'counters' pages change by small XOR values, so the stage pays on them; 'realistic' pages'
  // literal bytes are close to uniform, so it does not (it must save 1/16 of a group).
  const COUNT = 160; // 2.5 groups of 64 pages: three sets of tables
  const kindsOf = (f: Uint8Array) => Array.from({ length: inspectFrame(f).count }, (_, i) => f[32 + 8 * i + 4]);
  const withSum = (f: Uint8Array) => {
    const v = xxh3.xxh64(f.subarray(32));
    for (let i = 0; i < 8; i++) f[24 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
    return f;
  };
  const { old, next } = pagePairs(61, 'counters', COUNT);
  const pfns = range(COUNT, (i) => (i * 37 + 11) % COUNT);
  const shadowOf = () => {
    const s = new Uint8Array(COUNT * PS);
    for (let i = 0; i < COUNT; i++) s.set(old.subarray(i * PS, (i + 1) * PS), pfns[i] * PS);
    return s;
  };
  const expected = (() => {
    const s = shadowOf();
    for (let i = 0; i < COUNT; i++) s.set(next.subarray(i * PS, (i + 1) * PS), pfns[i] * PS);
    return s;
  })();

  it('decodes the worked example of docs/FORMAT.md', () => {
    const table = new Uint8Array(128);
    table[48] = 0x10;
    table[49] = 0x22;
    expect(Buffer.from(huffmanDecodeRef(table, Uint8Array.of(0x19), 3)).toString()).toBe('bac');
    expect(() => huffmanDecodeRef(table, Uint8Array.of(0x19 | 0x80), 3)).toThrow('non-zero padding');
    expect(Buffer.from(huffmanDecodeRef(table, Uint8Array.of(0x19), 6)).toString()).toBe('bacaaa'); // padding reads as a's: T and L say where to stop
    expect(() => huffmanDecodeRef(table, Uint8Array.of(0x19), 7)).toThrow('truncated');
  });

  it.each(supportedIsas())('%s: same frame for every ISA and thread count; applyPages and the reference decoder agree', (name) => {
    setIsa(name);
    const f1 = encodePagesSync(shadowOf(), next, pfns, { threads: 1 });
    const s2 = shadowOf();
    const f2 = encodePagesSync(s2, next, pfns, { threads: 2 });
    expect(hex(f1) === hex(f2)).toBe(true);
    expect(hex(s2) === hex(expected)).toBe(true);
    setIsa('scalar');
    expect(hex(encodePagesSync(shadowOf(), next, pfns, { threads: 2 })) === hex(f1)).toBe(true);
    expect(inspectFrame(f1).version).toBe(2);
    const kinds = kindsOf(f1);
    // One table page per group of 64 pages, first in its group; the rest of the group refers to it.
    expect(kinds.filter((k) => k === KIND.XRLE_HUF_TABLE).length).toBe(3);
    expect(kinds.filter((k) => k === KIND.XRLE_HUF).length).toBeGreaterThan(COUNT / 2);
    const r = shadowOf();
    applyPages(r, f1);
    expect(hex(r) === hex(expected)).toBe(true);
    const ref = shadowOf();
    applyFrameRef(ref, f1);
    expect(hex(ref) === hex(expected)).toBe(true);
  });

  it('makes frames smaller than lz4 alone on counter pages; entropy: false and realistic pages leave it out', () => {
    const huf = encodePagesSync(shadowOf(), next, pfns);
    const lz4 = encodePagesSync(shadowOf(), next, pfns, { entropy: false });
    expect(kindsOf(lz4).some((k) => k >= KIND.XRLE_HUF)).toBe(false);
    expect(inspectFrame(lz4).version).toBe(1);
    expect(huf.length).toBeLessThan(lz4.length * 0.8);
    // Where the stage does not pay, the frame is byte for byte the lz4-only codec's.
    const real = pagePairs(9, 'realistic', 150);
    const f = encodePagesSync(real.old.slice(), real.next, range(150));
    expect(inspectFrame(f).version).toBe(1);
    expect(hex(f) === hex(encodePagesSync(real.old.slice(), real.next, range(150), { entropy: false }))).toBe(true);
    expect(() => encodePagesSync(shadowOf(), next, pfns, { entropy: 1 as unknown as boolean })).toThrow(
      /^`entropy` must be a boolean, got number$/,
    );
  });

  it('never makes a frame larger than the lz4-only codec: savings count against the best other body', () => {
    // Five bulk pages of small repetitive XOR values (lz4 beats Huffman on them) and one sparse
    // page: counting the bulk pages' Huffman savings against XRLE alone once put the 256 table
    // bytes on the sparse page (523 bytes against 290).
    const shadow = new Uint8Array(6 * PS).fill(0x40);
    const pages = shadow.slice();
    for (let i = 0; i < 5; i++) for (let j = 0; j < 2000; j++) pages[i * PS + j] ^= 1 + (j % 3);
    for (let j = 0; j < 12; j++) pages[5 * PS + 100 * j] ^= 1 + (j & 1);
    const on = encodePagesSync(shadow.slice(), pages, range(6));
    const off = encodePagesSync(shadow.slice(), pages, range(6), { entropy: false });
    expect(on.length).toBeLessThanOrEqual(off.length);
    for (const c of PAGE_KINDS) {
      const p = pagePairs(5, c, 130);
      const a = encodePagesSync(p.old.slice(), p.next, range(130)).length;
      const b = encodePagesSync(p.old.slice(), p.next, range(130), { entropy: false }).length;
      expect(a, c).toBeLessThanOrEqual(b);
    }
  });

  it('a delta container refuses the Huffman kinds', () => {
    const prev = new Uint8Array(64);
    const d = encodeDelta(prev, prev, { compress: false }); // SAME: borrow the container
    for (const kind of [KIND.XRLE_HUF, KIND.XRLE_HUF_TABLE]) {
      const bad = d.slice();
      bad[5] = kind;
      const v = xxh3.xxh64(Buffer.concat([bad.subarray(0, 16), bad.subarray(24)]));
      for (let i = 0; i < 8; i++) bad[16 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
      expectRejected(() => applyDelta(prev, bad), prev, /^`delta` has an unknown encoding kind$/);
    }
  });

  it('rejects hostile Huffman pages with a RangeError naming the page, and changes nothing', () => {
    const frame = encodePagesSync(shadowOf(), next, pfns);
    const replica = shadowOf();
    const kinds = kindsOf(frame);
    const first = kinds.indexOf(KIND.XRLE_HUF_TABLE);
    const second = kinds.indexOf(KIND.XRLE_HUF_TABLE, first + 1);
    const plain = kinds.indexOf(KIND.XRLE_HUF, first);
    const bodyAt = (i: number) => {
      let at = 32 + 8 * kinds.length;
      for (let k = 0; k < i; k++) at += frame[32 + 8 * k + 5] | (frame[32 + 8 * k + 6] << 8) | (frame[32 + 8 * k + 7] << 16);
      return at;
    };
    const page = (i: number) => `${i} \\(pfn ${pfns[i]}\\)`;
    // Native applyPages and the TypeScript reference decoder both refuse the frame.
    const expectBoth = (bad: Uint8Array, message: RegExp) => {
      expectRejected(() => applyPages(replica, bad), replica, message);
      expect(() => applyFrameRef(shadowOf(), bad)).toThrow(RangeError);
    };
    // The first table page made a plain Huffman page: it has no tables before it.
    const noTable = frame.slice();
    noTable[32 + 8 * first + 4] = KIND.XRLE_HUF;
    expectBoth(withSum(noTable),
      new RegExp(`^\`frame\` has a bad page ${page(first)}: Huffman page with no tables before it in the frame$`));
    // A code length of 12 in the token table.
    const long = frame.slice();
    long[bodyAt(first)] = 0xcc;
    expectBoth(withSum(long),
      new RegExp(`^\`frame\` has a bad page ${page(first)}: Huffman table has a code longer than 11 bits$`));
    // Every literal code 1 bit long: over-subscribed. Pages using the table are refused too.
    const over = frame.slice();
    over.fill(0x11, bodyAt(first) + 128, bodyAt(first) + 256);
    expectBoth(withSum(over),
      new RegExp(`^\`frame\` has a bad page ${page(first)}: Huffman table is empty or over-subscribed$`));
    // A token count one larger than the stream holds.
    const more = frame.slice();
    more[bodyAt(second) + 256] += 1;
    expectBoth(withSum(more),
      new RegExp(`^\`frame\` has a bad page ${page(second)}: Huffman stream (is truncated|has a code that is not in its table|has bits left over)$`));
    // A Huffman kind in a version 1 frame.
    const v1 = frame.slice();
    v1[4] = 1;
    expectBoth(withSum(v1), /^`frame` has an unknown page kind in its index$/);
    // A table page too short to hold its tables.
    const short = frame.slice(0, bodyAt(first) + 100);
    const e = 32 + 8 * first;
    short.set([100, 0, 0], e + 5);
    short.set([first + 1, 0, 0, 0], 8); // count: the pages up to the table page
    const payload = short.length - 32 - 8 * kinds.length;
    const cut = Uint8Array.from([...short.subarray(0, 32), ...short.subarray(32, 32 + 8 * (first + 1)), ...short.subarray(32 + 8 * kinds.length)]);
    cut.set([payload & 255, (payload >> 8) & 255, payload >> 16, 0, 0, 0, 0, 0], 16);
    expectBoth(withSum(cut),
      new RegExp(`^\`frame\` has a bad page ${page(first)}: XRLE\\+HUF tables are truncated$`));
    // The literal stream's padding bits set.
    const pad = frame.slice();
    const end = bodyAt(plain + 1) - 1;
    pad[end] |= 0x80;
    expectBoth(withSum(pad), new RegExp(`^\`frame\` has a bad page ${page(plain)}: `));
  });
});

describe('encodePages / applyPages', () => {
  const COUNT = 24;

  it.each(supportedIsas())('%s: every page kind matches the reference and round-trips', (name) => {
    setIsa(name);
    for (const kind of PAGE_KINDS) {
      const { old, next } = pagePairs(kind.length * 31, kind, COUNT);
      // Shadow holds the old pages at shuffled pfns, with spare pages around them.
      const pfns = range(COUNT, (i) => (i * 7 + 3) % (COUNT + 5));
      const shadow = new Uint8Array((COUNT + 5) * PS);
      for (let i = 0; i < COUNT; i++) shadow.set(old.subarray(i * PS, (i + 1) * PS), pfns[i] * PS);
      const replica = shadow.slice();
      const refShadow = shadow.slice();
      const frame = encodePagesSync(shadow.slice(), next, pfns, { compress: false });
      expect(hex(frame) === hex(encodePagesRef(refShadow, next, pfns))).toBe(true);
      for (const compress of [false, true]) {
        const s = replica.slice();
        const r = replica.slice();
        const f = encodePagesSync(s, next, pfns, { compress, threads: 2 });
        expect(hex(s) === hex(refShadow)).toBe(true);
        applyPages(r, f, { threads: 2 });
        expect(hex(r) === hex(refShadow)).toBe(true);
        expect(Array.from(inspectFrame(f).pfns)).toEqual(Array.from(pfns));
      }
    }
  });

  it('costs 8 bytes per zero or unchanged page, and stays under a third of the input on realistic pages', () => {
    const shadow = new Uint8Array(64 * PS).fill(5);
    const pages = new Uint8Array(64 * PS);
    pages.set(shadow.subarray(0, 32 * PS));
    expect(encodePagesSync(shadow, pages, range(64)).length).toBe(32 + 64 * 8);
    const { old, next } = pagePairs(9, 'realistic', 64);
    const f = encodePagesSync(old, next, range(64));
    expect(f.length).toBeLessThan((64 * PS) / 3);
  });

  it('async encode and apply give the same bytes as sync', async () => {
    const { old, next } = pagePairs(4, 'realistic', 40);
    const pfns = range(40);
    const f1 = encodePagesSync(old.slice(), next, pfns);
    const f2 = await encodePages(old.slice(), next, pfns, { threads: 2 });
    expect(hex(f2) === hex(f1)).toBe(true);
    const r = old.slice();
    await applyPagesAsync(r, f2);
    expect(hex(r) === hex(next)).toBe(true);
  });

  it('keeps the event loop responsive during a large encodePages', async () => {
    const { old, next } = pagePairs(2, 'half', 2048);
    const order: string[] = [];
    const p = encodePages(old, next, range(2048), { threads: 1 }).then(() => order.push('encoded'));
    setImmediate(() => order.push('immediate'));
    await p;
    expect(order).toEqual(['immediate', 'encoded']);
  });

  it('validates arguments with errors naming them', async () => {
    const shadow = new Uint8Array(4 * PS);
    const pages = new Uint8Array(2 * PS);
    expect(() => encodePagesSync(shadow, pages, Uint32Array.of(1, 1))).toThrow(
      new RangeError('`pfns` pfn 1 appears more than once (index 0 and 1)'),
    );
    expect(() => encodePages(shadow, pages, Uint32Array.of(0, 4))).toThrow(
      new RangeError('`pfns` pfn 4 at index 1 is past the end (4 pages)'),
    );
    expect(() => encodePagesSync(shadow, pages, Uint32Array.of(0))).toThrow(
      new RangeError('`pages` must hold `pfns.length` (1) pages of 4096 bytes, got 8192 bytes'),
    );
    expect(() => encodePagesSync(shadow, pages, Uint32Array.of(0, 1), { pageSize: 3000 })).toThrow(
      new RangeError('`pageSize` must be a power of two from 512 to 1048576, got 3000'),
    );
    expect(() => encodePagesSync(shadow, pages, [0, 1] as never)).toThrow(new TypeError('`pfns` must be a Uint32Array, got Array'));
    expect(() => encodePagesSync(shadow, pages, Uint32Array.of(0, 1), { threads: 0 })).toThrow(
      new RangeError('`threads` must be an integer from 1 to 256, got 0'),
    );
    expect(() => applyPages(new Uint8Array(100), new Uint8Array(40))).toThrow(
      new RangeError('`replica` length must be a multiple of `pageSize` (4096), got 100'),
    );
    expect(hex(shadow) === hex(new Uint8Array(4 * PS))).toBe(true);
  });

  it('supports other page sizes', () => {
    for (const pageSize of [512, 65536]) {
      const { old, next } = pagePairs(8, 'realistic', 4, pageSize);
      const r = old.slice();
      const f = encodePagesSync(old, next, range(4), { pageSize });
      expect(() => applyPages(r, f, { pageSize: pageSize * 2 })).toThrow(new RangeError('`frame` was made for a different page size'));
      applyPages(r, f, { pageSize });
      expect(hex(r) === hex(next)).toBe(true);
    }
  });
});

describe('hostile frames', () => {
  const { old, next } = pagePairs(21, 'realistic', 3);
  const small = (() => {
    // 3 realistic pages plus a zero and an unchanged page, first stage only: every kind but lz4.
    const shadow = new Uint8Array(6 * PS);
    shadow.set(old, 0);
    shadow.fill(3, 3 * PS, 5 * PS);
    const pages = new Uint8Array(5 * PS);
    pages.set(next, 0);
    pages.fill(3, 4 * PS, 5 * PS);
    const replica = shadow.slice();
    return { frame: encodePagesSync(shadow, pages, Uint32Array.of(0, 1, 2, 3, 4)), replica };
  })();

  it('truncation at every byte offset is rejected and changes nothing', () => {
    const { frame, replica } = small;
    for (let cut = 0; cut < frame.length; cut++) {
      expectRejected(() => applyPages(replica, frame.subarray(0, cut)), replica, /^`frame` /);
    }
    expectRejected(() => applyPages(replica, frame.subarray(0, 31)), replica, /^`frame` is shorter than the 32-byte header$/);
  });

  it('every single bit flip is rejected and changes nothing', () => {
    const { frame, replica } = small;
    for (let bit = 0; bit < frame.length * 8; bit += 7) {
      const bad = frame.slice();
      bad[bit >> 3] ^= 1 << (bit & 7);
      expectRejected(() => applyPages(replica, bad), replica, /^`frame` /);
    }
  });

  it('names what is wrong', async () => {
    const { frame, replica } = small;
    const withSum = (f: Uint8Array) => {
      const v = xxh3.xxh64(f.subarray(32));
      for (let i = 0; i < 8; i++) f[24 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
      return f;
    };
    const v3 = frame.slice();
    v3[4] = 3;
    expectRejected(() => applyPages(replica, v3), replica, /^`frame` has an unsupported version$/);
    const magic = frame.slice();
    magic[0] = 0x58;
    expectRejected(() => applyPages(replica, magic), replica, /^`frame` has a bad magic \(not a page frame\)$/);
    const pastEnd = frame.slice();
    pastEnd.set([6, 0, 0, 0], 32 + 8); // pfn of entry 1 = 6, replica has 6 pages
    expectRejected(() => applyPages(replica, withSum(pastEnd)), replica, /^`frame` pfn 6 at index 1 is past the end \(6 pages\)$/);
    const dup = frame.slice();
    dup.set([0, 0, 0, 0], 32 + 8);
    expectRejected(() => applyPages(replica, withSum(dup)), replica, /^`frame` pfn 0 appears more than once \(index 0 and 1\)$/);
    const huge = frame.slice();
    huge.set([0xff, 0xff, 0xff, 0x0f], 8); // count
    expectRejected(() => applyPages(replica, huge), replica, /^`frame` is truncated \(index\)$/);
    const sum = frame.slice();
    sum[frame.length - 1] ^= 0x40;
    expectRejected(() => applyPages(replica, sum), replica, /^`frame` fails its checksum$/);
    // A body that overruns the page, under a valid checksum.
    const body = frame.slice();
    const off = 32 + 5 * 8;
    body.set([0x0f, 0xff, 0xff, 0xff, 0xff, 0x7f], off); // skip 15 + a varint above 2^32
    expectRejected(
      () => applyPages(replica, withSum(body)),
      replica,
      /^`frame` has a bad page 0 \(pfn 0\): truncated or oversized skip varint$/,
    );
    await expect(applyPagesAsync(replica, withSum(body))).rejects.toThrow(RangeError);
    await expect(applyPagesAsync(replica, v3)).rejects.toThrow(new RangeError('`frame` has an unsupported version'));
    expect(() => inspectFrame(sum)).toThrow(new RangeError('`frame` fails its checksum'));
  });

  it('random bytes and random frame-shaped junk are rejected', () => {
    const { frame, replica } = small;
    const rng = new Rng(99);
    for (let k = 0; k < 200; k++) {
      const junk = new Uint8Array(rng.int(400));
      rng.fill(junk);
      if (k & 1 && junk.length >= 8) junk.set(frame.subarray(0, 8));
      expectRejected(() => applyPages(replica, junk), replica, /^`frame` /);
    }
  });
});

describe('page generators', () => {
  it('realistic pages have a median of about 700 changed bytes in many short runs', () => {
    const { old, next } = pagePairs(77, 'realistic', 1001);
    const changed: number[] = [];
    let runs = 0;
    for (let p = 0; p < 1001; p++) {
      let c = 0;
      for (let i = p * PS; i < (p + 1) * PS; i++) {
        if (old[i] !== next[i]) {
          c++;
          if (i === p * PS || old[i - 1] === next[i - 1]) runs++;
        }
      }
      changed.push(c);
    }
    changed.sort((a, b) => a - b);
    expect(changed[500]).toBeGreaterThanOrEqual(660);
    expect(changed[500]).toBeLessThanOrEqual(740);
    expect(runs / 1001).toBeGreaterThan(80);
  });
});

describe('reference decoder agrees with native bodies', () => {
  it('decodes what encodeBody makes', () => {
    const { old, next } = pagePairs(13, 'realistic', 4);
    for (let p = 0; p < 4; p++) {
      const prev = old.subarray(p * PS, (p + 1) * PS);
      const nx = next.subarray(p * PS, (p + 1) * PS);
      const { kind, body } = encodeBody(prev, nx);
      const t = prev.slice();
      applyBodyRef(t, kind, body);
      expect(hex(t) === hex(nx)).toBe(true);
    }
  });
});
