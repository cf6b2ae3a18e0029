/**
 * Seeded generators of page pairs (old, new) for the delta tests and benchmark. The kinds follow
 * issue 3 §4: a few words, ~640 bytes in ~10 runs, half the page, a new random page, unchanged,
 * zero, and "realistic": fine-grained changes with a median of ~700 changed bytes per page in
 * many short runs, the way dirty pages of real Linux guests look (counters, flags, pointers and
 * small integers updated in place).
 */

/** xorshift128+-style PRNG over 32-bit state words; deterministic for a seed. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    this.a = seed | 0 || 1;
    this.b = 0x9e3779b9;
    this.c = 0x85ebca6b;
    this.d = 0xc2b2ae35;
    for (let i = 0; i < 16; i++) this.u32();
  }
  /** sfc32 */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }
  float(): number {
    return this.u32() / 4294967296;
  }
  fill(buf: Uint8Array): void {
    for (let i = 0; i < buf.length; i++) buf[i] = this.u32() & 0xff;
  }
}

export type PageKind = 'words' | 'runs640' | 'half' | 'random' | 'unchanged' | 'zero' | 'realistic' | 'counters';
export const PAGE_KINDS: PageKind[] = ['words', 'runs640', 'half', 'random', 'unchanged', 'zero', 'realistic', 'counters'];

/** Fills `page` with plausible memory contents: zeros, small integers, pointers and text. */
export function plausiblePage(rng: Rng, page: Uint8Array): void {
  page.fill(0);
  for (let off = 0; off < page.length; off += 8) {
    const r = rng.int(10);
    if (r < 3) continue; // zero word
    if (r < 5) {
      page[off] = rng.int(256); // small integer
      page[off + 1] = rng.int(4);
    } else if (r < 7) {
      // a kernel-ish pointer: 0xffff8880_xxxxxxxx
      const lo = rng.u32();
      page[off] = lo & 0xf8;
      page[off + 1] = (lo >>> 8) & 0xff;
      page[off + 2] = (lo >>> 16) & 0xff;
      page[off + 3] = rng.int(4);
      page[off + 4] = 0x80;
      page[off + 5] = 0x88;
      page[off + 6] = 0xff;
      page[off + 7] = 0xff;
    } else if (r < 9) {
      for (let i = 0; i < 8; i++) page[off + i] = 0x61 + rng.int(26); // text
    } else {
      for (let i = 0; i < 8; i++) page[off + i] = rng.int(256); // random
    }
  }
}

/** XORs a non-zero byte into page[at] (so that byte is counted as changed). */
function touch(rng: Rng, page: Uint8Array, at: number, small: boolean): void {
  page[at] ^= small ? 1 + rng.int(31) : 1 + rng.int(255);
}

/**
 * Changes `page` in place the way `kind` says; returns nothing. `old` is the previous page
 * contents (already copied into `page`).
 */
export function mutate(rng: Rng, kind: PageKind, page: Uint8Array): void {
  const n = page.length;
  switch (kind) {
    case 'unchanged':
      return;
    case 'zero':
      page.fill(0);
      return;
    case 'random':
      rng.fill(page);
      return;
    case 'half': {
      const start = rng.int(2) * (n >> 1);
      for (let i = start; i < start + (n >> 1); i++) page[i] = rng.int(256);
      return;
    }
    case 'words': {
      const words = 2 + rng.int(4);
      for (let w = 0; w < words; w++) {
        const at = rng.int(n >> 3) << 3;
        for (let i = 0; i < 8; i++) touch(rng, page, at + i, false);
      }
      return;
    }
    case 'runs640': {
      // ~10 runs of ~64 bytes each (~640 bytes)
      const runs = 10;
      const slot = Math.floor(n / runs);
      for (let r = 0; r < runs; r++) {
        const len = 48 + rng.int(33);
        const at = r * slot + rng.int(Math.max(1, slot - len));
        for (let i = 0; i < len && at + i < n; i++) touch(rng, page, at + i, false);
      }
      return;
    }
    case 'counters': {
      // Like 'realistic' but every update is a counter or a nearby pointer: fields of 1-8 bytes
      // whose bytes change by small XOR values (a counter stepping flips its low bits), ~700
      // changed bytes per page. The XOR literals are skewed, as on real guests' pages.
      const target = Math.round(((700 * n) / 4096) * Math.exp(0.4 * (rng.float() - 0.5)));
      let changed = 0;
      while (changed < target) {
        const len = [1, 2, 4, 8][rng.int(4)];
        const at = rng.int(Math.floor(n / len)) * len;
        for (let i = 0; i < len && changed < target; i++) {
          page[at + i] ^= i === 0 ? (2 << rng.int(4)) - 1 : 1 + rng.int(rng.int(4) === 0 ? 255 : 3);
          changed++;
        }
      }
      return;
    }
    case 'realistic': {
      // Target touches: log-normal around 770 per 4 KiB. Overlapping touches make the median
      // number of bytes that actually differ ~700 (checked in test/delta.test.ts).
      const median = (770 * n) / 4096;
      const gauss = Math.sqrt(-2 * Math.log(1 - rng.float())) * Math.cos(2 * Math.PI * rng.float());
      const target = Math.max(8, Math.min(n >> 1, Math.round(median * Math.exp(0.4 * gauss))));
      let changed = 0;
      let guard = 0;
      while (changed < target && guard++ < 100000) {
        // Field updates: mostly 1-8 bytes at natural alignment, some longer copies.
        const r = rng.int(100);
        const len = r < 25 ? 1 : r < 45 ? 2 : r < 65 ? 4 : r < 90 ? 8 : 16 + rng.int(33);
        const align = len >= 8 ? 8 : len;
        const at = rng.int(Math.floor((n - len) / align)) * align;
        // Counters, flags and nearby pointers change by small amounts; copies bring new bytes.
        const small = len <= 8 && rng.int(100) < 60;
        for (let i = 0; i < len; i++) {
          if (page[at + i] === 0 && small && i > 0) continue;
          touch(rng, page, at + i, small);
          changed++;
        }
      }
      return;
    }
  }
}

/** `count` (old, new) page pairs of one kind, laid out as two buffers of count pages. */
export function pagePairs(seed: number, kind: PageKind, count: number, pageSize = 4096): { old: Uint8Array; next: Uint8Array } {
  const rng = new Rng(seed);
  const old = new Uint8Array(count * pageSize);
  const next = new Uint8Array(count * pageSize);
  for (let p = 0; p < count; p++) {
    const o = old.subarray(p * pageSize, (p + 1) * pageSize);
    plausiblePage(rng, o);
    const nx = next.subarray(p * pageSize, (p + 1) * pageSize);
    nx.set(o);
    mutate(rng, kind, nx);
  }
  return { old, next };
}

/** Number of bytes that differ between a and b. */
export function changedBytes(a: Uint8Array, b: Uint8Array): number {
  let c = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) c++;
  return c;
}
