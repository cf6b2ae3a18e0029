/**
 * Plain TypeScript reference of the delta codec's first stage (docs/FORMAT.md): XOR-RLE page
 * bodies, the delta container and the page frame, encoder and decoder. Byte for byte what the
 * native code produces with `compress: false`; the decoder accepts every kind except the lz4
 * ones (it reports them as unsupported). Written for clarity, not speed.
 */
import { xxh3 } from '@node-rs/xxhash';

export const KIND = { SAME: 0, ZERO: 1, XRLE: 2, RAW: 3, XRLE_LZ4: 4, RAW_LZ4: 5 } as const;

function varint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/** First-stage encoding of one buffer: kind and body. */
export function encodeBody(prev: Uint8Array, next: Uint8Array): { kind: number; body: Uint8Array } {
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
  const out: number[] = [];
  let pos = 0;
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
    const skip = start - pos;
    const len = end - start;
    out.push(((len < 16 ? len : 0) << 4) | (skip < 15 ? skip : 15));
    if (skip >= 15) varint(out, skip - 15);
    if (len >= 16) varint(out, len - 16);
    for (let k = start; k < end; k++) out.push(x[k]);
    pos = end;
    i = end;
    if (out.length >= n) break;
  }
  if (out.length >= n) return { kind: KIND.RAW, body: next.slice() };
  return { kind: KIND.XRLE, body: Uint8Array.from(out) };
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

/** The page frame of encodePages with `compress: false`; updates `shadow` like the native one. */
export function encodePagesRef(shadow: Uint8Array, pages: Uint8Array, pfns: Uint32Array, pageSize = 4096): Uint8Array {
  const index: number[] = [];
  const bodies: Uint8Array[] = [];
  for (let i = 0; i < pfns.length; i++) {
    const prev = shadow.subarray(pfns[i] * pageSize, (pfns[i] + 1) * pageSize);
    const next = pages.subarray(i * pageSize, (i + 1) * pageSize);
    const { kind, body } = encodeBody(prev, next);
    prev.set(next);
    index.push(...u32le(pfns[i]), kind, body.length & 0xff, (body.length >> 8) & 0xff, (body.length >> 16) & 0xff);
    bodies.push(body);
  }
  const after = Buffer.concat([Uint8Array.from(index), ...bodies]);
  const payload = after.length - index.length;
  const head = [
    0x55, 0x44, 0x50, 0x46, 1, 0, Math.log2(pageSize), 0,
    ...u32le(pfns.length), 0, 0, 0, 0,
    ...u64le(BigInt(payload)),
    ...u64le(xxh3.xxh64(after)),
  ];
  return Uint8Array.from([...head, ...after]);
}

/** Applies a first-stage body (SAME/ZERO/XRLE/RAW) to `target`; throws on anything malformed. */
export function applyBodyRef(target: Uint8Array, kind: number, body: Uint8Array): void {
  const n = target.length;
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
  if (kind !== KIND.XRLE) throw new RangeError(`unsupported kind ${kind}`);
  const out = target.slice();
  forEachLiteral(body, n, (pos, len, at) => {
    for (let k = 0; k < len; k++) out[pos + k] ^= body[at + k];
  });
  target.set(out);
}

/**
 * Walks an XRLE token stream for a buffer of `n` bytes: `visit(pos, len, at)` for each literal
 * run of `len` bytes landing at `pos`, its bytes at `body[at ..]`. Throws on anything malformed.
 */
export function forEachLiteral(body: Uint8Array, n: number, visit: (pos: number, len: number, at: number) => void): void {
  let p = 0;
  let pos = 0;
  const readVarint = (): number => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (p >= body.length) throw new RangeError('truncated varint');
      const b = body[p++];
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
    throw new RangeError('long varint');
  };
  while (p < body.length) {
    const t = body[p++];
    let skip = t & 15;
    let len = t >> 4;
    if (skip === 15) skip = 15 + readVarint();
    if (len === 0) len = 16 + readVarint();
    pos += skip;
    if (pos + len > n || p + len > body.length) throw new RangeError('out of range');
    visit(pos, len, p);
    p += len;
    pos += len;
  }
}
