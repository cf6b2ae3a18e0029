/**
 * scanBitmap / countBitmap on a 2 MiB bitmap (64 GiB of 4 KiB pages) at several densities,
 * random and clustered, against a TypeScript bit-by-bit loop (the Xen-style baseline), a
 * TypeScript word-skipping loop, and one memcpy of the bitmap (the bandwidth floor), per ISA.
 */
import { countBitmap, scanBitmap, setIsa, supportedIsas, isa } from '../lib/index.js';
import { fmt, measure, type BenchContext } from './harness.js';
import { rng } from '../test/reference/random.js';

export const name = 'bitmap';


/** Each bit set with probability `density` (geometric gaps, so low densities build fast). */
function randomBitmap(bytes: number, density: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const rand = rng(seed);
  const bits = bytes * 8;
  for (let i = Math.floor(Math.log(1 - rand()) / Math.log(1 - density)); i < bits; i += 1 + Math.floor(Math.log(1 - rand()) / Math.log(1 - density))) {
    out[i >> 3]! |= 1 << (i & 7);
  }
  return out;
}

/** About `density` of the bits, in runs of 1 to 128 pages (how guests really dirty memory). */
function clusteredBitmap(bytes: number, density: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const rand = rng(seed);
  const bits = bytes * 8;
  let set = 0;
  while (set < density * bits) {
    const start = Math.floor(rand() * bits);
    const len = 1 + Math.floor(rand() * 128);
    for (let i = start; i < Math.min(bits, start + len); i++) out[i >> 3]! |= 1 << (i & 7);
    set += len;
  }
  return out;
}

function bitLoop(bitmap: Uint8Array): Uint32Array {
  const out: number[] = [];
  const bits = bitmap.length * 8;
  for (let i = 0; i < bits; i++) if (bitmap[i >> 3]! & (1 << (i & 7))) out.push(i);
  return Uint32Array.from(out);
}

function wordLoop(bitmap: Uint8Array): Uint32Array {
  const words = new Uint32Array(bitmap.buffer, bitmap.byteOffset, bitmap.length >> 2);
  const out: number[] = [];
  for (let w = 0; w < words.length; w++) {
    let v = words[w]!;
    while (v !== 0) {
      const low = v & -v;
      out.push(w * 32 + 31 - Math.clz32(low));
      v ^= low;
    }
  }
  return Uint32Array.from(out);
}

export async function run(ctx: BenchContext): Promise<void> {
  const bytes = 2 * 1024 * 1024;
  const cases: { label: string; bitmap: Uint8Array }[] = [
    ...[0.00001, 0.0001, 0.01, 0.1, 0.5].map((d, i) => ({ label: `${+(d * 100).toPrecision(2)}% random`, bitmap: randomBitmap(bytes, d, 100 + i) })),
    { label: '1% clustered', bitmap: clusteredBitmap(bytes, 0.01, 7) },
    { label: '10% clustered', bitmap: clusteredBitmap(bytes, 0.1, 8) },
  ];
  const isas = supportedIsas();
  const start = isa();
  const copyTarget = new Uint8Array(bytes);
  const rows = [];
  for (const c of cases) {
    const bm = Buffer.from(c.bitmap.buffer, c.bitmap.byteOffset, c.bitmap.byteLength);
    const setBits = countBitmap(c.bitmap);
    if (wordLoop(c.bitmap).length !== setBits || bitLoop(c.bitmap).length !== setBits) throw new Error('baseline mismatch');
    const base = await measure(
      {
        bit: () => bitLoop(c.bitmap),
        word: () => wordLoop(c.bitmap),
      },
      { quick: ctx.quick, time: ctx.quick ? 100 : 300 },
    );
    for (const name of isas) {
      setIsa(name);
      const out = new Uint32Array(setBits);
      const r = await measure(
        {
          scan: () => scanBitmap(c.bitmap),
          scanOut: () => scanBitmap(c.bitmap, { out }),
          count: () => countBitmap(c.bitmap),
          // Measured in the same batch as the scans, so the ratio holds under shared load.
          memcpy: () => bm.copy(copyTarget),
        },
        { quick: ctx.quick, time: ctx.quick ? 100 : 300 },
      );
      rows.push({
        case: c.label,
        isa: name,
        'set bits': setBits,
        'TS bit loop µs': fmt.us(base.bit!.timeNs),
        'TS word loop µs': fmt.us(base.word!.timeNs),
        'memcpy µs': fmt.us(r.memcpy!.timeNs),
        'scanBitmap µs': fmt.us(r.scan!.timeNs),
        'scan (out) µs': fmt.us(r.scanOut!.timeNs),
        'count µs': fmt.us(r.count!.timeNs),
        'x vs bit loop': fmt.ratio(base.bit!.timeNs, r.scan!.timeNs),
        'x vs word loop': fmt.ratio(base.word!.timeNs, r.scan!.timeNs),
        'scan / memcpy': fmt.ratio(r.scan!.timeNs, r.memcpy!.timeNs),
      });
    }
  }
  setIsa(start);
  ctx.report({
    family: 'bitmap',
    title: 'scanBitmap on a 2 MiB bitmap (16 Mi pages)',
    rows,
    notes: [
      'x vs bit loop: TS bit-by-bit loop time / scanBitmap time (target at 0.01 %: >= 200x).',
      'scan / memcpy: scanBitmap time / one Buffer.copy of the 2 MiB bitmap (target at 0.01 %: about 1).',
      'scan (out): into a caller-provided Uint32Array (no allocation).',
    ],
  });
}
