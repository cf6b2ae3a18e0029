/**
 * Plain TypeScript reference of the delta codec's first stage (docs/FORMAT.md): XOR-RLE page
 * bodies, the delta container and the page frame, encoder and decoder. Byte for byte what the
 * native code produces with `compress: false`; the decoder accepts every kind except the lz4
 * ones (it reports them as unsupported). Written for clarity, not speed.
 */
import { xxh3 } from '@node-rs/xxhash';

export const KIND = { SAME: 0, ZERO: 1, XRLE: 2, RAW: 3, XRLE_LZ4: 4, RAW_LZ4: 5, XRLE_HUF: 6, XRLE_HUF_TABLE: 7 } as const;

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
 * Applies a page frame (version 1 or 2) to `replica`, following docs/FORMAT.md; every kind but
 * the lz4 ones. Throws on anything malformed (it does not promise to leave `replica` unchanged).
 */
export function applyFrameRef(replica: Uint8Array, frame: Uint8Array, pageSize = 4096): void {
  const u32 = (p: number) => (frame[p] | (frame[p + 1] << 8) | (frame[p + 2] << 16) | (frame[p + 3] << 24)) >>> 0;
  if (String.fromCharCode(...frame.subarray(0, 4)) !== 'UDPF') throw new RangeError('magic');
  const version = frame[4];
  if (version !== 1 && version !== 2) throw new RangeError('version');
  if (1 << frame[6] !== pageSize) throw new RangeError('page size');
  const count = u32(8);
  let at = 32 + 8 * count;
  let tables: Uint8Array | null = null;
  for (let i = 0; i < count; i++) {
    const e = 32 + 8 * i;
    const pfn = u32(e);
    const kind = frame[e + 4];
    const length = frame[e + 5] | (frame[e + 6] << 8) | (frame[e + 7] << 16);
    let body = frame.subarray(at, at + length);
    at += length;
    const target = replica.subarray(pfn * pageSize, (pfn + 1) * pageSize);
    if (kind === KIND.XRLE_HUF_TABLE) {
      if (version !== 2) throw new RangeError('Huffman kind in a version 1 frame');
      if (body.length <= 256) throw new RangeError('tables truncated');
      tables = body.subarray(0, 256);
      body = body.subarray(256);
    } else if (kind !== KIND.XRLE_HUF) {
      applyBodyRef(target, kind, body);
      continue;
    } else if (version !== 2) {
      throw new RangeError('Huffman kind in a version 1 frame');
    }
    if (tables === null) throw new RangeError('no tables');
    if (body.length === 0 || body.length >= pageSize) throw new RangeError('body length');
    const head = { i: 0 };
    const tokLen = readVarint(body, head);
    const litLen = readVarint(body, head);
    const tokBytes = readVarint(body, head);
    if (tokLen < 1 || litLen < 1 || tokLen + litLen >= pageSize) throw new RangeError('stream lengths');
    if (tokBytes > body.length - head.i) throw new RangeError('token stream past the body');
    const toks = huffmanDecodeRef(tables.subarray(0, 128), body.subarray(head.i, head.i + tokBytes), tokLen);
    const lits = huffmanDecodeRef(tables.subarray(128, 256), body.subarray(head.i + tokBytes), litLen);
    // Interleave into the XRLE stream the two streams were split from, then apply that.
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
    applyBodyRef(target, KIND.XRLE, Uint8Array.from(xrle));
  }
}
