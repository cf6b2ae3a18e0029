/**
 * Test-only stand-in for the native kernels (same contract, plain TypeScript), used through
 * vi.mock until the kernels land on main. Never imported by lib/.
 */
import { xxh3 } from '@node-rs/xxhash';

export function fingerprintPages(data: Uint8Array, { pageSize }: { pageSize: number }): Uint8Array {
  const n = data.byteLength / pageSize;
  const out = new Uint8Array(n * 16);
  const v = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    const h = xxh3.xxh128(data.subarray(i * pageSize, (i + 1) * pageSize));
    v.setBigUint64(i * 16, h & 0xffffffffffffffffn, true);
    v.setBigUint64(i * 16 + 8, h >> 64n, true);
  }
  return out;
}

export function zeroPages(data: Uint8Array, { pageSize }: { pageSize: number }): Uint8Array {
  const n = data.byteLength / pageSize;
  const out = new Uint8Array((n + 7) >> 3);
  for (let i = 0; i < n; i++) {
    let z = true;
    for (let j = i * pageSize; j < (i + 1) * pageSize; j++) if (data[j] !== 0) { z = false; break; }
    if (z) out[i >> 3]! |= 1 << (i & 7);
  }
  return out;
}

export function scanBitmap(bm: Uint8Array): Uint32Array {
  const r: number[] = [];
  for (let i = 0; i < bm.length * 8; i++) if (bm[i >> 3]! & (1 << (i & 7))) r.push(i);
  return Uint32Array.from(r);
}

export function gatherPages(memory: Uint8Array, pfns: Uint32Array, { pageSize }: { pageSize: number }): Uint8Array {
  const out = new Uint8Array(pfns.length * pageSize);
  pfns.forEach((p, i) => out.set(memory.subarray(p * pageSize, (p + 1) * pageSize), i * pageSize));
  return out;
}

export function scatterPages(memory: Uint8Array, pfns: Uint32Array, pages: Uint8Array, { pageSize }: { pageSize: number }): void {
  pfns.forEach((p, i) => memory.set(pages.subarray(i * pageSize, (i + 1) * pageSize), p * pageSize));
}

// delta: u32 length, then (u32 offset, u32 len, bytes)* of XOR runs
export function encodeDelta(prev: Uint8Array, next: Uint8Array): Uint8Array {
  const parts: number[] = [];
  const n = next.length;
  const out: number[] = [];
  const push32 = (x: number) => out.push(x & 255, (x >> 8) & 255, (x >> 16) & 255, (x >>> 24) & 255);
  push32(n);
  let i = 0;
  while (i < n) {
    if (prev[i] === next[i]) { i++; continue; }
    let j = i;
    while (j < n && prev[j] !== next[j]) j++;
    push32(i); push32(j - i);
    for (let k = i; k < j; k++) out.push(prev[k]! ^ next[k]!);
    i = j;
  }
  void parts;
  return Uint8Array.from(out);
}

export function applyDelta(target: Uint8Array, delta: Uint8Array): void {
  const v = new DataView(delta.buffer, delta.byteOffset, delta.byteLength);
  if (delta.length < 4 || v.getUint32(0, true) !== target.length) throw new RangeError('`delta` does not fit `target`');
  let o = 4;
  const ops: [number, number, number][] = [];
  while (o < delta.length) {
    if (o + 8 > delta.length) throw new RangeError('`delta` is truncated');
    const off = v.getUint32(o, true), len = v.getUint32(o + 4, true);
    o += 8;
    if (off + len > target.length || o + len > delta.length) throw new RangeError('`delta` is corrupt');
    ops.push([off, len, o]);
    o += len;
  }
  for (const [off, len, at] of ops) for (let k = 0; k < len; k++) target[off + k]! ^= delta[at + k]!;
}
