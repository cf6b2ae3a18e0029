import { afterAll, describe, expect, it } from 'vitest';
import {
  applyDelta,
  applyPages,
  applyPagesAsync,
  applyPagesWithUndo,
  encodeDelta,
  encodePages,
  encodePagesSync,
  gatherPages,
  allocateMemory,
  inspectFrame,
  isa,
  OWN_CODES_MIN_BYTES,
  scatterPages,
  setIsa,
  supportedIsas,
} from '../lib/index.js';
import {
  applyBodyRef, applyFrameRef, encodeBody, encodeDeltaRef, encodePagesRef, huffmanDecodeRef, KIND, lz4BlockMasksRef, xbmBody, xbmLz4Ref,
} from './reference/delta.js';
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

/** A frame with a valid checksum and payload length from (pfn, kind, body) pages, of `version`. */
function buildFrame(pages: [number, number, ArrayLike<number>][], version: number, pageSize = PS): Uint8Array {
  const index: number[] = [];
  const bodies: number[] = [];
  for (const [pfn, kind, body] of pages) {
    index.push(pfn & 255, (pfn >> 8) & 255, (pfn >> 16) & 255, pfn >>> 24, kind, body.length & 255, (body.length >> 8) & 255, body.length >> 16);
    bodies.push(...Array.from(body));
  }
  const after = Uint8Array.from([...index, ...bodies]);
  const p = bodies.length;
  const head = [0x55, 0x44, 0x50, 0x46, version, 0, Math.log2(pageSize), 0, pages.length & 255, (pages.length >> 8) & 255, 0, 0, 0, 0, 0, 0];
  head.push(p & 255, (p >> 8) & 255, (p >> 16) & 255, p >>> 24, 0, 0, 0, 0);
  return Uint8Array.from([...head, ...checksum(new Uint8Array(0), Array.from(after)), ...after]);
}

/** The kinds in a frame's index, in order. */
const kindsOf = (f: Uint8Array) => Array.from({ length: inspectFrame(f).count }, (_, i) => f[32 + 8 * i + 4]);
/** Per page of a frame: whether it is XBM+HUF with its own code (kind 12). */
const ownOf = (f: Uint8Array) => kindsOf(f).map((k) => k === KIND.XBM_HUF_OWN);
/** Kinds that carry Huffman tables, and kinds that use the nearest such page's tables. */
const TABLE_KINDS: number[] = [KIND.XRLE_HUF_TABLE, KIND.XBM_HUF_TABLE];
const HUF_KINDS: number[] = [KIND.XRLE_HUF, KIND.XRLE_HUF_TABLE, KIND.XBM_HUF, KIND.XBM_HUF_TABLE];

describe('the Huffman stage (page kinds XRLE+HUF)', () => {
  // 'counters' pages change by small XOR values, so the stage pays on them; 'realistic' pages'
  // literal bytes are close to uniform, so it does not (it must save 1/16 of a group).
  const COUNT = 160; // 2.5 groups of 64 pages: three sets of tables
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
    // Applied with this ISA's decoder and XBM walk (per-ISA since session 5), on 1 and 2 threads.
    for (const threads of [1, 2]) {
      const mine = shadowOf();
      applyPages(mine, f1, { threads });
      expect(hex(mine) === hex(expected)).toBe(true);
    }
    setIsa('scalar');
    expect(hex(encodePagesSync(shadowOf(), next, pfns, { threads: 2 })) === hex(f1)).toBe(true);
    // Counter pages are mostly XBM (kind 8), so their Huffman forms are kinds 9 and 10: version 5
    // (XBM bodies with a repeat distance).
    expect(inspectFrame(f1).version).toBe(5);
    const kinds = kindsOf(f1);
    // One table page (kind 7 or 10) per group of 64 pages; the rest of the group refers to it.
    expect(kinds.filter((k) => TABLE_KINDS.includes(k)).length).toBe(3);
    expect(kinds.filter((k) => k === KIND.XRLE_HUF || k === KIND.XBM_HUF).length).toBeGreaterThan(COUNT / 2);
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
    expect(kindsOf(lz4).some((k) => HUF_KINDS.includes(k))).toBe(false);
    expect(kindsOf(lz4)).toContain(KIND.XBM); // XBM is first stage: whatever the options
    expect(inspectFrame(lz4).version).toBe(5);
    expect(huf.length).toBeLessThan(lz4.length * 0.8);
    // Where the stage does not pay, the frame is byte for byte the lz4-only codec's (a few
    // realistic pages are XBM, so it is version 5).
    const real = pagePairs(9, 'realistic', 150);
    const f = encodePagesSync(real.old.slice(), real.next, range(150));
    expect(kindsOf(f).some((k) => HUF_KINDS.includes(k))).toBe(false);
    expect(inspectFrame(f).version).toBe(5);
    expect(hex(f) === hex(encodePagesSync(real.old.slice(), real.next, range(150), { entropy: false }))).toBe(true);
    expect(() => encodePagesSync(shadowOf(), next, pfns, { entropy: 1 as unknown as boolean })).toThrow(
      /^`entropy` must be a boolean, got number$/,
    );
    expect(() => encodePagesSync(shadowOf(), next, pfns, { ownCodes: 'no' as unknown as boolean })).toThrow(
      /^`ownCodes` must be a boolean or a number, got string$/,
    );
    for (const bad of [0, -1, 1.5, 2 ** 32, NaN]) {
      expect(() => encodePagesSync(shadowOf(), next, pfns, { ownCodes: bad })).toThrow(
        new RegExp(`^\`ownCodes\` must be true, false or an integer from 1 to 4294967295, got ${bad}$`),
      );
    }
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

  it('a coded group still gives a page after its sample the lz4 body of rule 5 where that beats its Huffman body', () => {
    // A group of 64 pages that were zero. The 8 sample pages change 4 random words a line by 1 or
    // 2 at a random byte: a group code pays for them. The 56 pages after the sample change byte w
    // of words w = 0..3 of every line, by 1 or 2 on even lines and by 80..8f (values the sample
    // never had, so the group code gives them its longest codes) on odd ones: XBM bodies of 585
    // bytes (between n/16 and n/4), whose masks repeat line after line. Their Huffman bodies beat
    // their XBM bodies but not their XBM+LZ4 bodies (kind 11, 280 bytes), which rule 5 gives them
    // from n/16; the group must not withhold that body, or the frame would come out larger than
    // with entropy: false (it did in session 11 before the group's lz4 rule followed rule 5).
    const COUNT = 64;
    let seed = 7;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const next = new Uint8Array(COUNT * PS);
    for (let i = 0; i < COUNT; i++) {
      for (let line = 0; line < 64; line++) {
        if (i < 8) {
          const words: number[] = [];
          while (words.length < 4) {
            const w = rnd(8);
            if (!words.includes(w)) words.push(w);
          }
          for (const w of words) next[i * PS + line * 64 + w * 8 + rnd(8)] = 1 + rnd(2);
        } else {
          for (let w = 0; w < 4; w++) {
            next[i * PS + line * 64 + w * 8 + w] = line % 2 === 0 ? 1 + ((line >> 1) % 2) : 0x80 + ((line + w) % 16);
          }
        }
      }
    }
    expect(encodeBody(new Uint8Array(PS), next.subarray(8 * PS, 9 * PS), { xbm: true }).body.length).toBe(585);
    const on = encodePagesSync(new Uint8Array(COUNT * PS), next, range(COUNT));
    const off = encodePagesSync(new Uint8Array(COUNT * PS), next, range(COUNT), { entropy: false });
    const kinds = kindsOf(on);
    expect(kinds.slice(0, 8).every((k) => k === KIND.XBM_HUF || k === KIND.XBM_HUF_TABLE)).toBe(true); // the group is coded
    expect(kinds.slice(8)).toEqual(new Array<number>(56).fill(KIND.XBM_LZ4));
    expect(kindsOf(off).slice(8)).toEqual(new Array<number>(56).fill(KIND.XBM_LZ4));
    expect(on.length).toBeLessThan(off.length);
    const r = new Uint8Array(COUNT * PS);
    applyPages(r, on);
    expect(hex(r) === hex(next)).toBe(true);
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
    const first = kinds.findIndex((k) => TABLE_KINDS.includes(k));
    const second = kinds.findIndex((k, i) => i > first && TABLE_KINDS.includes(k));
    const plain = kinds.findIndex((k, i) => i > first && (k === KIND.XRLE_HUF || k === KIND.XBM_HUF));
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
    noTable[32 + 8 * first + 4] = kinds[first] - 1; // kind 7 -> 6, 10 -> 9
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
    // A token count one larger than the stream holds. If the padding decodes as one more symbol,
    // an XBM page's mask string then ends before its T bytes (native checks that first).
    const more = frame.slice();
    more[bodyAt(second) + 256] += 1;
    const xbmReasons = kinds[second] === KIND.XBM_HUF_TABLE ? '|XBM mask string does not end where its length says' : '';
    expectBoth(withSum(more),
      new RegExp(`^\`frame\` has a bad page ${page(second)}: (Huffman stream (is truncated|has a code that is not in its table|has bits left over)${xbmReasons})$`));
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
      new RegExp(`^\`frame\` has a bad page ${page(first)}: Huffman tables are truncated$`));
    // The literal stream's padding bits set.
    const pad = frame.slice();
    const end = bodyAt(plain + 1) - 1;
    pad[end] |= 0x80;
    expectBoth(withSum(pad), new RegExp(`^\`frame\` has a bad page ${page(plain)}: `));
  });
});

describe('XBM pages (kinds 8 to 11)', () => {
  const N = 512; // hand-built pages: a line mask of 1 byte
  const EXAMPLE_XBM = '05012c010410104005';
  const exampleInputs = () => {
    const prev = Uint8Array.from({ length: N }, (_, i) => (i * 7) & 255);
    const next = prev.slice();
    next[2] ^= 0x10;
    next[3] ^= 0x10;
    next[5] ^= 0x40;
    next[130] ^= 0x05;
    return { prev, next };
  };
  const varint = (v: number) => {
    const out: number[] = [];
    for (; v >= 0x80; v >>>= 7) out.push((v & 0x7f) | 0x80);
    return [...out, v];
  };
  // Tables giving every byte value an 8-bit code (all lengths 8: bytes 0x88), so the canonical
  // code of symbol s is s; read least significant bit first, a code is stored bit-reversed.
  const FLAT = new Uint8Array(256).fill(0x88);
  const rev8 = (b: number) => {
    let r = 0;
    for (let i = 0; i < 8; i++) r |= ((b >> i) & 1) << (7 - i);
    return r;
  };
  /** A kind-6/9 body with the flat tables: `toks` (token or mask bytes) and `lits`. */
  const hufBody = (toks: number[], lits: number[]) => [
    ...varint(toks.length), ...varint(lits.length), ...varint(toks.length), ...toks.map(rev8), ...lits.map(rev8),
  ];
  const withTables = (body: number[]) => [...FLAT, ...body];
  /** A kind-4/11 body: varint m, then an lz4 block of one literal-only sequence holding `bytes`. */
  const lz4Body = (bytes: number[], m = bytes.length) => {
    const len = bytes.length;
    const ext: number[] = [];
    if (len >= 15) {
      let rest = len - 15;
      for (; rest >= 255; rest -= 255) ext.push(255);
      ext.push(rest);
    }
    return [...varint(m), Math.min(len, 15) << 4, ...ext, ...bytes];
  };
  // The example split: XBM masks and literals, XRLE tokens (with varints) and literals.
  const MASKS = [0x05, 0x01, 0x2c, 0x01, 0x04];
  const LITS = [0x10, 0x10, 0x40, 0x05];
  const XRLE_TOKS = [0x42, 0x1f, 0x6d];
  const XRLE_LITS = [0x10, 0x10, 0x00, 0x40, 0x05];
  /** A replica of 8 pages of N bytes, each the example's `prev`. */
  const replicaOf = () => {
    const r = new Uint8Array(8 * N);
    for (let p = 0; p < 8; p++) r.set(exampleInputs().prev, p * N);
    return r;
  };
  const pageOf = (r: Uint8Array, pfn: number) => r.subarray(pfn * N, (pfn + 1) * N);

  it('decodes the worked example of docs/FORMAT.md; the canonical encoder picks XRLE for it', () => {
    const { prev, next } = exampleInputs();
    const x = prev.map((v, i) => v ^ next[i]);
    expect(hex(xbmBody(x))).toBe(EXAMPLE_XBM);
    const t = prev.slice();
    applyBodyRef(t, KIND.XBM, Buffer.from(EXAMPLE_XBM, 'hex'));
    expect(hex(t)).toBe(hex(next));
    // S = 9, F = 5, R = 2: 4S = 36 is not below 4F + 7R = 34.
    for (const xbm of [true, false]) {
      const { kind, body } = encodeBody(prev, next, { xbm });
      expect(kind).toBe(KIND.XRLE);
      expect(hex(body)).toBe('42101000401f6d05');
    }
    // Two changed bytes in each of 20 words, two zero bytes apart: two XRLE literals per word.
    const sparse = prev.slice();
    for (let w = 0; w < 20; w++) {
      sparse[16 * w] ^= 1;
      sparse[16 * w + 3] ^= 2;
    }
    const enc = encodeBody(prev, sparse, { xbm: true });
    // Every changed word equals the one two words before it, so with the repeat distance 2 only
    // word 0 keeps its literals: S = 1 + 1 + 5 + 20 + 2 = 29; F = 40, R = 40: 116 < 440.
    expect(enc.kind).toBe(KIND.XBM);
    expect(hex(enc.body)).toBe('02' + '1f' + '5509000000' + '5500000000'.repeat(4) + '0102');
    // Without repeats (frames of version 3 and 4): S = 1 + 5 + 20 + 40 = 66.
    expect(xbmBody(prev.map((v, i) => v ^ sparse[i])).length).toBe(66);
    expect(encodeBody(prev, sparse).kind).toBe(KIND.XRLE); // encodeDelta never uses XBM
    const t2 = prev.slice();
    applyBodyRef(t2, enc.kind, enc.body, false, true);
    expect(hex(t2)).toBe(hex(sparse));
  });

  it('applies the example in a version 3 frame natively; inspectFrame reports version 3', () => {
    const frame = buildFrame([[1, KIND.XBM, Buffer.from(EXAMPLE_XBM, 'hex')]], 3, N);
    const expected = replicaOf();
    pageOf(expected, 1).set(exampleInputs().next);
    for (const name of supportedIsas()) {
      setIsa(name);
      const r = replicaOf();
      applyPages(r, frame, { pageSize: N });
      expect(hex(r) === hex(expected)).toBe(true);
    }
    const ref = replicaOf();
    applyFrameRef(ref, frame, N);
    expect(hex(ref) === hex(expected)).toBe(true);
    expect(inspectFrame(frame)).toEqual({ version: 3, pageSize: N, count: 1, pfns: Uint32Array.of(1), bytes: 32 + 8 + 9, payloadBytes: 9 });
  });

  // docs/FORMAT.md, "XBM (kind 8)", version 5: 20 words of 16 bytes' stride, each XORed with 01 at
  // byte 0 and 02 at byte 3; every word after the first repeats the word 2 before it.
  const REPEAT_BODY = '02' + '1f' + '5509000000' + '5500000000'.repeat(4) + '0102';
  const sparseOf = (prev: Uint8Array) => {
    const sparse = prev.slice();
    for (let w = 0; w < 20; w++) {
      sparse[16 * w] ^= 1;
      sparse[16 * w + 3] ^= 2;
    }
    return sparse;
  };

  it('version 5: XBM bodies start with a repeat distance; the example applies natively on every ISA and by the reference', () => {
    const body = Buffer.from(REPEAT_BODY, 'hex');
    const frame = buildFrame([[1, KIND.XBM, body], [2, KIND.XBM_LZ4, lz4Body(Array.from(body))]], 5, N);
    expect(inspectFrame(frame).version).toBe(5);
    const expected = replicaOf();
    pageOf(expected, 1).set(sparseOf(exampleInputs().prev));
    pageOf(expected, 2).set(sparseOf(exampleInputs().prev));
    for (const name of supportedIsas()) {
      setIsa(name);
      for (const threads of [1, 2]) {
        const r = replicaOf();
        applyPages(r, frame, { pageSize: N, threads });
        expect(hex(r) === hex(expected)).toBe(true);
      }
    }
    const ref = replicaOf();
    applyFrameRef(ref, frame, N);
    expect(hex(ref) === hex(expected)).toBe(true);
    // The encoder writes it so (compress: false), and the reference encoder agrees.
    const prev = exampleInputs().prev;
    const f = encodePagesSync(prev.slice(), sparseOf(prev), Uint32Array.of(0), { pageSize: N, compress: false });
    expect(hex(f.subarray(f.length - body.length))).toBe(REPEAT_BODY);
    expect(hex(f) === hex(encodePagesRef(prev.slice(), sparseOf(prev), Uint32Array.of(0), N))).toBe(true);
    // A repeat of a repeat: the masks 55 09 00 00 00 say word 4 repeats word 2, itself a repeat.
    // The same body in a version 4 frame reads its distance byte as the line mask: refused.
    expectRejected(() => applyPages(replicaOf(), buildFrame([[1, KIND.XBM, body]], 4, N), { pageSize: N }), replicaOf(), /^`frame` has a bad page 0 \(pfn 1\): XBM /);
  });

  it.each(supportedIsas())('%s: the encoder picks the repeat distance with the most repeated words, the smallest on a tie, as the reference does', (name) => {
    setIsa(name);
    const old = new Uint8Array(6 * PS);
    new Rng(55).fill(old);
    const next = old.slice();
    const xorWord = (page: number, w: number, v: number) => {
      for (let k = 0; k < 8; k++) next[page * PS + 8 * w + k] ^= (v >> (k % 4)) & 0xff || 1;
    };
    // Pages 0-3: one value in 40 words d apart (d = 1, 2, 4, 8), so d itself has the most repeats.
    [1, 2, 4, 8].forEach((d, page) => {
      for (let k = 0; k < 40; k++) xorWord(page, 100 + k * d, 0x5a);
    });
    // Page 4: one repeat 2 apart and one 4 apart: a tie, so 2 (and 30 words that repeat nothing,
    // so XBM pays). Page 5: no word repeats.
    xorWord(4, 10, 0x11);
    xorWord(4, 12, 0x11);
    xorWord(4, 300, 0x22);
    xorWord(4, 304, 0x22);
    for (let w = 0; w < 30; w++) xorWord(4, 400 + 3 * w, w + 1);
    for (let w = 0; w < 60; w++) xorWord(5, 3 * w, w + 1);
    const f = encodePagesSync(old.slice(), next, range(6), { compress: false });
    expect(hex(f) === hex(encodePagesRef(old.slice(), next, range(6)))).toBe(true);
    expect(kindsOf(f)).toEqual(new Array<number>(6).fill(KIND.XBM));
    let at = 32 + 8 * 6;
    const distances: number[] = [];
    for (let i = 0; i < 6; i++) {
      distances.push(f[at]);
      at += f[32 + 8 * i + 5] | (f[32 + 8 * i + 6] << 8);
    }
    expect(distances).toEqual([1, 2, 4, 8, 2, 0]);
    const r = old.slice();
    applyPages(r, f);
    expect(hex(r) === hex(next)).toBe(true);
  });

  it('version 5: hostile repeat distances and repeats are refused by name and change nothing', () => {
    const replica = replicaOf();
    const refused = (b: number[], reason: string) => {
      const frame = buildFrame([[3, KIND.XBM, [0, ...MASKS, ...LITS]], [5, KIND.XBM, b]], 5, N);
      expectRejected(() => applyPages(replica, frame, { pageSize: N }), replica, new RegExp(`^\`frame\` has a bad page 1 \\(pfn 5\\): ${reason}$`));
      expect(() => applyFrameRef(replicaOf(), frame, N)).toThrow(RangeError);
    };
    // The example's masks (line 0: word 0, bytes 2 3 5; line 2: word 0, byte 2) with distance 0.
    refused([0x00, 0x05, 0x01, 0x00, 0x01, 0x04, 0x05], 'XBM byte mask is zero');
    refused([0x41, 0x05, 0x01, 0x2c, 0x01, 0x04, ...LITS], 'XBM repeat distance out of range \\(0 to 64\\)');
    refused([0xff, 0x05, 0x01, 0x2c, 0x01, 0x04, ...LITS], 'XBM repeat distance out of range \\(0 to 64\\)');
    // Word 0 of the page repeats nothing (no word before it).
    refused([0x01, 0x05, 0x01, 0x00, 0x01, 0x04, 0x05], 'XBM repeat refers to a word that is not set');
    // Word 16 (line 2, word 0) with distance 1: word 15 is not set; 17 reaches before word 0.
    refused([0x01, 0x05, 0x01, 0x2c, 0x01, 0x00, 0x10, 0x10, 0x40], 'XBM repeat refers to a word that is not set');
    refused([0x11, 0x05, 0x01, 0x2c, 0x01, 0x00, 0x10, 0x10, 0x40], 'XBM repeat refers to a word that is not set');
    refused([0x10, 0x05, 0x01, 0x2c, 0x01, 0x00, 0x10, 0x10, 0x40, 0x05], 'XBM literal bytes left over');
    refused([0x02, 0x1f], 'XBM masks run past the body');
    refused([0x02], 'XBM line mask is truncated');
    // Distance 16: word 16 repeats word 0 (10 10 40 at bytes 2, 3, 5 of word 16); and 64, the
    // largest, reaching from word 64 back to word 0 on a page of 1024 bytes.
    const r = replicaOf();
    applyPages(r, buildFrame([[5, KIND.XBM, [0x10, 0x05, 0x01, 0x2c, 0x01, 0x00, 0x10, 0x10, 0x40]]], 5, N), { pageSize: N });
    const want = replicaOf();
    for (const at of [2, 3, 5]) {
      pageOf(want, 5)[at] ^= [0x10, 0x10, 0x40][[2, 3, 5].indexOf(at)];
      pageOf(want, 5)[128 + at] ^= [0x10, 0x10, 0x40][[2, 3, 5].indexOf(at)];
    }
    expect(hex(r) === hex(want)).toBe(true);
    const big = new Uint8Array(2 * 1024);
    const f64 = buildFrame([[1, KIND.XBM, [0x40, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x07]]], 5, 1024);
    applyPages(big, f64, { pageSize: 1024 });
    const want64 = new Uint8Array(2 * 1024);
    want64[1024] = 7;
    want64[1024 + 512] = 7;
    expect(hex(big) === hex(want64)).toBe(true);
  });

  it('kinds 6 and 9 use the tables of the nearest kind 7 or 10 page before them', () => {
    // pfn 0: XRLE+HUF with tables; 1: XBM+HUF on those; 2: XBM+HUF with tables; 3: XRLE+HUF on
    // those; 4: XBM. Every page goes from the example's prev to its next.
    const frame = buildFrame(
      [
        [0, KIND.XRLE_HUF_TABLE, withTables(hufBody(XRLE_TOKS, XRLE_LITS))],
        [1, KIND.XBM_HUF, hufBody(MASKS, LITS)],
        [2, KIND.XBM_HUF_TABLE, withTables(hufBody(MASKS, LITS))],
        [3, KIND.XRLE_HUF, hufBody(XRLE_TOKS, XRLE_LITS)],
        [4, KIND.XBM, [...MASKS, ...LITS]],
      ],
      3,
      N,
    );
    const expected = replicaOf();
    for (let p = 0; p < 5; p++) pageOf(expected, p).set(exampleInputs().next);
    const r = replicaOf();
    applyPages(r, frame, { pageSize: N, threads: 2 });
    expect(hex(r) === hex(expected)).toBe(true);
    const ref = replicaOf();
    applyFrameRef(ref, frame, N);
    expect(hex(ref) === hex(expected)).toBe(true);
    expect(inspectFrame(frame).version).toBe(3);
  });

  it('kind 11 (XBM+LZ4) applies as kind 8, natively and by the reference (its own lz4 block decoder)', () => {
    const { prev } = exampleInputs();
    const sparse = prev.slice();
    for (let w = 0; w < 20; w++) {
      sparse[16 * w] ^= 1;
      sparse[16 * w + 3] ^= 2;
    }
    const sparseXbm = Array.from(xbmBody(prev.map((v, i) => v ^ sparse[i]))); // 66 bytes: a literal length of 15 + 51
    const frame = buildFrame([[1, KIND.XBM_LZ4, lz4Body([...MASKS, ...LITS])], [2, KIND.XBM_LZ4, lz4Body(sparseXbm)]], 3, N);
    const r = replicaOf();
    applyPages(r, frame, { pageSize: N });
    expect(hex(pageOf(r, 1))).toBe(hex(exampleInputs().next));
    expect(hex(pageOf(r, 2))).toBe(hex(sparse));
    const viaRef = replicaOf();
    applyFrameRef(viaRef, frame, N);
    expect(hex(viaRef) === hex(r)).toBe(true);
    // Hostile: lz4 lengths, and an XBM body inside a good lz4 block.
    const replica = replicaOf();
    const refused = (body: number[], reason: string) =>
      expectRejected(() => applyPages(replica, buildFrame([[3, KIND.XBM, [...MASKS, ...LITS]], [5, KIND.XBM_LZ4, body]], 3, N), { pageSize: N }), replica,
        new RegExp(`^\`frame\` has a bad page 1 \\(pfn 5\\): ${reason}$`));
    refused([], 'XBM\\+LZ4 body length out of range');
    refused(lz4Body([...MASKS, ...LITS], 10), 'corrupt lz4 block');
    refused(lz4Body([...MASKS, ...LITS], 0), 'lz4 length out of range');
    refused(lz4Body([0x01, 0x00, 0xaa]), 'XBM word mask is zero');
    refused(lz4Body([0x01, 0x01, 0x01, 0xaa, 0xbb]), 'XBM literal bytes left over');
    // A block that decompresses to an XBM body as long as the page: refused as kind 8 would be,
    // though its bytes parse as masks (73) and literals (439 set bits: 53 x 8 + 4 x 2 + 7 x 1).
    const bms = [...new Array<number>(53).fill(0xff), 0x03, 0x03, 0x03, 0x03, ...new Array<number>(7).fill(0x01)];
    const masks = [0xff];
    for (let line = 0; line < 8; line++) masks.push(0xff, ...bms.slice(line * 8, line * 8 + 8));
    // lz4: 74 literals (the masks and one 0x01), a match at offset 1 of 433 bytes, 5 literals.
    const block = [0xff, 74 - 15, ...masks, 0x01, 0x01, 0x00, 255, 433 - 4 - 15 - 255, 0x50, 1, 1, 1, 1, 1];
    refused([...varint(N), ...block], 'XBM\\+LZ4 decompresses to a body as long as the page');
  });

  // docs/FORMAT.md, "XBM+HUF with its own code (kind 12)": the example's masks as they are and
  // its literals 10 10 40 05 coded 0x10 = 0, 0x05 = 10, 0x40 = 11; streams [10 10] and [40 05].
  const OWN_BITMAP = [0x20, 0x00, 0x01, 0, 0, 0, 0, 0, 0x01, ...new Array<number>(23).fill(0)];
  const EXAMPLE_OWN = [0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x12, 0x02, ...MASKS, 0x00, 0x07];

  it('kind 12 (XBM+HUF, own code): the worked example applies natively and by the reference, in a version 4 frame', () => {
    expect(hex(Uint8Array.from(EXAMPLE_OWN))).toBe(
      '05040501' + '200001' + '00'.repeat(5) + '01' + '00'.repeat(23) + '1202' + '05012c0104' + '00' + '07');
    const frame = buildFrame([[1, KIND.XBM_HUF_OWN, EXAMPLE_OWN]], 4, N);
    expect(inspectFrame(frame).version).toBe(4);
    for (const threads of [1, 2]) {
      const r = replicaOf();
      applyPages(r, frame, { pageSize: N, threads });
      expect(hex(pageOf(r, 1))).toBe(hex(exampleInputs().next));
    }
    const viaRef = replicaOf();
    applyFrameRef(viaRef, frame, N);
    expect(hex(pageOf(viaRef, 1))).toBe(hex(exampleInputs().next));
    // Kind 12 is unknown to version 3.
    const replica = replicaOf();
    expectRejected(() => applyPages(replica, buildFrame([[1, KIND.XBM_HUF_OWN, EXAMPLE_OWN]], 3, N), { pageSize: N }), replica,
      /^`frame` has an unknown page kind in its index$/);
  });

  it('kind 12: masks as an lz4 block; hostile bodies are refused by name and change nothing', () => {
    const n = 4096;
    const prev = new Uint8Array(2 * n);
    new Rng(12).fill(prev);
    const next = prev.slice();
    // Page 1: byte 3 of every word XORed with 1, 2, 4 in turn and byte 5 with 1: masks repeat
    // (lz4 pays), the 1024 literals take three values (a code pays), and no word equals the word
    // 1, 2, 4 or 8 before it (a period of 3), so the repeat distance is 0.
    for (let w = 0; w < n / 8; w++) {
      next[n + 8 * w + 3] ^= [1, 2, 4][w % 3];
      next[n + 8 * w + 5] ^= 1;
    }
    // 1024 literals are below the default (OWN_CODES_MIN_BYTES): only a lower ownCodes codes them.
    expect(ownOf(encodePagesSync(prev.slice(), next, Uint32Array.of(0, 1), {}))).toEqual([false, false]);
    expect(ownOf(encodePagesSync(prev.slice(), next, Uint32Array.of(0, 1), { ownCodes: 1025 }))).toEqual([false, false]);
    const f = encodePagesSync(prev.slice(), next, Uint32Array.of(0, 1), { ownCodes: 1024 });
    const body = (() => {
      const e = 32 + 8 * 1;
      const len = f[e + 5] | (f[e + 6] << 8) | (f[e + 7] << 16);
      return Array.from(f.subarray(f.length - len));
    })();
    expect(kindsOf(f)).toEqual([KIND.SAME, KIND.XBM_HUF_OWN]);
    // T = 1 + 8 + 64 + 512 = 585 mask bytes (varint c9 04), L = 1024 (80 08), the masks (00, then
    // period 9: ff 28 28 28 28 28 28 28 28) stored as a 25-byte lz4 block, B = 86: the first 512
    // literals, (b3, 01) for words 0-255, so 86 + 256 = 342 x 0x01 of one bit and 85 each of 0x02
    // and 0x04 of two (682 bits); the second stream 341 x 0x01, 86 x 0x02 and 85 x 0x04 (683
    // bits). The bitmap's byte 0 has bits 1, 2 and 4 (0x16); 683 of 1024 literals give 0x01 one
    // bit, 171 and 170 give the others three, filled to two (nibbles 0x21 0x02).
    expect(body.slice(0, 7)).toEqual([0xc9, 0x04, 0x80, 0x08, 25, 86, 0x16]);
    expect(body.slice(7 + 31, 7 + 31 + 2)).toEqual([0x21, 0x02]);
    expect(body.length).toBe(4 + 2 + 32 + 2 + 25 + 86 + 86);
    const r0 = prev.slice();
    applyPages(r0, f);
    expect(hex(r0) === hex(next)).toBe(true);
    const viaRef = prev.slice();
    applyFrameRef(viaRef, f, n);
    expect(hex(viaRef) === hex(next)).toBe(true);

    const replica = new Uint8Array(8 * N).fill(7);
    const refused = (b: number[], reason: string) =>
      expectRejected(() => applyPages(replica, buildFrame([[3, KIND.XBM, [...MASKS, ...LITS]], [5, KIND.XBM_HUF_OWN, b]], 4, N), { pageSize: N }), replica,
        new RegExp(`^\`frame\` has a bad page 1 \\(pfn 5\\): ${reason}$`));
    const tail = EXAMPLE_OWN.slice(4);
    refused([], 'XBM\\+HUF body length out of range');
    refused([0x05, 0x04, 0x05], 'truncated or oversized XBM\\+HUF lengths');
    refused([0x00, 0x04, 0x05, 0x01, ...tail], 'XBM\\+HUF string lengths out of range');
    refused([0x05, 0x00, 0x05, 0x01, ...tail], 'XBM\\+HUF string lengths out of range');
    refused([0xfc, 0x03, 0x04, 0x05, 0x01, ...tail], 'XBM\\+HUF string lengths out of range'); // T + L = 508 + 4 = n
    refused([0x05, 0x04, 0x00, 0x01, ...tail], 'XBM\\+HUF stored mask length out of range');
    refused([0x05, 0x04, 0x06, 0x01, ...tail], 'XBM\\+HUF stored mask length out of range');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP.slice(0, 20)], 'XBM\\+HUF code table is truncated');
    refused([0x05, 0x04, 0x05, 0x01, ...new Array<number>(32).fill(0), 0x12, 0x02, ...MASKS, 0x00, 0x07], 'XBM\\+HUF code table is empty');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x12], 'XBM\\+HUF code table is truncated');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x10, 0x02, ...MASKS, 0x00, 0x07], 'Huffman code length out of range \\(1 to 11\\)');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x1c, 0x02, ...MASKS, 0x00, 0x07], 'Huffman code length out of range \\(1 to 11\\)');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x12, 0x12, ...MASKS, 0x00, 0x07], 'XBM\\+HUF code table padding is not zero');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x11, 0x01, ...MASKS, 0x00, 0x07], 'Huffman table is empty or over-subscribed');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x12, 0x02, ...MASKS.slice(0, 3)], 'XBM\\+HUF masks run past the body');
    refused([0x05, 0x04, 0x05, 0x03, ...OWN_BITMAP, 0x12, 0x02, ...MASKS, 0x00], 'XBM\\+HUF literal stream runs past the body');
    refused([0x05, 0x04, 0x04, 0x01, ...OWN_BITMAP, 0x12, 0x02, 0x30, 0x05, 0x01, 0x2c, 0x00, 0x07], 'XBM\\+HUF masks: corrupt lz4 block');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x12, 0x02, ...MASKS, 0x00, 0x07, 0x00], 'Huffman stream has bits left over');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x12, 0x02, ...MASKS, 0x00], 'Huffman stream is truncated');
    refused([0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x12, 0x02, 0x05, 0x01, 0x2c, 0x00, 0x04, 0x00, 0x07], 'XBM word mask is zero');
    refused([0x05, 0x05, 0x05, 0x01, ...OWN_BITMAP, 0x12, 0x02, ...MASKS, 0x00, 0x07], 'XBM literal bytes left over'); // 10 10 10 | 40 05
    // The reference refuses every one of these too.
    expect(() => applyFrameRef(new Uint8Array(8 * N), buildFrame([[5, KIND.XBM_HUF_OWN, [0x05, 0x04, 0x05, 0x01, ...OWN_BITMAP, 0x12, 0x12, ...MASKS, 0x00, 0x07]]], 4, N), N)).toThrow(RangeError);
  });

  it.each(supportedIsas())('%s: dense pages of small changes take their own code (kind 12): one frame for every ISA and thread count, smaller than entropy: false, decoded alike by the reference', (name) => {
    setIsa(name);
    const COUNT = 70; // a group of 64 pages and part of another
    const rng = new Rng(1212);
    const old = new Uint8Array(COUNT * PS);
    rng.fill(old);
    const next = old.slice();
    // A third of the bytes XORed with a small power of two (1 or 2 mostly): ~1365 literals a
    // page whose values a code of the page's own takes to ~1.6 bits. The frames here ask for codes
    // from 1024 changed bytes, well below every page's count whatever the default (1280); from
    // 2048, more than any page has, none takes one.
    for (let i = 0; i < COUNT * PS; i++) if (rng.int(3) === 0) next[i] ^= 1 << rng.int(rng.int(4) === 0 ? 8 : 2);
    const own = { ownCodes: 1024 };
    expect(kindsOf(encodePagesSync(old.slice(), next, range(COUNT), { ownCodes: 2048 })).includes(KIND.XBM_HUF_OWN)).toBe(false);
    const f1 = encodePagesSync(old.slice(), next, range(COUNT), { threads: 1, ...own });
    expect(kindsOf(f1).filter((k) => k === KIND.XBM_HUF_OWN).length).toBeGreaterThan(COUNT / 2);
    expect(inspectFrame(f1).version).toBe(5);
    const s2 = old.slice();
    expect(hex(encodePagesSync(s2, next, range(COUNT), { threads: 2, ...own })) === hex(f1)).toBe(true);
    expect(hex(s2) === hex(next)).toBe(true);
    setIsa('scalar');
    expect(hex(encodePagesSync(old.slice(), next, range(COUNT), own)) === hex(f1)).toBe(true);
    setIsa(name);
    const off = encodePagesSync(old.slice(), next, range(COUNT), { entropy: false });
    expect(kindsOf(off).includes(KIND.XBM_HUF_OWN)).toBe(false);
    expect(f1.length).toBeLessThan(off.length);
    // ownCodes: false keeps the group codes (these pages then take them: kinds 9 and 10) and no
    // page takes its own.
    const group = encodePagesSync(old.slice(), next, range(COUNT), { ownCodes: false });
    expect(kindsOf(group).includes(KIND.XBM_HUF_OWN)).toBe(false);
    expect(kindsOf(group).includes(KIND.XBM_HUF_TABLE)).toBe(true);
    expect(inspectFrame(group).version).toBe(5);
    expect(f1.length).toBeLessThan(group.length);
    const rg = old.slice();
    applyPages(rg, group);
    expect(hex(rg) === hex(next)).toBe(true);
    for (const threads of [1, 2]) {
      const r = old.slice();
      applyPages(r, f1, { threads });
      expect(hex(r) === hex(next)).toBe(true);
    }
    const viaRef = old.slice();
    applyFrameRef(viaRef, f1);
    expect(hex(viaRef) === hex(next)).toBe(true);
  });

  it('an XBM page takes its own code by default from OWN_CODES_MIN_BYTES (1280) changed bytes', () => {
    expect(OWN_CODES_MIN_BYTES).toBe(1280);
    const n = 4096;
    const prev = new Uint8Array(2 * n);
    new Rng(15).fill(prev);
    // Bytes 1 and 3 of every word and byte 5 of every other word changed by small amounts:
    // 2 x 512 + 256 = 1280 literals on page 0; page 1 the same but word 0's byte 1: 1279. Byte 3
    // takes 1, 2, 4 in turn, so the words have a period of 6 and none repeats the word 1, 2, 4 or
    // 8 before it (every changed byte is a literal).
    const next = prev.slice();
    for (let p = 0; p < 2; p++) {
      for (let w = 0; w < n / 8; w++) {
        const at = p * n + 8 * w;
        if (p === 0 || w !== 0) next[at + 1] ^= 1;
        next[at + 3] ^= [1, 2, 4][w % 3];
        if (w % 2 === 0) next[at + 5] ^= 2;
      }
    }
    const f = encodePagesSync(prev.slice(), next, range(2));
    expect(ownOf(f)).toEqual([true, false]);
    expect(hex(encodePagesSync(prev.slice(), next, range(2), { ownCodes: true })) === hex(f)).toBe(true);
    expect(hex(encodePagesSync(prev.slice(), next, range(2), { ownCodes: OWN_CODES_MIN_BYTES })) === hex(f)).toBe(true);
    expect(ownOf(encodePagesSync(prev.slice(), next, range(2), { ownCodes: 1279 }))).toEqual([true, true]);
    expect(ownOf(encodePagesSync(prev.slice(), next, range(2), { ownCodes: 1281 }))).toEqual([false, false]);
    expect(ownOf(encodePagesSync(prev.slice(), next, range(2), { ownCodes: false }))).toEqual([false, false]);
    const r = prev.slice();
    applyPages(r, f);
    expect(hex(r) === hex(next)).toBe(true);
  });

  it.each(supportedIsas())('%s: encodePages gives a large XBM body to lz4 (kind 11) when that pays, and to its own code by default', (name) => {
    setIsa(name);
    // Four bytes of every word XORed with 1, the bytes of byte mask 55, aa, 0f in turn (so no word
    // repeats the word 1, 2, 4 or 8 before it): S = 1 + 8 + 64 + 512 + 2048 = 2633 bytes against
    // XRLE's F = 3072 + 512 x 4 / 3 filled, R = 512 x 2 / 3 + 1 runs.
    const old = new Uint8Array(2 * PS);
    new Rng(3).fill(old);
    const next = old.map((v, i) => (([0x55, 0xaa, 0x0f][(i >> 3) % 3] >> (i & 7)) & 1 ? v ^ 1 : v));
    const ref = encodePagesRef(old.slice(), next, range(2));
    expect(kindsOf(ref)).toEqual([KIND.XBM, KIND.XBM]);
    for (const opts of [{ compress: false }, { entropy: false }, {}]) {
      const s = old.slice();
      const f = encodePagesSync(s, next, range(2), opts);
      if (opts.compress === false) expect(hex(f) === hex(ref)).toBe(true);
      if (opts.entropy === false) expect(kindsOf(f)).toEqual([KIND.XBM_LZ4, KIND.XBM_LZ4]);
      // By default the 2048 literals (all 0x01) take a code of their own: one bit each (kind 12).
      if (opts.compress !== false && opts.entropy !== false) expect(kindsOf(f)).toEqual([KIND.XBM_HUF_OWN, KIND.XBM_HUF_OWN]);
      expect(inspectFrame(f).version).toBe(5);
      expect(hex(s) === hex(next)).toBe(true);
      const r = old.slice();
      applyPages(r, f);
      expect(hex(r) === hex(next)).toBe(true);
    }
  });

  it.each(supportedIsas())('%s: the XBM body that rule 5 gives to lz4 starts at n/16 bytes: 255 stays kind 8, 256 becomes kind 11', (name) => {
    setIsa(name);
    // A page that was zero gets, in its words 0 to 114 (lines 0 to 13 whole, 3 words of line
    // 14), byte 0 = 1, 2, 3, ... (no word equals the word 1, 2, 4 or 8 before it, so d = 0), and
    // the first `extra` words byte 1 = 40 as well: XBM (4S < 4F + 7R), a body of 1 (d) + 8 (line
    // mask) + 15 word masks + 115 byte masks + 115 + extra literals = 254 + extra bytes. Its 139
    // bytes of masks (ff 01 01 ... a line) repeat: the 256-byte body becomes 148 bytes of kind 11.
    const page = (extra: number) => {
      const p = new Uint8Array(PS);
      for (let w = 0; w < 14 * 8 + 3; w++) {
        p[8 * w] = w + 1;
        if (w < extra) p[8 * w + 1] = 0x40;
      }
      return p;
    };
    for (const [extra, size, kind] of [[0, 254, KIND.XBM], [1, 255, KIND.XBM], [2, 256, KIND.XBM_LZ4]] as const) {
      const next = page(extra);
      const ref = encodeBody(new Uint8Array(PS), next, { xbm: true });
      expect([extra, ref.kind, ref.body.length]).toEqual([extra, KIND.XBM, size]);
      expect(xbmLz4Ref(ref.body, PS, true) === null).toBe(kind === KIND.XBM);
      const f = encodePagesSync(new Uint8Array(PS), next, range(1), { entropy: false });
      expect([extra, f[32 + 4]]).toEqual([extra, kind]);
      const r = new Uint8Array(PS);
      applyPages(r, f);
      expect(hex(r) === hex(next)).toBe(true);
    }
  });

  it('the XBM lz4 writer: exact blocks for hand-checked masks, and the end rules', () => {
    // "abcd" five times (20 bytes) then 16 literal bytes (1..16): a match may end by 15 (the
    // masks' last 5 bytes are literals) and start before 8 (their last 12 hold no match start),
    // literals or not. Positions 0-3 miss; at 4, "abcd" is found at 0: 4 literals, an offset of
    // 4, 11 matched bytes (token 0x47); then one literal run of "dabcd" and the 16 (0xf0, 15 + 6).
    const m = Uint8Array.from([..."abcdabcdabcdabcdabcd"].map((c) => c.charCodeAt(0)));
    const l = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    expect(hex(lz4BlockMasksRef(m, l))).toBe('47616263640400f0066461626364' + hex(l));
    // The masks alone: the same sequence, then "dabcd" (token 0x50).
    expect(hex(lz4BlockMasksRef(m, new Uint8Array(0)))).toBe('4761626364040050' + '6461626364');
    // "abcdabcdabcd" alone is too short for a match (one may start only before 12 - 12 = 0).
    expect(hex(lz4BlockMasksRef(m.subarray(0, 12), l))).toBe('f00d' + hex(m.subarray(0, 12)) + hex(l));
    // Too short for any match (8 bytes of masks at least, and a match start before total - 12).
    expect(hex(lz4BlockMasksRef(m.subarray(0, 7), new Uint8Array(0)))).toBe('7061626364616263');
    // One literal run of 15 or more takes a length byte; 255 + 15 takes two.
    const long = new Uint8Array(270).fill(9);
    expect(hex(lz4BlockMasksRef(new Uint8Array(0), long))).toBe('f0ff00' + '09'.repeat(270));
  });

  it.each(supportedIsas())('%s: kind 11 bodies are the reference writer\'s, byte for byte (arrays whose entries change alike)', (name) => {
    setIsa(name);
    const COUNT = 24;
    const rng = new Rng(611);
    const old = new Uint8Array(COUNT * PS);
    rng.fill(old);
    const next = old.slice();
    // Page i: an array of records of stride 8..64 bytes whose fields at 1-3 offsets change by a
    // small XOR value, over all or part of the page, plus a few stray bytes.
    for (let i = 0; i < COUNT; i++) {
      const stride = [8, 16, 8, 24, 16, 32][i % 6];
      const fields = Array.from({ length: 1 + (i % 3) }, () => rng.int(stride));
      const end = PS >> (i % 4 === 3 ? 1 : 0);
      for (let r = 0; r + stride <= end; r += stride) {
        for (const f of fields) next[i * PS + r + f] ^= 1 + rng.int(3);
      }
      for (let k = 0; k < 1 + (i % 5); k++) next[i * PS + rng.int(PS)] ^= 0x80;
    }
    // The last page: 700 scattered bytes, an XBM body over n/4 whose masks do not repeat, so the
    // writer cannot save 1/16 and the page stays kind 8.
    next.set(old.subarray((COUNT - 1) * PS), (COUNT - 1) * PS);
    for (let k = 0; k < 700; k++) next[(COUNT - 1) * PS + rng.int(PS)] ^= 1 + rng.int(255);
    const f = encodePagesSync(old.slice(), next, range(COUNT), { entropy: false });
    const view = inspectFrame(f);
    let at = 32 + 8 * COUNT;
    const lz4Pages: [number, number][] = []; // [page, its repeat distance]
    for (let i = 0; i < COUNT; i++) {
      const e = 32 + 8 * i;
      const kind = f[e + 4];
      const len = f[e + 5] | (f[e + 6] << 8) | (f[e + 7] << 16);
      const body = f.subarray(at, at + len);
      at += len;
      const ref = encodeBody(old.subarray(i * PS, (i + 1) * PS), next.subarray(i * PS, (i + 1) * PS), { xbm: true });
      if (ref.kind !== KIND.XBM) continue; // XRLE pages may go to liblz4, whose bytes are its own
      const want = xbmLz4Ref(ref.body, PS, true);
      expect([i, kind]).toEqual([i, want === null ? KIND.XBM : KIND.XBM_LZ4]);
      expect(hex(body) === hex(want ?? ref.body)).toBe(true);
      if (want !== null) lz4Pages.push([i, ref.body[0]]);
    }
    expect(view.count).toBe(COUNT);
    // Every page with a body of n/16 (256 bytes) or more that saves 1/16: all but pages 3 and 15
    // (records of 24 bytes over half the page: bodies of 221 and 214 bytes once their repeated
    // words drop their literals) and the last (1106 bytes that do not pay). Under the rule of
    // session 10 (n/4) only pages 2, 8, 14 and 20 were given to the writer.
    expect(lz4Pages).toEqual([
      [0, 1], [1, 1], [2, 2], [4, 2], [5, 4], [6, 2], [7, 8], [8, 2], [9, 0], [10, 2], [11, 4],
      [12, 1], [13, 4], [14, 8], [16, 2], [17, 8], [18, 2], [19, 8], [20, 4], [21, 0], [22, 8],
    ]);
    for (const [i, want] of [[3, 221], [15, 214]]) {
      const ref = encodeBody(old.subarray(i * PS, (i + 1) * PS), next.subarray(i * PS, (i + 1) * PS), { xbm: true });
      expect([i, ref.kind, ref.body.length]).toEqual([i, KIND.XBM, want]);
      expect(f[32 + 8 * i + 4]).toBe(KIND.XBM);
    }
    const last = inspectFrame(f).pfns.length - 1;
    expect(f[32 + 8 * last + 4]).toBe(KIND.XBM);
    expect(f[32 + 8 * last + 5] | (f[32 + 8 * last + 6] << 8)).toBeGreaterThan(PS / 4);
    const r = old.slice();
    applyPages(r, f);
    expect(hex(r) === hex(next)).toBe(true);
  });

  it.each(supportedIsas())('%s: encodePages with compress: false matches the reference byte for byte, on 1 and 2 threads', (name) => {
    setIsa(name);
    const COUNT = 40;
    for (const pageSize of [PS, 512]) {
      for (const kind of PAGE_KINDS) {
        const { old, next } = pagePairs(kind.length * 17 + pageSize, kind, COUNT, pageSize);
        const pfns = range(COUNT, (i) => (i * 11 + 5) % (COUNT + 3));
        const shadow = new Uint8Array((COUNT + 3) * pageSize);
        for (let i = 0; i < COUNT; i++) shadow.set(old.subarray(i * pageSize, (i + 1) * pageSize), pfns[i] * pageSize);
        const refShadow = shadow.slice();
        const ref = encodePagesRef(refShadow, next, pfns, pageSize);
        const refKinds = kindsOf(ref);
        expect(inspectFrame(ref).version, kind).toBe(refKinds.includes(KIND.XBM) ? 5 : 1);
        if (kind === 'counters') expect(refKinds.filter((k) => k === KIND.XBM).length, kind).toBeGreaterThan(COUNT / 2);
        if (kind === 'words' || kind === 'half') expect(refKinds, kind).not.toContain(KIND.XBM);
        for (const threads of [1, 2]) {
          const s = shadow.slice();
          const f = encodePagesSync(s, next, pfns, { compress: false, threads, pageSize });
          expect(hex(f) === hex(ref), `${kind}, ${pageSize}, ${threads} threads`).toBe(true);
          expect(hex(s) === hex(refShadow)).toBe(true);
          const r = shadow.slice();
          applyPages(r, f, { pageSize, threads });
          expect(hex(r) === hex(refShadow)).toBe(true);
          const r2 = shadow.slice();
          applyFrameRef(r2, f, pageSize);
          expect(hex(r2) === hex(refShadow)).toBe(true);
        }
      }
    }
  });

  it.each(supportedIsas())('%s: default frames with kinds 8, 9 and 10 decode with the reference as with applyPages', (name) => {
    setIsa(name);
    const COUNT = 160;
    const { old, next } = pagePairs(62, 'counters', COUNT);
    const pfns = range(COUNT, (i) => (i * 41 + 7) % COUNT);
    const shadow = new Uint8Array(COUNT * PS);
    for (let i = 0; i < COUNT; i++) shadow.set(old.subarray(i * PS, (i + 1) * PS), pfns[i] * PS);
    const expected = shadow.slice();
    for (let i = 0; i < COUNT; i++) expected.set(next.subarray(i * PS, (i + 1) * PS), pfns[i] * PS);
    const seen = new Set<number>();
    for (const opts of [{}, { threads: 1 }, { entropy: false }]) {
      const f = encodePagesSync(shadow.slice(), next, pfns, opts);
      kindsOf(f).forEach((k) => seen.add(k));
      expect(inspectFrame(f).version).toBe(5);
      const r = shadow.slice();
      applyPages(r, f);
      expect(hex(r) === hex(expected)).toBe(true);
      const ref = shadow.slice();
      applyFrameRef(ref, f);
      expect(hex(ref) === hex(expected)).toBe(true);
    }
    expect(Array.from(seen)).toEqual(expect.arrayContaining([KIND.XBM, KIND.XBM_HUF, KIND.XBM_HUF_TABLE]));
    // The same frame for 1 and 2 threads.
    expect(hex(encodePagesSync(shadow.slice(), next, pfns, { threads: 1 })) === hex(encodePagesSync(shadow.slice(), next, pfns, { threads: 2 }))).toBe(true);
  });

  describe('hostile XBM pages: a RangeError naming the page, nothing changed', () => {
    // Page 0 (pfn 3) is the valid example; page 1 (pfn 5) is the bad one.
    const GOOD: [number, number, number[]] = [3, KIND.XBM, [...MASKS, ...LITS]];
    const bad = (reason: string) => new RegExp(`^\`frame\` has a bad page 1 \\(pfn 5\\): ${reason}$`);
    const expectRefused = (frame: Uint8Array, message: RegExp, pageSize = N) => {
      const replica = new Uint8Array(8 * pageSize);
      for (let i = 0; i < replica.length; i++) replica[i] = (i * 13) & 255;
      expectRejected(() => applyPages(replica, frame, { pageSize }), replica, message);
      expect(() => inspectFrame(frame)).toThrow(message);
      expect(() => applyFrameRef(replica.slice(), frame, pageSize)).toThrow(RangeError);
    };
    /** A body of `len` bytes (n = 512) that parses: every line, word and byte mask set, literals 1.. */
    const fullBody = (len: number) => {
      const masks = [0xff, ...Array.from({ length: 8 }, () => [0xff, ...new Array<number>(8).fill(0)]).flat()];
      let lits = len - masks.length; // 73 mask bytes; one literal at least per byte mask
      for (let i = 0, m = 0; i < masks.length; i++) {
        if (i === 0 || i % 9 === 1) continue; // line mask, word masks
        const c = Math.min(8, lits - (63 - m));
        masks[i] = (1 << c) - 1;
        lits -= c;
        m++;
      }
      expect(lits).toBe(0);
      const count = masks.reduce((sum, b, i) => sum + (i === 0 || i % 9 === 1 ? 0 : popcount(b)), 0);
      return [...masks, ...Array.from({ length: count }, (_, i) => 1 + (i % 255))];
    };
    const popcount = (b: number) => b.toString(2).replaceAll('0', '').length;

    // [name, masks, literals, reason]: bodies bad after the masks are parsed, for kind 8 and,
    // split at `masks`, for kinds 9 and 10.
    const CASES: [string, number[], number[], string][] = [
      ['a word mask runs past the body', [0x01, 0xff], [0x01], 'XBM masks run past the body'],
      ['a word mask of 0', [0x01, 0x00], [0xaa], 'XBM word mask is zero'],
      ['a byte mask of 0', [0x01, 0x01, 0x00], [0xaa], 'XBM byte mask is zero'],
      ['a literal missing', [0x01, 0x01, 0x03], [0xaa], 'XBM literals are truncated'],
      ['a literal left over', [0x01, 0x01, 0x01], [0xaa, 0xbb], 'XBM literal bytes left over'],
    ];

    it.each(CASES)('kind 8: %s', (_, masks, lits, reason) => {
      expectRefused(buildFrame([GOOD, [5, KIND.XBM, [...masks, ...lits]]], 3, N), bad(reason));
      const t = new Uint8Array(N).fill(1);
      expectRejected(() => applyBodyRef(t, KIND.XBM, Uint8Array.from([...masks, ...lits])), t, /^XBM /);
    });

    it.each(CASES)('kinds 9 and 10: %s', (_, masks, lits, reason) => {
      expectRefused(buildFrame([GOOD, [5, KIND.XBM_HUF_TABLE, withTables(hufBody(masks, lits))]], 3, N), bad(reason));
      const tables: [number, number, number[]] = [3, KIND.XBM_HUF_TABLE, withTables(hufBody(MASKS, LITS))];
      expectRefused(buildFrame([tables, [5, KIND.XBM_HUF, hufBody(masks, lits)]], 3, N), bad(reason));
    });

    it('kind 8: masks past the end of a body with no literals, a line mask cut short', () => {
      expectRefused(buildFrame([GOOD, [5, KIND.XBM, [0x01]]], 3, N), bad('XBM masks run past the body'));
      expectRefused(buildFrame([GOOD, [5, KIND.XBM, [0x01, 0x03, 0x01]]], 3, N), bad('XBM masks run past the body'));
      expectRefused(buildFrame([GOOD, [5, KIND.XBM, [0x01, 0x01, 0x01]]], 3, N), bad('XBM literals are truncated'));
      // 4096-byte pages have a line mask of 8 bytes.
      expectRefused(buildFrame([[3, KIND.ZERO, []], [5, KIND.XBM, [0, 0, 0, 0, 0]]], 3, PS), bad('XBM line mask is truncated'), PS);
    });

    it('kind 8: a body of 0 or n bytes is refused, n - 1 bytes and a 0 literal are not', () => {
      expectRefused(buildFrame([GOOD, [5, KIND.XBM, []]], 3, N), bad('XBM body length out of range'));
      expectRefused(buildFrame([GOOD, [5, KIND.XBM, fullBody(N)]], 3, N), bad('XBM body length out of range'));
      expect(() => applyBodyRef(new Uint8Array(N), KIND.XBM, Uint8Array.from(fullBody(N)))).toThrow(RangeError);
      const replica = new Uint8Array(8 * N).fill(0x5a);
      const frame = buildFrame([GOOD, [5, KIND.XBM, fullBody(N - 1)], [6, KIND.XBM, [0x01, 0x01, 0x01, 0x00]]], 3, N);
      const ref = replica.slice();
      applyFrameRef(ref, frame, N);
      applyPages(replica, frame, { pageSize: N });
      expect(hex(replica) === hex(ref)).toBe(true);
      expect(hex(pageOf(replica, 6))).toBe(hex(new Uint8Array(N).fill(0x5a))); // XOR with 0
      expect(pageOf(replica, 5).filter((v) => v === 0x5a).length).toBe(N - (N - 1 - 73)); // one per literal changed
    });

    it('kinds 9 and 10: Huffman stream lengths out of range (T + L >= n)', () => {
      const body = [...varint(300), ...varint(212), 0];
      expectRefused(buildFrame([GOOD, [5, KIND.XBM_HUF_TABLE, withTables(body)]], 3, N), bad('Huffman stream lengths out of range'));
    });

    it('kinds 9 and 10: a mask string that does not end where T says, even if the bytes would parse as one XBM body', () => {
      // The valid example's bytes, split one byte late: the first literal counted as a mask byte.
      const shifted = hufBody([...MASKS, LITS[0]!], LITS.slice(1));
      const reason = bad('XBM mask string does not end where its length says');
      expectRefused(buildFrame([GOOD, [5, KIND.XBM_HUF_TABLE, withTables(shifted)]], 3, N), reason);
      const tables: [number, number, number[]] = [3, KIND.XBM_HUF_TABLE, withTables(hufBody(MASKS, LITS))];
      expectRefused(buildFrame([tables, [5, KIND.XBM_HUF, shifted]], 3, N), reason);
    });

    it('kind 9 with no tables before it is refused; tables never come from a later page', () => {
      expectRefused(buildFrame([GOOD, [5, KIND.XBM_HUF, hufBody(MASKS, LITS)]], 3, N), bad('Huffman page with no tables before it in the frame'));
      const later = buildFrame([[5, KIND.XBM_HUF, hufBody(MASKS, LITS)], [3, KIND.XBM_HUF_TABLE, withTables(hufBody(MASKS, LITS))]], 3, N);
      expectRefused(later, /^`frame` has a bad page 0 \(pfn 5\): Huffman page with no tables before it in the frame$/);
    });

    it('kinds 8 to 11 are unknown in frames of version 1 and 2; version 3 allows kinds up to 11', () => {
      const pages: [number, number, number[]][] = [
        [GOOD[0], GOOD[1], GOOD[2]],
        [4, KIND.XBM_HUF_TABLE, withTables(hufBody(MASKS, LITS))],
        [5, KIND.XBM_HUF, hufBody(MASKS, LITS)],
      ];
      for (const version of [1, 2]) {
        for (let k = 1; k <= 3; k++) {
          expectRefused(buildFrame(pages.slice(0, k), version, N), /^`frame` has an unknown page kind in its index$/);
        }
      }
      expectRefused(buildFrame([[3, 12, []]], 3, N), /^`frame` has an unknown page kind in its index$/);
      expectRefused(buildFrame([[3, KIND.XBM_LZ4, lz4Body([...MASKS, ...LITS])]], 2, N), /^`frame` has an unknown page kind in its index$/);
      // The same pages in a version 3 frame apply (and an XRLE+HUF table page in version 2 still does).
      const r = replicaOf();
      applyPages(r, buildFrame(pages, 3, N), { pageSize: N });
      for (const pfn of [3, 4, 5]) expect(hex(pageOf(r, pfn))).toBe(hex(exampleInputs().next));
      const v2 = buildFrame([[2, KIND.XRLE_HUF_TABLE, withTables(hufBody(XRLE_TOKS, XRLE_LITS))]], 2, N);
      applyPages(r, v2, { pageSize: N });
      expect(hex(pageOf(r, 2))).toBe(hex(exampleInputs().next));
      // Version 3 frames may hold only kinds 0-5 (a writer would call that version 1).
      applyPages(r, buildFrame([[7, KIND.ZERO, []]], 3, N), { pageSize: N });
      expect(hex(pageOf(r, 7))).toBe(hex(new Uint8Array(N)));
    });

    it('a delta container refuses the XBM kinds', () => {
      const prev = new Uint8Array(N);
      const d = encodeDelta(prev, prev, { compress: false }); // SAME: borrow the container
      for (const kind of [KIND.XBM, KIND.XBM_HUF, KIND.XBM_HUF_TABLE, KIND.XBM_LZ4]) {
        const body = {
          [KIND.XBM]: [...MASKS, ...LITS],
          [KIND.XBM_HUF]: hufBody(MASKS, LITS),
          [KIND.XBM_HUF_TABLE]: withTables(hufBody(MASKS, LITS)),
          [KIND.XBM_LZ4]: lz4Body([...MASKS, ...LITS]),
        }[kind];
        const head = Uint8Array.from([...d.subarray(0, 5), kind, 0, 0, ...d.subarray(8, 12), body.length & 255, body.length >> 8, 0, 0]);
        const delta = Uint8Array.from([...head, ...checksum(head, body), ...body]);
        expectRejected(() => applyDelta(prev, delta), prev, /^`delta` has an unknown encoding kind$/);
      }
    });
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

  it.each(['plain', 'shared'] as const)('keeps the event loop responsive during a large encodePages (%s buffers)', async (kind) => {
    // Plain ArrayBuffers are worked on in place (Node 24, marked) or as staged copies (Node 20 and
    // 22): in the background either way, as shared memory always is.
    const as = (a: Uint8Array) => {
      if (kind === 'plain') return a.slice();
      const s = new Uint8Array(new SharedArrayBuffer(a.length));
      s.set(a);
      return s;
    };
    const pair = pagePairs(2, 'half', 2048);
    const [old, next] = [as(pair.old), as(pair.next)];
    const want = encodePagesSync(pair.old.slice(), pair.next, range(2048));
    const order: string[] = [];
    const p = encodePages(old, next, range(2048), { threads: 1 }).then((f) => (order.push('encoded'), f));
    setImmediate(() => order.push('immediate'));
    const frame = await p;
    expect(order).toEqual(['immediate', 'encoded']);
    expect(Buffer.compare(frame, want)).toBe(0);
    expect(Buffer.compare(old, pair.next)).toBe(0); // the shadow holds the new pages
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
    // A misspelt option is refused, not ignored.
    expect(() => encodePagesSync(shadow, pages, Uint32Array.of(0, 1), { pagesize: 512 } as never)).toThrow(
      new TypeError('`options` has no option `pagesize` (known: pageSize, threads, compress, entropy, ownCodes)'),
    );
    expect(() => applyPages(shadow, new Uint8Array(40), { thread: 1 } as never)).toThrow(
      new TypeError('`options` has no option `thread` (known: pageSize, threads)'),
    );
    expect(() => encodeDelta(shadow, shadow, { compres: false } as never)).toThrow(
      new TypeError('`options` has no option `compres` (known: compress)'),
    );
    expect(hex(shadow) === hex(new Uint8Array(4 * PS))).toBe(true);
  });

  it('closed guest memory is named as detached by every delta call, not read as zero pages', async () => {
    const mem = allocateMemory(4 * PS);
    const view = mem.view;
    const frame = encodePagesSync(new Uint8Array(4 * PS), new Uint8Array(PS), Uint32Array.of(1));
    mem.close();
    const detached = (name: string) => new TypeError(`\`${name}\` is detached (its buffer was transferred or its memory closed)`);
    expect(() => encodePagesSync(view, new Uint8Array(PS), Uint32Array.of(1))).toThrow(detached('shadow'));
    expect(() => encodePages(new Uint8Array(4 * PS), view, Uint32Array.of())).toThrow(detached('pages'));
    expect(() => applyPages(view, frame)).toThrow(detached('replica'));
    expect(() => applyPagesAsync(view, frame)).toThrow(detached('replica'));
    expect(() => applyPagesWithUndo(view, frame)).toThrow(detached('replica'));
    expect(() => applyPages(new Uint8Array(4 * PS), view)).toThrow(detached('frame'));
    expect(() => inspectFrame(view)).toThrow(detached('frame'));
    expect(() => encodeDelta(view, view)).toThrow(detached('prev'));
    expect(() => applyDelta(view, encodeDelta(new Uint8Array(8), new Uint8Array(8)))).toThrow(detached('target'));
  });

  it('refuses arguments that overlap the buffer the call writes, and changes nothing', async () => {
    const rng = new Rng(7);
    const shadow = new Uint8Array(8 * PS);
    rng.fill(shadow);
    const before = shadow.slice();
    const pfns = Uint32Array.of(0, 1);
    // pages inside shadow: the encoder would read what it has just written over
    expect(() => encodePagesSync(shadow, shadow.subarray(PS, 3 * PS), pfns)).toThrow(
      new RangeError('`pages` must not overlap `shadow`'),
    );
    expect(() => encodePages(shadow, shadow.subarray(6 * PS), pfns)).toThrow(new RangeError('`pages` must not overlap `shadow`'));
    // the same ArrayBuffer is fine where the views do not share a byte
    const pfnsBeside = new Uint32Array(shadow.buffer, 7 * PS, 2);
    pfnsBeside.set([0, 1]);
    expect(() => encodePagesSync(shadow.subarray(0, 4 * PS), new Uint8Array(2 * PS), pfnsBeside)).not.toThrow();
    const aliased = new Uint32Array(shadow.buffer, 0, 2);
    aliased.set([0, 1]);
    const snapshot = shadow.slice();
    expect(() => encodePagesSync(shadow, new Uint8Array(2 * PS), aliased)).toThrow(new RangeError('`pfns` must not overlap `shadow`'));
    expect(hex(shadow) === hex(snapshot)).toBe(true);
    shadow.set(before);
    // a frame inside the replica it is applied to
    const next = new Uint8Array(2 * PS);
    rng.fill(next);
    const frame = encodePagesSync(shadow.slice(), next, pfns);
    const room = new Uint8Array(8 * PS + frame.length);
    room.set(frame, 6 * PS);
    const replica = room.subarray(0, 8 * PS);
    const kept = replica.slice();
    expect(() => applyPages(replica, room.subarray(6 * PS, 6 * PS + frame.length))).toThrow(
      new RangeError('`frame` must not overlap `replica`'),
    );
    await expect(async () => applyPagesAsync(replica, room.subarray(6 * PS, 6 * PS + frame.length))).rejects.toThrow(
      new RangeError('`frame` must not overlap `replica`'),
    );
    expect(hex(replica) === hex(kept)).toBe(true);
    const delta = encodeDelta(new Uint8Array(32), new Uint8Array(32).fill(1));
    const both = new Uint8Array(32 + delta.length);
    both.set(delta, 16);
    const untouched = both.slice();
    expect(() => applyDelta(both.subarray(0, 32), both.subarray(16))).toThrow(new RangeError('`delta` must not overlap `target`'));
    expect(hex(both) === hex(untouched)).toBe(true);
  });

  it('takes views of a SharedArrayBuffer like any other', async () => {
    const rng = new Rng(11);
    const shadow = new Uint8Array(new SharedArrayBuffer(4 * PS));
    const next = new Uint8Array(new SharedArrayBuffer(2 * PS));
    rng.fill(shadow);
    rng.fill(next);
    const plainShadow = shadow.slice();
    const pfns = Uint32Array.of(3, 1);
    const want = encodePagesSync(plainShadow, next.slice(), pfns);
    const got = await encodePages(shadow, next, pfns);
    expect(hex(got) === hex(want)).toBe(true);
    expect(hex(shadow) === hex(plainShadow)).toBe(true);
    const replica = new Uint8Array(new SharedArrayBuffer(4 * PS));
    applyPages(replica, got);
    expect(hex(replica.subarray(3 * PS, 4 * PS)) === hex(next.subarray(0, PS))).toBe(true);
  });

  it('other page sizes: XBM as the reference writes it, and round trips with lz4 and the Huffman stage', () => {
    const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;
    for (const pageSize of [512, 65536, 1 << 20]) {
      for (const kind of ['counters', 'realistic'] as const) {
        const count = pageSize === 1 << 20 ? 3 : 12;
        const { old, next } = pagePairs(9, kind, count, pageSize);
        const plain = encodePagesSync(old.slice(), next, range(count), { pageSize, compress: false });
        expect(same(plain, encodePagesRef(old.slice(), next, range(count), pageSize))).toBe(true);
        if (kind === 'counters') expect(plain[4]).toBe(5); // XBM pages at every size
        for (const opts of [{}, { entropy: false }]) {
          const f = encodePagesSync(old.slice(), next, range(count), { pageSize, ...opts });
          // The Huffman stage codes counters pages at 64 KiB and 1 MiB too (1 MiB: one-page groups):
          // with the group's tables, or, as these pages hold thousands of literals, their own code.
          if (kind === 'counters' && pageSize > 4096 && !('entropy' in opts)) {
            expect(kindsOf(f).some((k) => k === KIND.XBM_HUF_TABLE || k === KIND.XBM_HUF_OWN)).toBe(true);
          }
          const r = old.slice();
          applyPages(r, f, { pageSize });
          expect(same(r, next)).toBe(true);
        }
      }
    }
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
    const v6 = frame.slice();
    v6[4] = 6;
    expectRejected(() => applyPages(replica, v6), replica, /^`frame` has an unsupported version$/);
    const v0 = frame.slice();
    v0[4] = 0;
    expectRejected(() => applyPages(replica, v0), replica, /^`frame` has an unsupported version$/);
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
    await expect(applyPagesAsync(replica, v6)).rejects.toThrow(new RangeError('`frame` has an unsupported version'));
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

describe('applyPagesWithUndo', () => {
  const setup = () => {
    const { old, next } = pagePairs(77, 'realistic', 40);
    const pfns = range(40, (i) => (i * 11 + 5) % 53);
    const replica = new Uint8Array(53 * PS);
    for (let i = 0; i < 53 * PS; i += 13) replica[i] = i % 251;
    for (let i = 0; i < 40; i++) replica.set(old.subarray(i * PS, (i + 1) * PS), pfns[i] * PS);
    const frame = encodePagesSync(replica.slice(), next, pfns);
    return { replica, frame, pfns, next };
  };

  it('applies as applyPages does and returns the overwritten pages in frame order; scatter takes it back', () => {
    const { replica, frame, pfns } = setup();
    const before = replica.slice();
    const want = replica.slice();
    applyPages(want, frame);
    const undo = applyPagesWithUndo(replica, frame, { threads: 2 });
    expect(Buffer.compare(replica, want)).toBe(0);
    expect(Array.from(undo.pfns)).toEqual(Array.from(inspectFrame(frame).pfns));
    expect(Array.from(undo.pfns)).toEqual(Array.from(pfns));
    expect(Buffer.compare(undo.pages, gatherPages(before, undo.pfns, { pageSize: PS }))).toBe(0);
    scatterPages(replica, undo.pfns, undo.pages, { pageSize: PS });
    expect(Buffer.compare(replica, before)).toBe(0);
  });

  it('fills `out` when it holds every page (pages views its start), else makes its own and leaves `out` alone', () => {
    const { replica, frame } = setup();
    const big = new Uint8Array(64 * PS + 8).fill(0xee);
    const out = big.subarray(8);
    const undo = applyPagesWithUndo(replica.slice(), frame, { out });
    expect([undo.pages.buffer === big.buffer, undo.pages.byteOffset, undo.pages.length]).toEqual([true, 8, 40 * PS]);
    expect(big.subarray(8 + 40 * PS).every((b) => b === 0xee)).toBe(true);
    const small = new Uint8Array(39 * PS).fill(0xee);
    const own = applyPagesWithUndo(replica.slice(), frame, { out: small });
    expect([own.pages.buffer === small.buffer, own.pages.length]).toEqual([false, 40 * PS]);
    expect(Buffer.compare(own.pages, undo.pages)).toBe(0);
    expect(small.every((b) => b === 0xee)).toBe(true);
  });

  it('refuses a bad frame, a bad `out` and unknown options, changing nothing', () => {
    const { replica, frame } = setup();
    const before = replica.slice();
    const out = new Uint8Array(64 * PS).fill(0xee);
    const bad = frame.slice();
    bad[bad.length - 1]! ^= 1;
    expect(() => applyPagesWithUndo(replica, bad, { out })).toThrow(new RangeError('`frame` fails its checksum'));
    expect(() => applyPagesWithUndo(replica, frame, { out: replica.subarray(PS) })).toThrow(new RangeError('`out` must not overlap `replica`'));
    const both = new Uint8Array(frame.length + 64 * PS);
    both.set(frame);
    expect(() => applyPagesWithUndo(replica, both.subarray(0, frame.length), { out: both.subarray(frame.length - 1) })).toThrow(
      new RangeError('`out` must not overlap `frame`'),
    );
    expect(() => applyPagesWithUndo(replica, frame, { out: new Uint16Array(8) as unknown as Uint8Array })).toThrow(TypeError);
    expect(() => applyPagesWithUndo(replica, frame, { undo: true } as never)).toThrow(TypeError);
    expect(Buffer.compare(replica, before)).toBe(0);
    expect(out.every((b) => b === 0xee)).toBe(true);
  });
});
