/**
 * Deterministic synthetic guest memory images for store tests and benchmarks: a mix of zero
 * pages, shared "library" pages, text-like compressible pages and random pages, and mutations in
 * the patterns of the workloads (a few words per page, or whole pages).
 */
export type Rng = () => number;

/** xorshift32 */
export function rng(seed: number): Rng {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

/** A page of the shared "OS" set, identical for every seed. */
export function libraryPage(k: number, ps: number): Uint8Array {
  const p = new Uint8Array(ps);
  const r = rng(1_000_003 + k);
  for (let i = 0; i < ps; i += 8) {
    const w = Math.floor(r() * 64);
    p[i] = w; p[i + 1] = (k * 7) & 255; p[i + 3] = w & 3;
  }
  return p;
}

export function makeImage(r: Rng, pages: number, ps: number, opts: { zero?: number; library?: number; text?: number } = {}): Uint8Array {
  const zero = opts.zero ?? 0.3, lib = opts.library ?? 0.3, text = opts.text ?? 0.25;
  const img = new Uint8Array(pages * ps);
  for (let p = 0; p < pages; p++) {
    const x = r();
    const page = img.subarray(p * ps, (p + 1) * ps);
    if (x < zero) continue;
    if (x < zero + lib) page.set(libraryPage(Math.floor(r() * 512), ps));
    else if (x < zero + lib + text) for (let i = 0; i < ps; i++) page[i] = 97 + Math.floor(r() * 6);
    else for (let i = 0; i < ps; i++) page[i] = Math.floor(r() * 256);
  }
  return img;
}

/** Changes `count` distinct pages; returns their numbers ascending. */
export function mutate(r: Rng, img: Uint8Array, ps: number, count: number, how: 'sparse' | 'whole'): Uint32Array {
  const pages = img.byteLength / ps;
  const set = new Set<number>();
  while (set.size < Math.min(count, pages)) set.add(Math.floor(r() * pages));
  const pfns = Uint32Array.from([...set].sort((a, b) => a - b));
  for (const p of pfns) {
    const page = img.subarray(p * ps, (p + 1) * ps);
    if (how === 'whole') for (let i = 0; i < ps; i++) page[i] = Math.floor(r() * 256);
    else for (let k = 0; k < 4; k++) {
      const o = Math.floor(r() * (ps / 8)) * 8;
      for (let i = 0; i < 8; i++) page[o + i] = Math.floor(r() * 256);
    }
  }
  return pfns;
}
