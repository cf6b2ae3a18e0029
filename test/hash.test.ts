/**
 * hashPages/fingerprintPages/zeroPages/xxh3: every ISA path against known answers from Debian's
 * xxhsum, against @node-rs/xxhash page by page with seeds, 1 vs 2 threads, and exact errors for
 * hostile inputs.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { xxh3 as rs } from '@node-rs/xxhash';
import { fingerprintPages, hashPages, xxh3, zeroPages } from '../lib/index.js';
import { forEachIsa } from './each-isa.js';
import { fingerprintPagesRef, hashPagesRef, zeroPagesRef } from './reference/hash.js';
import { randomBytes, rng } from './reference/random.js';

interface Vectors {
  pages: { name: string; pageSize: number; pages: number; salt: number; zeroPage: number; xxh3: string[]; xxh128: string[] }[];
  whole: { length: number; salt: number; xxh3: string }[];
}
// Known answers computed by Debian's xxhsum (see the file's comment and make-xxh3-vectors.mjs).
const vectors = JSON.parse(readFileSync(new URL('./vectors/xxh3.json', import.meta.url), 'utf8')) as Vectors;

/** The input generator of make-xxh3-vectors.mjs. */
function lcg(length: number, salt: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = salt >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const hex64 = (v: bigint) => v.toString(16).padStart(16, '0');
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0;

/** Random pages, some all zero and some zero but for one byte at the start, middle or end. */
function mixedPages(rand: () => number, n: number, pageSize: number): Uint8Array {
  const data = randomBytes(rand, n * pageSize);
  for (let p = 0; p < n; p++) {
    const r = rand();
    if (r < 0.5) {
      data.fill(0, p * pageSize, (p + 1) * pageSize);
      if (r < 0.3) data[p * pageSize + [0, pageSize >> 1, pageSize - 1, Math.floor(rand() * pageSize)][Math.floor(r * 13) % 4]!] = 1 + Math.floor(rand() * 255);
    }
  }
  return data;
}

function detached(): Uint8Array {
  const b = new Uint8Array(4096);
  structuredClone(b.buffer, { transfer: [b.buffer] });
  return b;
}

forEachIsa('hashPages/fingerprintPages/zeroPages', () => {
  it('matches the xxhsum known answers', () => {
    for (const v of vectors.pages) {
      const data = lcg(v.pageSize * v.pages, v.salt);
      if (v.zeroPage >= 0) data.fill(0, v.zeroPage * v.pageSize, (v.zeroPage + 1) * v.pageSize);
      expect(Array.from(hashPages(data, { pageSize: v.pageSize }), hex64), v.name).toEqual(v.xxh3);
      const fp = fingerprintPages(data, { pageSize: v.pageSize });
      expect(Array.from({ length: v.pages }, (_, i) => Buffer.from(fp.subarray(16 * i, 16 * i + 16)).toString('hex')), v.name).toEqual(v.xxh128);
      const zeros = zeroPages(data, { pageSize: v.pageSize });
      expect(Array.from({ length: v.pages }, (_, i) => (zeros[i >> 3]! >> (i & 7)) & 1)).toEqual(Array.from({ length: v.pages }, (_, i) => (i === v.zeroPage ? 1 : 0)));
    }
    for (const w of vectors.whole) expect(hex64(xxh3(lcg(w.length, w.salt))), `length ${w.length}`).toBe(w.xxh3);
  });

  it('matches @node-rs/xxhash page by page, with seeds', () => {
    const rand = rng(20);
    for (const pageSize of [512, 4096, 16384]) {
      for (const n of [0, 1, 3, 17]) {
        const data = mixedPages(rand, n, pageSize);
        for (const seed of [0n, 1n, 0xffffffffffffffffn, BigInt(Math.floor(rand() * 2 ** 52))]) {
          expect(hashPages(data, { pageSize, seed }), `pageSize ${pageSize} n ${n} seed ${seed}`).toEqual(hashPagesRef(data, pageSize, seed));
        }
        expect(same(fingerprintPages(data, { pageSize }), fingerprintPagesRef(data, pageSize))).toBe(true);
        expect(zeroPages(data, { pageSize })).toEqual(zeroPagesRef(data, pageSize));
      }
    }
    expect(hashPages(new Uint8Array(4096), { pageSize: 4096, seed: 7 })).toEqual(hashPagesRef(new Uint8Array(4096), 4096, 7n));
  });

  it('gives the same answers with 1 and 2 threads on a large input', () => {
    const rand = rng(21);
    const pageSize = 4096;
    const n = 1203;
    const data = mixedPages(rand, n, pageSize);
    const want = hashPagesRef(data, pageSize, 99n);
    const wantZero = zeroPagesRef(data, pageSize);
    for (const threads of [1, 2]) {
      expect(hashPages(data, { pageSize, seed: 99n, threads })).toEqual(want);
      expect(zeroPages(data, { pageSize, threads })).toEqual(wantZero);
    }
    expect(same(fingerprintPages(data, { pageSize, threads: 2 }), fingerprintPagesRef(data, pageSize))).toBe(true);
  });

  it('batches of 8 MiB and more (which prefetch pages ahead) hash like the reference, seeded or not, to the last page', () => {
    const rand = rng(22);
    const pageSize = 4096;
    const n = 2051; // 8 MiB and three pages, hashed in one call (threads: 1): the prefetching loop
    const data = mixedPages(rand, n, pageSize);
    for (const seed of [0n, 5n]) {
      const want = hashPagesRef(data, pageSize, seed);
      expect(hashPages(data, { pageSize, seed, threads: 1 })).toEqual(want);
    }
    expect(same(fingerprintPages(data, { pageSize, threads: 1 }), fingerprintPagesRef(data, pageSize))).toBe(true);
  });

  it('hashes whole buffers like @node-rs/xxhash', () => {
    const rand = rng(22);
    for (const len of [0, 1, 16, 17, 128, 129, 240, 241, 1023, 65537]) {
      const data = randomBytes(rand, len);
      expect(xxh3(data)).toBe(rs.xxh64(data));
      expect(xxh3(data, 12345n)).toBe(rs.xxh64(data, 12345n));
    }
  });
});

describe('hash kernels bad input', () => {
  it('rejects lengths that are not whole pages', () => {
    for (const fn of [hashPages, fingerprintPages, zeroPages]) {
      expect(() => fn(new Uint8Array(4097), { pageSize: 4096 })).toThrow(new RangeError('`data` length must be a multiple of `pageSize` (4096), got 4097'));
      expect(() => fn(new Uint8Array(4096), { pageSize: 1000 })).toThrow(new RangeError('`pageSize` must be a power of two from 512 to 1048576, got 1000'));
      expect(() => fn(new Uint8Array(4096), { pageSize: 4096, threads: 1.5 })).toThrow(new RangeError('`threads` must be an integer from 1 to 256, got 1.5'));
    }
  });

  it('rejects bad seeds', () => {
    const d = new Uint8Array(512);
    expect(() => hashPages(d, { pageSize: 512, seed: -1 })).toThrow(new RangeError('`seed` must be an integer from 0 to 2^64 - 1, got -1'));
    expect(() => hashPages(d, { pageSize: 512, seed: 2n ** 64n })).toThrow(new RangeError('`seed` must be an integer from 0 to 2^64 - 1, got 18446744073709551616'));
    expect(() => hashPages(d, { pageSize: 512, seed: 0.5 })).toThrow(new RangeError('`seed` must be an integer from 0 to 2^64 - 1, got 0.5'));
    expect(() => hashPages(d, { pageSize: 512, seed: '1' as never })).toThrow(new TypeError('`seed` must be a bigint or a number, got string "1"'));
    expect(() => xxh3(d, -2n)).toThrow(new RangeError('`seed` must be an integer from 0 to 2^64 - 1, got -2'));
  });

  it('rejects wrong types and detached buffers', () => {
    expect(() => hashPages(new Float64Array(512) as never, { pageSize: 4096 })).toThrow(new TypeError('`data` must be a Uint8Array, got Float64Array'));
    expect(() => zeroPages(new Uint8Array(512), 'x' as never)).toThrow(new TypeError('`options` must be an object, got string "x"'));
    expect(() => xxh3(123 as never)).toThrow(new TypeError('`data` must be a Uint8Array, got number 123'));
    expect(() => fingerprintPages(detached(), { pageSize: 4096 })).toThrow(new TypeError('`data` is detached (its buffer was transferred or its memory closed)'));
  });
});
