/**
 * Plain TypeScript references for the hash kernels. XXH3 itself is checked against xxhsum's known
 * answers and the @node-rs/xxhash binding (an independent Rust implementation), page by page.
 */
import { xxh3 } from '@node-rs/xxhash';

export function hashPagesRef(data: Uint8Array, pageSize: number, seed = 0n): BigUint64Array {
  const n = data.length / pageSize;
  const out = new BigUint64Array(n);
  for (let i = 0; i < n; i++) out[i] = xxh3.xxh64(data.subarray(i * pageSize, (i + 1) * pageSize), seed);
  return out;
}

/** XXH3-128 per page as 16 canonical bytes: the 128-bit value big-endian (high half first). */
export function fingerprintPagesRef(data: Uint8Array, pageSize: number): Uint8Array {
  const n = data.length / pageSize;
  const out = new Uint8Array(16 * n);
  for (let i = 0; i < n; i++) {
    const h = xxh3.xxh128(data.subarray(i * pageSize, (i + 1) * pageSize));
    out.set(Buffer.from(h.toString(16).padStart(32, '0'), 'hex'), 16 * i);
  }
  return out;
}

export function zeroPagesRef(data: Uint8Array, pageSize: number): Uint8Array {
  const n = data.length / pageSize;
  const out = new Uint8Array(Math.ceil(n / 8));
  for (let i = 0; i < n; i++) {
    if (data.subarray(i * pageSize, (i + 1) * pageSize).every((b) => b === 0)) out[i >> 3]! |= 1 << (i & 7);
  }
  return out;
}
