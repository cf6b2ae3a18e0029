/**
 * scanBitmap/countBitmap: every ISA path against the bit-by-bit TS reference (sizes around every
 * block and chunk, densities 0-100 %, clustered, unaligned views, bases up to 2^32), the `out`
 * option, and exact errors for hostile inputs.
 */
import { describe, expect, it } from 'vitest';
import { countBitmap, scanBitmap } from '../lib/index.js';
import { forEachIsa } from './each-isa.js';
import { countBitmapRef, scanBitmapRef } from './reference/bitmap.js';
import { clusteredBitmap, randomBitmap, rng } from './reference/random.js';

// Sizes around every block the kernels use: 8-byte words, 32/64-byte SIMD blocks, the 4096-byte
// chunks of the N-API layer, a 512-byte scratch piece.
const SIZES = [0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 128, 129, 511, 512, 513, 4095, 4096, 4097, 3 * 4096 + 17];
const DENSITIES = [0, 0.0001, 0.01, 0.1, 0.5, 0.9, 1];

function detached(): Uint8Array {
  const b = new Uint8Array(64);
  structuredClone(b.buffer, { transfer: [b.buffer] });
  return b;
}

forEachIsa('scanBitmap/countBitmap', () => {
  it('matches the reference at every size and density, at unaligned offsets', () => {
    const rand = rng(1);
    for (const size of SIZES) {
      for (const density of DENSITIES) {
        const offset = Math.floor(rand() * 8);
        const backing = randomBitmap(rand, size + offset, density);
        const bitmap = backing.subarray(offset);
        const want = scanBitmapRef(bitmap);
        expect(scanBitmap(bitmap), `size ${size} density ${density}`).toEqual(want);
        expect(countBitmap(bitmap)).toBe(want.length);
      }
    }
  });

  it('matches the reference on clustered bitmaps and adds base', () => {
    const rand = rng(2);
    for (const size of [100, 5000, 20000]) {
      for (const maxRun of [1, 9, 64, 700]) {
        const bitmap = clusteredBitmap(rand, size, 20, maxRun);
        const base = Math.floor(rand() * 1e6);
        expect(scanBitmap(bitmap, { base })).toEqual(scanBitmapRef(bitmap, base));
        expect(countBitmap(bitmap)).toBe(countBitmapRef(bitmap));
      }
    }
  });

  it('scans a large all-ones bitmap exactly (output growth across chunks)', () => {
    const bitmap = new Uint8Array(9000).fill(0xff);
    bitmap[4500] = 0x7f;
    const got = scanBitmap(bitmap, { base: 3 });
    expect(got).toEqual(scanBitmapRef(bitmap, 3));
    expect(got.length).toBe(72000 - 1);
    // Dense from the middle on: the switch from the sparse buffer to the exact-sized result.
    const mixed = randomBitmap(rng(4), 40000, 0.4);
    mixed.fill(0, 0, 15000);
    expect(scanBitmap(mixed, { base: 11 })).toEqual(scanBitmapRef(mixed, 11));
  });

  it('reaches the top of the 32-bit index space', () => {
    const bitmap = new Uint8Array(16).fill(0x81);
    const base = 2 ** 32 - 128;
    const got = scanBitmap(bitmap, { base });
    expect(got[got.length - 1]).toBe(2 ** 32 - 1);
    expect(got).toEqual(scanBitmapRef(bitmap, base));
  });

  it('writes into `out` and returns the filled part', () => {
    const rand = rng(3);
    for (const size of [10, 700, 5000]) {
      const bitmap = randomBitmap(rand, size, 0.3);
      const want = scanBitmapRef(bitmap, 7);
      const exact = new Uint32Array(want.length);
      expect(scanBitmap(bitmap, { out: exact, base: 7 })).toBe(exact);
      expect(exact).toEqual(want);
      const roomy = new Uint32Array(want.length + 50).fill(0xdeadbeef);
      const got = scanBitmap(bitmap, { out: roomy, base: 7 });
      expect(got.buffer).toBe(roomy.buffer);
      expect(got).toEqual(want);
      expect(roomy.subarray(want.length).every((v) => v === 0xdeadbeef)).toBe(true);
    }
  });

  it('refuses an `out` that is too small and leaves it untouched', () => {
    const bitmap = new Uint8Array(100).fill(1);
    const out = new Uint32Array(99).fill(5);
    expect(() => scanBitmap(bitmap, { out })).toThrow(new RangeError('`out` has room for 99 indices, the bitmap has 100 set bits'));
    expect(out.every((v) => v === 5)).toBe(true);
  });
});

describe('scanBitmap/countBitmap bad input', () => {
  it('names the argument in TypeErrors', () => {
    expect(() => scanBitmap('abc' as never)).toThrow(new TypeError('`bitmap` must be a Uint8Array, got string "abc"'));
    expect(() => scanBitmap(new Uint16Array(4) as never)).toThrow(new TypeError('`bitmap` must be a Uint8Array, got Uint16Array'));
    expect(() => countBitmap(null as never)).toThrow(new TypeError('`bitmap` must be a Uint8Array, got null'));
    expect(() => scanBitmap(new Uint8Array(4), 5 as never)).toThrow(new TypeError('`options` must be an object, got number 5'));
    expect(() => scanBitmap(new Uint8Array(4), { out: new Int32Array(4) as never })).toThrow(
      new TypeError('`out` must be a Uint32Array, got Int32Array'),
    );
    expect(() => scanBitmap(new Uint8Array(4), { base: '1' as never })).toThrow(new TypeError('`base` must be a number, got string "1"'));
  });

  it('rejects bad bases with RangeErrors', () => {
    expect(() => scanBitmap(new Uint8Array(4), { base: -1 })).toThrow(new RangeError('`base` must be an integer from 0 to 4294967295, got -1'));
    expect(() => scanBitmap(new Uint8Array(4), { base: 1.5 })).toThrow(new RangeError('`base` must be an integer from 0 to 4294967295, got 1.5'));
    expect(() => scanBitmap(new Uint8Array(4), { base: 2 ** 32 - 16 })).toThrow(
      new RangeError('`base` + 8 * `bitmap`.length must be at most 4294967296, got 4294967312'),
    );
  });

  it('refuses an `out` that shares memory with the bitmap', () => {
    const shared = new ArrayBuffer(64);
    const bitmap = new Uint8Array(shared, 0, 32).fill(0xff);
    expect(() => scanBitmap(bitmap, { out: new Uint32Array(shared) })).toThrow(new RangeError('`out` must not overlap `bitmap`'));
    expect(bitmap.every((b) => b === 0xff)).toBe(true);
  });

  it('rejects detached buffers', () => {
    expect(() => scanBitmap(detached())).toThrow(new TypeError('`bitmap` is detached (its buffer was transferred or its memory closed)'));
    expect(() => countBitmap(detached())).toThrow(TypeError);
  });

  it('accepts an empty bitmap and a Buffer', () => {
    expect(scanBitmap(new Uint8Array(0))).toEqual(new Uint32Array(0));
    expect(scanBitmap(Buffer.from([0x05]))).toEqual(Uint32Array.of(0, 2));
  });
});
