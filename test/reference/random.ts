/**
 * Seeded pseudo-random inputs for the kernel tests (mulberry32), so a failure can be replayed.
 */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 256) | 0;
  return out;
}

/** A bitmap of `bytes` bytes with each bit set with probability `density`. */
export function randomBitmap(rand: () => number, bytes: number, density: number): Uint8Array {
  const out = new Uint8Array(bytes);
  if (density >= 1) return out.fill(0xff);
  for (let i = 0; i < bytes * 8; i++) if (rand() < density) out[i >> 3]! |= 1 << (i & 7);
  return out;
}

/** A bitmap with `runs` runs of set bits, each up to `maxRun` bits long. */
export function clusteredBitmap(rand: () => number, bytes: number, runs: number, maxRun: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const bits = bytes * 8;
  for (let r = 0; r < runs && bits > 0; r++) {
    const start = Math.floor(rand() * bits);
    const len = 1 + Math.floor(rand() * maxRun);
    for (let i = start; i < Math.min(bits, start + len); i++) out[i >> 3]! |= 1 << (i & 7);
  }
  return out;
}
