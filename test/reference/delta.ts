/**
 * Plain TypeScript reference of the delta codec's first stage (docs/FORMAT.md): XOR-RLE and XBM
 * page bodies, the delta container and the page frame, encoder and decoder. Byte for byte what
 * the native code produces with `compress: false`; the decoder accepts every kind (lz4 blocks
 * through its own small lz4 block decoder). Written for clarity, not speed.
 */
import { xxh3 } from '@node-rs/xxhash';

export const KIND = {
  SAME: 0,
  ZERO: 1,
  XRLE: 2,
  RAW: 3,
  XRLE_LZ4: 4,
  RAW_LZ4: 5,
  XRLE_HUF: 6,
  XRLE_HUF_TABLE: 7,
  XBM: 8,
  XBM_HUF: 9,
  XBM_HUF_TABLE: 10,
  XBM_LZ4: 11,
  XBM_HUF_OWN: 12,
} as const;

function varint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/**
 * The literal runs of the canonical XRLE rule for `x` (docs/FORMAT.md, "Canonical encoder", rule
 * 2): maximal runs of non-zero bytes, a gap of exactly one zero byte between two non-zero bytes
 * kept inside the literal. Each run is [start, end).
 */
export function literalRuns(x: Uint8Array): [number, number][] {
  const n = x.length;
  const runs: [number, number][] = [];
  let i = 0;
  while (i < n) {
    while (i < n && x[i] === 0) i++;
    if (i >= n) break;
    const start = i;
    let end = i;
    for (;;) {
      while (end < n && x[end] !== 0) end++;
      // A single zero byte between two non-zero bytes stays inside the literal.
      if (end + 1 < n && x[end + 1] !== 0) {
        end++;
        continue;
      }
      break;
    }
    runs.push([start, end]);
    i = end;
  }
  return runs;
}

/**
 * The XRLE token stream of `x` for its literal `runs` (see {@link literalRuns}); it stops once it
 * reaches `x.length` bytes (the caller then chooses RAW).
 */
function xrleStream(x: Uint8Array, runs: [number, number][]): number[] {
  const out: number[] = [];
  let pos = 0;
  for (const [start, end] of runs) {
    const skip = start - pos;
    const len = end - start;
    out.push(((len < 16 ? len : 0) << 4) | (skip < 15 ? skip : 15));
    if (skip >= 15) varint(out, skip - 15);
    if (len >= 16) varint(out, len - 16);
    for (let k = start; k < end; k++) out.push(x[k]);
    pos = end;
    if (out.length >= x.length) break;
  }
  return out;
}

/** The repeat distances (in 8-byte words) the canonical encoder chooses from (docs/FORMAT.md, "XBM"). */
export const REPEAT_DISTANCES = [1, 2, 4, 8];

/** The 8-byte word `w` of `x` as a bigint. */
function wordOf(x: Uint8Array, w: number): bigint {
  let v = 0n;
  for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(x[8 * w + k]);
  return v;
}

/**
 * The repeat distance the canonical encoder gives `x` (docs/FORMAT.md, "XBM", frames of version
 * 5): of 1, 2, 4 and 8, the one with the most non-zero words equal to the word that many words
 * before them, the smallest on a tie; 0 if no word repeats.
 */
export function repeatDistance(x: Uint8Array): number {
  let best = 0;
  let bestCount = 0;
  for (const d of REPEAT_DISTANCES) {
    let count = 0;
    for (let w = d; w < x.length / 8; w++) {
      const v = wordOf(x, w);
      if (v !== 0n && v === wordOf(x, w - d)) count++;
    }
    if (count > bestCount) {
      best = d;
      bestCount = count;
    }
  }
  return best;
}

/**
 * The XBM body of `x` (docs/FORMAT.md, "XBM"): line mask (n/512 bytes), then for each set line a
 * word mask and a byte mask per set word, then the non-zero bytes of `x` in order. `x.length`
 * must be a multiple of 512. With `repeats` (frames of version 5) the body starts with the
 * repeat distance d of {@link repeatDistance}, and a word equal to the word d before it gets a
 * byte mask of 0 and no literals.
 */
export function xbmBody(x: Uint8Array, repeats = false): Uint8Array {
  const n = x.length;
  const d = repeats ? repeatDistance(x) : 0;
  const lineMask = new Uint8Array(n / 512);
  const masks: number[] = [];
  const literals: number[] = [];
  for (let line = 0; line < n / 64; line++) {
    let wordMask = 0;
    const byteMasks: number[] = [];
    for (let word = 0; word < 8; word++) {
      const w = 8 * line + word;
      const v = wordOf(x, w);
      if (v === 0n) continue;
      wordMask |= 1 << word;
      if (d !== 0 && w >= d && v === wordOf(x, w - d)) {
        byteMasks.push(0);
        continue;
      }
      let byteMask = 0;
      for (let k = 0; k < 8; k++) {
        const b = x[8 * w + k];
        if (b !== 0) {
          byteMask |= 1 << k;
          literals.push(b);
        }
      }
      byteMasks.push(byteMask);
    }
    if (wordMask === 0) continue;
    lineMask[line >> 3] |= 1 << (line & 7);
    masks.push(wordMask, ...byteMasks);
  }
  return Uint8Array.from([...(repeats ? [d] : []), ...lineMask, ...masks, ...literals]);
}

/** Options of {@link encodeBody}. */
export interface EncodeBodyOptions {
  /**
   * Allow XBM (kind 8) for a buffer whose length is a multiple of 512, as `encodePages` does
   * (with the repeat distance of frames of version 5); default false, as `encodeDelta` (kinds
   * 0-3 only).
   */
  xbm?: boolean;
}

/** First-stage encoding of one buffer: kind and body. */
export function encodeBody(prev: Uint8Array, next: Uint8Array, opts: EncodeBodyOptions = {}): { kind: number; body: Uint8Array } {
  const n = next.length;
  let same = true;
  let zero = true;
  for (let i = 0; i < n; i++) {
    if (prev[i] !== next[i]) same = false;
    if (next[i] !== 0) zero = false;
  }
  if (same) return { kind: KIND.SAME, body: new Uint8Array(0) };
  if (zero) return { kind: KIND.ZERO, body: new Uint8Array(0) };
  const x = new Uint8Array(n);
  for (let i = 0; i < n; i++) x[i] = prev[i] ^ next[i];
  const runs = literalRuns(x);
  if (opts.xbm && n % 512 === 0) {
    // XBM when its body S is shorter than the page and 4S < 4F + 7R (F literal bytes, R runs of
    // the XRLE rule): docs/FORMAT.md, "Canonical encoder", rule 3. Frame pages are 512 B or more.
    // S is the body with its repeats (the repeat distance byte, no literals for repeated words).
    const body = xbmBody(x, true);
    const S = body.length;
    const F = runs.reduce((sum, [start, end]) => sum + end - start, 0);
    const R = runs.length;
    if (S < n && 4 * S < 4 * F + 7 * R) return { kind: KIND.XBM, body };
  }
  const out = xrleStream(x, runs);
  if (out.length >= n) return { kind: KIND.RAW, body: next.slice() };
  return { kind: KIND.XRLE, body: Uint8Array.from(out) };
}

/**
 * Bytes of masks at the start of an XBM body of an n-byte page (the repeat distance with
 * `repeats`, line mask, then per set line its word mask and byte masks).
 */
export function xbmMaskLength(body: Uint8Array, n: number, repeats = false): number {
  const r = repeats ? 1 : 0;
  let p = r + n / 512;
  for (let i = 0; i < n / 512; i++) {
    for (let bit = 0; bit < 8; bit++) {
      if ((body[r + i] >> bit) & 1) p += 1 + popcount8(body[p]);
    }
  }
  return p;
}

function popcount8(v: number): number {
  let c = 0;
  for (; v !== 0; v &= v - 1) c++;
  return c;
}

/** An lz4 length field beyond its token nibble (`v` less the nibble's base), as in lz4's block format. */
function lz4Length(out: number[], v: number): void {
  if (v < 15) return;
  for (v -= 15; v >= 255; v -= 255) out.push(255);
  out.push(v);
}

/**
 * The lz4 block our encoder writes for an XBM body (native/kernels/delta/lz4_block.cc): greedy
 * matches found through a hash of 4 bytes, looked for in the masks only (within their first
 * 65535 bytes), the literals stored as the last literal run; lz4's end rules (the last 5 bytes
 * literals, no match starting in the last 12). Written to be compared byte for byte.
 */
export function lz4BlockMasksRef(masks: Uint8Array, lits: Uint8Array): Uint8Array {
  const out: number[] = [];
  const sequence = (from: number, to: number, offset: number, length: number) => {
    const ll = to - from;
    const ml = length - 4;
    out.push((Math.min(ll, 15) << 4) | Math.min(ml, 15));
    lz4Length(out, ll);
    for (let i = from; i < to; i++) out.push(masks[i]);
    out.push(offset & 0xff, offset >> 8);
    lz4Length(out, ml);
  };
  // The end rules of a block of the masks alone (no match ends in their last 5 bytes or starts in
  // their last 12), whatever literals follow: so the masks' sequences are the same with or without
  // them (kinds 11 and 12 share one match pass).
  const matchEnd = Math.min(Math.max(masks.length - 5, 0), 65535);
  const startEnd = Math.max(masks.length - 12, 0);
  let anchor = 0;
  if (matchEnd >= 8) {
    let bits = 8;
    while (bits < 12 && 1 << bits < matchEnd) bits++;
    const table = new Map<number, number>(); // hash -> last position with it
    const word = (i: number) => (masks[i] | (masks[i + 1] << 8) | (masks[i + 2] << 16) | (masks[i + 3] << 24)) >>> 0;
    const hash = (v: number) => Math.imul(v, 2654435761 | 0) >>> (32 - bits);
    let ip = 0;
    let misses = 64;
    while (ip + 4 <= matchEnd && ip < startEnd) {
      const v = word(ip);
      const h = hash(v);
      const c = table.get(h);
      table.set(h, ip);
      if (c === undefined || word(c) !== v) {
        ip += misses >> 6;
        misses++;
        continue;
      }
      let cand = c;
      let ml = 4;
      while (ip + ml < matchEnd && masks[ip + ml] === masks[cand + ml]) ml++;
      while (ip > anchor && cand > 0 && masks[ip - 1] === masks[cand - 1]) {
        ip--;
        cand--;
        ml++;
      }
      sequence(anchor, ip, ip - cand, ml);
      ip += ml;
      anchor = ip;
      misses = 64;
      if (ip + 2 <= matchEnd) table.set(hash(word(ip - 2)), ip - 2);
    }
  }
  const ll = masks.length - anchor + lits.length;
  out.push(Math.min(ll, 15) << 4);
  lz4Length(out, ll);
  for (let i = anchor; i < masks.length; i++) out.push(masks[i]);
  for (const b of lits) out.push(b);
  return Uint8Array.from(out);
}

/**
 * The XBM+LZ4 body (kind 11) the encoder makes of an XBM body of an n-byte page without the
 * Huffman stage (docs/FORMAT.md, "Canonical encoder", rule 5): varint of the body length, then
 * the block of {@link lz4BlockMasksRef}, when the body is at least max(96, n/16) bytes and the
 * result saves at least 1/16 of it; else null (the page stays kind 8).
 */
export function xbmLz4Ref(body: Uint8Array, n: number, repeats = false): Uint8Array | null {
  const len = body.length;
  if (len < Math.max(96, Math.floor(n / 16))) return null;
  const t = xbmMaskLength(body, n, repeats);
  const head: number[] = [];
  varint(head, len);
  const block = lz4BlockMasksRef(body.subarray(0, t), body.subarray(t));
  if (head.length + block.length > len - Math.floor(len / 16)) return null;
  return Uint8Array.from([...head, ...block]);
}

function u32le(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}
function u64le(v: bigint): number[] {
  const out: number[] = [];
  for (let i = 0n; i < 8n; i++) out.push(Number((v >> (8n * i)) & 0xffn));
  return out;
}

/** The delta container of encodeDelta with `compress: false`. */
export function encodeDeltaRef(prev: Uint8Array, next: Uint8Array): Uint8Array {
  const { kind, body } = encodeBody(prev, next);
  const head = [0x55, 0x44, 0x4c, 0x54, 1, kind, 0, 0, ...u32le(next.length), ...u32le(body.length)];
  const sum = xxh3.xxh64(Buffer.concat([Uint8Array.from(head), body]));
  return Uint8Array.from([...head, ...u64le(sum), ...body]);
}

/**
 * The page frame of encodePages with `compress: false`; updates `shadow` like the native one.
 * Pages may be XBM (kind 8, with a repeat distance); the frame is then version 5, else version 1.
 */
export function encodePagesRef(shadow: Uint8Array, pages: Uint8Array, pfns: Uint32Array, pageSize = 4096): Uint8Array {
  const index: number[] = [];
  const bodies: Uint8Array[] = [];
  let version = 1;
  for (let i = 0; i < pfns.length; i++) {
    const prev = shadow.subarray(pfns[i] * pageSize, (pfns[i] + 1) * pageSize);
    const next = pages.subarray(i * pageSize, (i + 1) * pageSize);
    const { kind, body } = encodeBody(prev, next, { xbm: true });
    if (kind === KIND.XBM) version = 5;
    prev.set(next);
    index.push(...u32le(pfns[i]), kind, body.length & 0xff, (body.length >> 8) & 0xff, (body.length >> 16) & 0xff);
    bodies.push(body);
  }
  const after = Buffer.concat([Uint8Array.from(index), ...bodies]);
  const payload = after.length - index.length;
  const head = [
    0x55, 0x44, 0x50, 0x46, version, 0, Math.log2(pageSize), 0,
    ...u32le(pfns.length), 0, 0, 0, 0,
    ...u64le(BigInt(payload)),
    ...u64le(xxh3.xxh64(after)),
  ];
  return Uint8Array.from([...head, ...after]);
}

/**
 * Applies a page body of any kind but the Huffman ones that use a frame's tables (6, 7, 9, 10:
 * see applyFrameRef) to `target`; XBM kinds need a length that is a multiple of 512. Throws a
 * RangeError on anything malformed, before writing. `fromLz4`: an XRLE stream out of a kind-4
 * block, which may be as long as the page. `repeats`: XBM bodies start with a repeat distance
 * (frames of version 5).
 */
export function applyBodyRef(target: Uint8Array, kind: number, body: Uint8Array, fromLz4 = false, repeats = false): void {
  const n = target.length;
  if ((kind === KIND.SAME || kind === KIND.ZERO) && body.length !== 0) throw new RangeError('SAME/ZERO with a body');
  if (kind === KIND.SAME) return;
  if (kind === KIND.ZERO) {
    target.fill(0);
    return;
  }
  if (kind === KIND.RAW) {
    if (body.length !== n) throw new RangeError('RAW length');
    target.set(body);
    return;
  }
  if (kind === KIND.XBM) {
    applyXbmRef(target, body, undefined, repeats);
    return;
  }
  if (kind === KIND.XBM_LZ4) {
    if (body.length < 1 || body.length >= n) throw new RangeError('XBM+LZ4 body length out of range');
    const xbm = lz4BodyRef(body, n);
    if (xbm.length >= n) throw new RangeError('XBM+LZ4 decompresses to a body as long as the page');
    applyXbmRef(target, xbm, undefined, repeats);
    return;
  }
  if (kind === KIND.XBM_HUF_OWN) {
    const { xbm, masks } = xbmHufOwnRef(body, n);
    applyXbmRef(target, xbm, masks, repeats);
    return;
  }
  if (kind === KIND.RAW_LZ4) {
    if (body.length < 1 || body.length >= n) throw new RangeError('RAW+LZ4 body length out of range');
    target.set(lz4DecompressRef(body, n));
    return;
  }
  if (kind === KIND.XRLE_LZ4) {
    if (body.length < 1 || body.length >= n) throw new RangeError('XRLE+LZ4 body length out of range');
    applyBodyRef(target, KIND.XRLE, lz4BodyRef(body, n), true);
    return;
  }
  if (kind !== KIND.XRLE) throw new RangeError(`unsupported kind ${kind}`);
  // An XRLE stream from an lz4 block (kind 4) may take the whole page; a kind-2 body may not.
  if (body.length < 1 || body.length > n || (body.length === n && !fromLz4)) throw new RangeError('XRLE body length out of range');
  const out = target.slice();
  forEachLiteral(body, n, (pos, len, at) => {
    for (let k = 0; k < len; k++) out[pos + k] ^= body[at + k];
  });
  target.set(out);
}

/**
 * Applies an XBM body (docs/FORMAT.md, "XBM (kind 8)") to `target` (n bytes, n a multiple of
 * 512). Every check comes before the first write: body of 1 to n - 1 bytes, no mask past the
 * end of the body, no word or byte mask of 0 (with `repeats`: a byte mask of 0 only where the
 * repeat distance d, 1 to 64, points at a set word), exactly one literal byte per set byte-mask
 * bit and, with `maskLength` (the decoded mask string of kinds 9, 10, 12), masks ending exactly
 * there.
 */
export function applyXbmRef(target: Uint8Array, body: Uint8Array, maskLength?: number, repeats = false): void {
  const n = target.length;
  if (n % 512 !== 0) throw new RangeError(`XBM needs a length that is a multiple of 512, got ${n}`);
  if (body.length < 1 || body.length >= n) throw new RangeError(`XBM body length ${body.length} out of range (1 to ${n - 1})`);
  const r = repeats ? 1 : 0;
  const d = repeats ? body[0] : 0;
  if (d > 64) throw new RangeError(`XBM repeat distance ${d} out of range (0 to 64)`);
  let at = r + n / 512; // the line mask is body[r .. r + n/512)
  if (at > body.length) throw new RangeError('XBM masks run past the body');
  const positions: number[] = [];
  // The repeated words in order, [word, the word it repeats]; the others' literal positions.
  const copies: [number, number][] = [];
  const isSet = new Set<number>();
  for (let line = 0; line < n / 64; line++) {
    if (((body[r + (line >> 3)] >> (line & 7)) & 1) === 0) continue;
    if (at >= body.length) throw new RangeError('XBM masks run past the body');
    const wordMask = body[at++];
    if (wordMask === 0) throw new RangeError(`XBM word mask of 0 (line ${line})`);
    for (let word = 0; word < 8; word++) {
      if (((wordMask >> word) & 1) === 0) continue;
      if (at >= body.length) throw new RangeError('XBM masks run past the body');
      const w = 8 * line + word;
      const byteMask = body[at++];
      if (byteMask === 0) {
        if (d === 0) throw new RangeError(`XBM byte mask of 0 (line ${line}, word ${word})`);
        if (!isSet.has(w - d)) throw new RangeError(`XBM repeat of word ${w - d}, which is not set (line ${line}, word ${word})`);
        copies.push([w, w - d]);
      } else {
        for (let k = 0; k < 8; k++) if ((byteMask >> k) & 1) positions.push(8 * w + k);
      }
      isSet.add(w);
    }
  }
  if (maskLength !== undefined && at !== maskLength) throw new RangeError(`XBM mask string is ${at} bytes, its length says ${maskLength}`);
  const left = body.length - at;
  if (left < positions.length) throw new RangeError(`XBM literals missing (${positions.length} expected, ${left} present)`);
  if (left > positions.length) throw new RangeError(`XBM literal bytes left over (${positions.length} expected, ${left} present)`);
  // The XOR of every set word, then applied.
  const x = new Uint8Array(n);
  for (let i = 0; i < positions.length; i++) x[positions[i]] = body[at + i];
  for (const [w, from] of copies) x.copyWithin(8 * w, 8 * from, 8 * from + 8);
  for (let i = 0; i < n; i++) target[i] ^= x[i];
}

/**
 * Walks an XRLE token stream for a buffer of `n` bytes: `visit(pos, len, at)` for each literal
 * run of `len` bytes landing at `pos`, its bytes at `body[at ..]`. Throws on anything malformed.
 */
export function forEachLiteral(body: Uint8Array, n: number, visit: (pos: number, len: number, at: number) => void): void {
  const at = { i: 0 };
  let pos = 0;
  while (at.i < body.length) {
    const t = body[at.i++];
    let skip = t & 15;
    let len = t >> 4;
    if (skip === 15) skip = 15 + readVarint(body, at);
    if (len === 0) len = 16 + readVarint(body, at);
    pos += skip;
    if (pos + len > n || at.i + len > body.length) throw new RangeError('out of range');
    visit(pos, len, at.i);
    at.i += len;
    pos += len;
  }
}

/**
 * Reads a LEB128 varint (at most 5 bytes, below 2^32) from `buf` at `at.i` and advances it;
 * pushes the bytes read to `copy` if given. Throws when it is cut off or too long.
 */
export function readVarint(buf: Uint8Array, at: { i: number }, copy?: number[]): number {
  let v = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (at.i >= buf.length) throw new RangeError('truncated varint');
    const b = buf[at.i++];
    copy?.push(b);
    v += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) {
      if (v > 0xffffffff) throw new RangeError('varint above 2^32');
      return v;
    }
  }
  throw new RangeError('varint longer than 5 bytes');
}

/**
 * Decodes a Huffman-coded byte stream (docs/FORMAT.md, "XRLE+HUF"): `table` holds 256 code
 * lengths of 4 bits (symbol 2i in the low nibble of byte i), codes are canonical and read least
 * significant bit first. Exactly `count` symbols; only zero padding may follow in the last byte.
 */
export function huffmanDecodeRef(table: Uint8Array, bits: Uint8Array, count: number): Uint8Array {
  const len: number[] = [];
  for (let i = 0; i < 128; i++) len.push(table[i] & 15, table[i] >> 4);
  if (len.some((l) => l > 11)) throw new RangeError('code longer than 11 bits');
  // Canonical codes: by length, then by symbol; a code is a string of bits, first bit first.
  const codes = new Map<string, number>();
  let code = 0;
  let kraft = 0;
  for (let l = 1; l <= 11; l++) {
    for (let s = 0; s < 256; s++) {
      if (len[s] !== l) continue;
      codes.set(code.toString(2).padStart(l, '0'), s);
      code++;
      kraft += 2 ** (11 - l);
    }
    code <<= 1;
  }
  if (kraft === 0 || kraft > 2048) throw new RangeError('empty or over-subscribed table');
  const out = new Uint8Array(count);
  let bit = 0;
  for (let i = 0; i < count; i++) {
    let word = '';
    for (;;) {
      if (bit >= bits.length * 8) throw new RangeError('truncated');
      word += (bits[bit >> 3] >> (bit & 7)) & 1;
      bit++;
      const s = codes.get(word);
      if (s !== undefined) {
        out[i] = s;
        break;
      }
      if (word.length >= 11) throw new RangeError('code not in table');
    }
  }
  if (Math.ceil(bit / 8) !== bits.length) throw new RangeError('bytes left over');
  for (; bit < bits.length * 8; bit++) if ((bits[bit >> 3] >> (bit & 7)) & 1) throw new RangeError('non-zero padding');
  return out;
}

/**
 * How many kinds a frame of each version may hold: 1 (kinds 0-5), 2 (0-7), 3 (0-11), 4 (0-12),
 * 5 (0-12, XBM bodies with a repeat distance).
 */
export const FRAME_KINDS: Record<number, number> = { 1: 6, 2: 8, 3: 12, 4: 13, 5: 13 };

/**
 * Decompresses an lz4 block (lz4's block format: sequences of a token, literal length, literals,
 * a 16-bit little-endian offset and a match length; the last sequence has literals only) that
 * must give exactly `size` bytes. Throws a RangeError on anything malformed.
 */
export function lz4DecompressRef(block: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let ip = 0;
  let op = 0;
  const length = (base: number): number => {
    let v = base;
    if (base === 15) {
      for (;;) {
        if (ip >= block.length) throw new RangeError('lz4: length runs past the block');
        const b = block[ip++];
        v += b;
        if (b !== 255) break;
      }
    }
    return v;
  };
  for (;;) {
    if (ip >= block.length) throw new RangeError('lz4: block ends without a last sequence');
    const token = block[ip++];
    const lit = length(token >> 4);
    if (lit > block.length - ip || lit > size - op) throw new RangeError('lz4: literals run past the block or the output');
    out.set(block.subarray(ip, ip + lit), op);
    ip += lit;
    op += lit;
    if (ip === block.length) break; // the last sequence: literals only
    if (block.length - ip < 2) throw new RangeError('lz4: offset cut off');
    const offset = block[ip] | (block[ip + 1] << 8);
    ip += 2;
    if (offset === 0 || offset > op) throw new RangeError('lz4: offset out of range');
    const match = length(token & 15) + 4;
    if (match > size - op) throw new RangeError('lz4: match runs past the output');
    for (let k = 0; k < match; k++, op++) out[op] = out[op - offset]; // may overlap: byte by byte
  }
  if (op !== size) throw new RangeError('lz4: block gives fewer bytes than its length says');
  return out;
}

/** An XRLE+LZ4 or XBM+LZ4 body (varint m, then an lz4 block of exactly m bytes): the m bytes. */
function lz4BodyRef(body: Uint8Array, n: number): Uint8Array {
  const at = { i: 0 };
  const m = readVarint(body, at);
  if (m < 1 || m > n) throw new RangeError('lz4 length out of range');
  return lz4DecompressRef(body.subarray(at.i), m);
}

/**
 * Decodes a kind-12 body (docs/FORMAT.md, "XBM+HUF with its own code"): the XBM body it stands
 * for, and its mask length. Checks everything the format asks before returning.
 */
export function xbmHufOwnRef(body: Uint8Array, n: number): { xbm: Uint8Array; masks: number } {
  if (body.length < 1 || body.length >= n) throw new RangeError('XBM+HUF body length out of range');
  const at = { i: 0 };
  const t = readVarint(body, at);
  const l = readVarint(body, at);
  const c = readVarint(body, at);
  const b = readVarint(body, at);
  if (t < 1 || l < 1 || t + l >= n) throw new RangeError('XBM+HUF string lengths out of range');
  if (c < 1 || c > t) throw new RangeError('XBM+HUF stored mask length out of range');
  if (body.length - at.i < 32) throw new RangeError('code table truncated');
  const used: number[] = [];
  for (let s = 0; s < 256; s++) if ((body[at.i + (s >> 3)] >> (s & 7)) & 1) used.push(s);
  at.i += 32;
  if (used.length === 0) throw new RangeError('code table empty');
  const nib = Math.ceil(used.length / 2);
  if (body.length - at.i < nib) throw new RangeError('code table truncated');
  // The kind 6/7 table layout (256 lengths of 4 bits), so huffmanDecodeRef reads it.
  const table = new Uint8Array(128);
  used.forEach((s, k) => {
    const v = (body[at.i + (k >> 1)] >> ((k & 1) * 4)) & 15;
    if (v < 1 || v > 11) throw new RangeError('code length out of range');
    table[s >> 1] |= v << ((s & 1) * 4);
  });
  if (used.length % 2 === 1 && body[at.i + (used.length >> 1)] >> 4 !== 0) throw new RangeError('table padding not zero');
  at.i += nib;
  if (c > body.length - at.i) throw new RangeError('masks past the body');
  const stored = body.subarray(at.i, at.i + c);
  at.i += c;
  if (b > body.length - at.i) throw new RangeError('literal stream past the body');
  const masks = c === t ? stored : lz4DecompressRef(stored, t);
  const h1 = Math.ceil(l / 2);
  const s1 = huffmanDecodeRef(table, body.subarray(at.i, at.i + b), h1);
  const s2 = huffmanDecodeRef(table, body.subarray(at.i + b), l - h1);
  return { xbm: Uint8Array.from([...masks, ...s1, ...s2]), masks: t };
}

/**
 * Decodes the two Huffman streams of a kind-6 or kind-9 body (for kind 7 or 10: the body after
 * its tables) with `tables` (token table, then literal table): the token (or XBM mask) bytes and
 * the literal bytes. Checks the body length (1 to n - 1), T, L and B, and both streams.
 */
function huffmanUnpackRef(body: Uint8Array, tables: Uint8Array, n: number): { toks: Uint8Array; lits: Uint8Array } {
  if (body.length === 0 || body.length >= n) throw new RangeError('body length');
  const head = { i: 0 };
  const tokLen = readVarint(body, head);
  const litLen = readVarint(body, head);
  const tokBytes = readVarint(body, head);
  if (tokLen < 1 || litLen < 1 || tokLen + litLen >= n) throw new RangeError('stream lengths');
  if (tokBytes > body.length - head.i) throw new RangeError('token stream past the body');
  const toks = huffmanDecodeRef(tables.subarray(0, 128), body.subarray(head.i, head.i + tokBytes), tokLen);
  const lits = huffmanDecodeRef(tables.subarray(128, 256), body.subarray(head.i + tokBytes), litLen);
  return { toks, lits };
}

/** Interleaves split token and literal bytes back into the XRLE stream they were split from. */
function interleaveRef(toks: Uint8Array, lits: Uint8Array): Uint8Array {
  const xrle: number[] = [];
  let l = 0;
  const t = { i: 0 };
  while (t.i < toks.length) {
    const token = toks[t.i++];
    xrle.push(token);
    if ((token & 15) === 15) readVarint(toks, t, xrle);
    const run = token >> 4 === 0 ? 16 + readVarint(toks, t, xrle) : token >> 4;
    if (run > lits.length - l) throw new RangeError('literal is truncated');
    for (let k = 0; k < run; k++) xrle.push(lits[l++]);
  }
  if (l !== lits.length) throw new RangeError('literal bytes left over');
  return Uint8Array.from(xrle);
}

/**
 * Applies a page frame (version 1 to 5) to `replica`, following docs/FORMAT.md, every kind.
 * Checks the header, index, checksum, kinds
 * (against the version), lengths and pfns first; then applies page by page, each body checked
 * before it is written. Throws a RangeError on anything malformed (it does not promise to leave
 * `replica` unchanged).
 */
export function applyFrameRef(replica: Uint8Array, frame: Uint8Array, pageSize = 4096): void {
  const u32 = (p: number) => (frame[p] | (frame[p + 1] << 8) | (frame[p + 2] << 16) | (frame[p + 3] << 24)) >>> 0;
  if (frame.length < 32) throw new RangeError('shorter than the header');
  if (String.fromCharCode(...frame.subarray(0, 4)) !== 'UDPF') throw new RangeError('magic');
  const version = frame[4];
  const kinds = FRAME_KINDS[version];
  if (kinds === undefined) throw new RangeError(`unsupported version ${version}`);
  const repeats = version >= 5;
  if (frame[5] !== 0) throw new RangeError('flags');
  if (frame[6] < 9 || frame[6] > 20 || 1 << frame[6] !== pageSize) throw new RangeError('page size');
  if (frame[7] !== 0 || u32(12) !== 0) throw new RangeError('reserved bytes');
  const count = u32(8);
  if (count * 8 > frame.length - 32) throw new RangeError('index truncated');
  const payload = u32(16) + u32(20) * 2 ** 32;
  if (payload !== frame.length - 32 - 8 * count) throw new RangeError('payload length');
  if ((BigInt(u32(24)) | (BigInt(u32(28)) << 32n)) !== xxh3.xxh64(frame.subarray(32))) throw new RangeError('checksum');
  const pages = replica.length / pageSize;
  const seen = new Set<number>();
  let total = 0;
  for (let i = 0; i < count; i++) {
    const e = 32 + 8 * i;
    if (frame[e + 4] >= kinds) throw new RangeError(`page ${i}: kind ${frame[e + 4]} unknown in a version ${version} frame`);
    if (u32(e) >= pages) throw new RangeError(`page ${i}: pfn ${u32(e)} past the end`);
    if (seen.has(u32(e))) throw new RangeError(`page ${i}: pfn ${u32(e)} twice`);
    seen.add(u32(e));
    total += frame[e + 5] | (frame[e + 6] << 8) | (frame[e + 7] << 16);
  }
  if (total !== payload) throw new RangeError('index lengths do not add up to the payload');
  let at = 32 + 8 * count;
  let tables: Uint8Array | null = null; // set by every kind 7 or 10 page; used by kinds 6 and 9
  for (let i = 0; i < count; i++) {
    const e = 32 + 8 * i;
    const pfn = u32(e);
    const kind = frame[e + 4];
    const length = frame[e + 5] | (frame[e + 6] << 8) | (frame[e + 7] << 16);
    let body = frame.subarray(at, at + length);
    at += length;
    const target = replica.subarray(pfn * pageSize, (pfn + 1) * pageSize);
    const huffman = kind === KIND.XRLE_HUF || kind === KIND.XRLE_HUF_TABLE || kind === KIND.XBM_HUF || kind === KIND.XBM_HUF_TABLE;
    if (!huffman) {
      applyBodyRef(target, kind, body, false, repeats);
      continue;
    }
    if (kind === KIND.XRLE_HUF_TABLE || kind === KIND.XBM_HUF_TABLE) {
      if (body.length <= 256) throw new RangeError(`page ${i}: tables truncated`);
      tables = body.subarray(0, 256);
      body = body.subarray(256);
    }
    if (tables === null) throw new RangeError(`page ${i}: Huffman page with no tables before it`);
    const { toks, lits } = huffmanUnpackRef(body, tables, pageSize);
    if (kind === KIND.XRLE_HUF || kind === KIND.XRLE_HUF_TABLE) {
      applyBodyRef(target, KIND.XRLE, interleaveRef(toks, lits));
    } else {
      // Kinds 9 and 10: the mask bytes, then the literal bytes, applied as kind 8.
      applyXbmRef(target, Uint8Array.from([...toks, ...lits]), toks.length, repeats);
    }
  }
}
