/**
 * Plain TypeScript references for the bitmap kernels: one bit at a time, as obvious as possible.
 */
export function scanBitmapRef(bitmap: Uint8Array, base = 0): Uint32Array {
  const out: number[] = [];
  for (let i = 0; i < bitmap.length * 8; i++) {
    if ((bitmap[i >> 3]! >> (i & 7)) & 1) out.push(base + i);
  }
  return Uint32Array.from(out);
}

export function countBitmapRef(bitmap: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bitmap.length * 8; i++) n += (bitmap[i >> 3]! >> (i & 7)) & 1;
  return n;
}
