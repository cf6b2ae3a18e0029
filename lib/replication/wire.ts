/**
 * The replication wire: length-prefixed, versioned, authenticated frames over one TCP stream.
 * docs/FORMAT.md "replication wire protocol" is the normative description; this file is its implementation.
 *
 *   0        4    5    6         8              12             16
 *   +--------+----+----+---------+--------------+--------------+
 *   | magic  |ver |type| flags=0 | payload len  | reserved = 0 |
 *   +--------+----+----+---------+--------------+--------------+
 *   16                  24                  32                  40
 *   | seq (u64)         | generation (u64)  | epoch (u64)       |
 *   +-------------------+-------------------+-------------------+
 *   40: payload (payload len bytes)
 *   40+len: MAC, 32 bytes = HMAC-SHA256(direction key, bytes 0 .. 40+len)
 *
 * All integers little-endian. The reader checks magic, version, type, reserved fields and the
 * length limit on the 40 header bytes BEFORE it buffers the payload, then checks the MAC and the
 * per-direction sequence number (must be exactly the next one: replays, drops and reorderings of
 * frames are refused). A frame that fails any check poisons the stream: the caller drops the
 * connection, and whatever epoch was half-received is discarded whole.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ProtocolError } from '../errors/protocol-error.js';

/** "USRP" read as a little-endian u32. */
export const WIRE_MAGIC = 0x50525355;
export const WIRE_VERSION = 1;
export const HEADER_BYTES = 40;
export const MAC_BYTES = 32;
/** Default limit on one frame's payload; epoch bodies travel in chunks well below it. */
export const DEFAULT_MAX_PAYLOAD = 4 * 1024 * 1024;
/** The largest handshake frame: HELLO 88, CHALLENGE 112, PROOF 32 bytes, REJECT a code and a reason. */
export const HANDSHAKE_MAX_PAYLOAD = 4096;
/** Size of the EPOCH_DATA chunks the sender cuts an epoch body into. */
export const CHUNK_BYTES = 256 * 1024;

export const FrameType = {
  HELLO: 0x01,
  CHALLENGE: 0x02,
  PROOF: 0x03,
  ACCEPT: 0x04,
  REJECT: 0x05,
  EPOCH_BEGIN: 0x10,
  EPOCH_DATA: 0x11,
  EPOCH_END: 0x12,
  ACK: 0x20,
  HEARTBEAT: 0x30,
  BYE: 0x31,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];
const KNOWN_TYPES = new Set<number>(Object.values(FrameType));

export function frameTypeName(t: number): string {
  for (const [k, v] of Object.entries(FrameType)) if (v === t) return k;
  return `0x${t.toString(16)}`;
}

/** The all-zero key: MACs the first two handshake frames, and everything in --insecure mode. */
export const ZERO_KEY: Buffer = Buffer.alloc(32);

export interface Frame {
  type: FrameTypeValue;
  seq: bigint;
  generation: bigint;
  epoch: bigint;
  payload: Buffer;
}

export interface FrameFields {
  type: FrameTypeValue;
  seq: bigint;
  generation: bigint;
  epoch: bigint;
  payload?: Uint8Array;
}

function mac(key: Uint8Array, header: Uint8Array, payload: Uint8Array): Buffer {
  return createHmac('sha256', key).update(header).update(payload).digest();
}

/** Serialises one frame, MACed with `key`. */
export function encodeFrame(f: FrameFields, key: Uint8Array): Buffer {
  const payload = f.payload ?? new Uint8Array(0);
  if (payload.length > 0xffffffff) throw new RangeError(`\`payload\` must be at most 4 GiB - 1 bytes, got ${payload.length}`);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(WIRE_MAGIC, 0);
  header.writeUInt8(WIRE_VERSION, 4);
  header.writeUInt8(f.type, 5);
  header.writeUInt16LE(0, 6);
  header.writeUInt32LE(payload.length, 8);
  header.writeUInt32LE(0, 12);
  header.writeBigUInt64LE(f.seq, 16);
  header.writeBigUInt64LE(f.generation, 24);
  header.writeBigUInt64LE(f.epoch, 32);
  const m = mac(key, header, payload);
  return Buffer.concat([header, payload, m], HEADER_BYTES + payload.length + MAC_BYTES);
}

/**
 * Incremental frame reader for one direction of one connection. push() returns the complete,
 * verified frames; it throws ProtocolError on the first bad one (the stream is then unusable).
 */
export class FrameDecoder {
  /** Key that MACs incoming frames; the handshake switches it to the session key. */
  key: Uint8Array = ZERO_KEY;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: Buffer | null = null;
  private payloadLen = 0;
  private nextSeq = 0n;
  private dead = false;

  /**
   * The largest payload accepted now: HANDSHAKE_MAX_PAYLOAD while the handshake runs (Link sets
   * it), so an unauthenticated peer cannot make us buffer megabytes; maxPayload after.
   */
  payloadLimit: number;

  constructor(readonly maxPayload = DEFAULT_MAX_PAYLOAD) {
    if (!Number.isInteger(maxPayload) || maxPayload < 1024 || maxPayload > 0xffffffff) {
      throw new RangeError(`\`maxPayload\` must be an integer from 1024 to 4294967295, got ${maxPayload}`);
    }
    this.payloadLimit = maxPayload;
  }

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buffered + (this.header ? HEADER_BYTES : 0);
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.dead) throw new ProtocolError('BAD_HEADER', 'stream already failed; drop the connection');
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.length;
    const out: Frame[] = [];
    try {
      for (;;) {
        if (!this.header) {
          if (this.buffered < HEADER_BYTES) break;
          this.header = this.take(HEADER_BYTES);
          this.payloadLen = this.checkHeader(this.header);
        }
        if (this.buffered < this.payloadLen + MAC_BYTES) break;
        const rest = this.take(this.payloadLen + MAC_BYTES);
        out.push(this.finish(this.header, rest));
        this.header = null;
      }
    } catch (err) {
      this.dead = true;
      this.chunks = [];
      this.buffered = 0;
      throw err;
    }
    return out;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }

  private checkHeader(h: Buffer): number {
    const magic = h.readUInt32LE(0);
    if (magic !== WIRE_MAGIC) throw new ProtocolError('BAD_MAGIC', `frame magic must be 0x${WIRE_MAGIC.toString(16)}, got 0x${magic.toString(16)}`);
    const version = h.readUInt8(4);
    if (version !== WIRE_VERSION) throw new ProtocolError('BAD_VERSION', `frame version must be ${WIRE_VERSION}, got ${version}`);
    const type = h.readUInt8(5);
    if (!KNOWN_TYPES.has(type)) throw new ProtocolError('BAD_TYPE', `unknown frame type 0x${type.toString(16)}`);
    const flags = h.readUInt16LE(6);
    const reserved = h.readUInt32LE(12);
    if (flags !== 0 || reserved !== 0) throw new ProtocolError('BAD_HEADER', `frame flags and reserved bytes must be 0, got ${flags} and ${reserved}`);
    const len = h.readUInt32LE(8);
    if (len > this.payloadLimit) {
      const when = this.payloadLimit < this.maxPayload ? ' before the handshake completes' : '';
      throw new ProtocolError('TOO_LARGE', `frame payload length must be at most ${this.payloadLimit}${when}, got ${len}`);
    }
    return len;
  }

  private finish(h: Buffer, rest: Buffer): Frame {
    const payload = rest.subarray(0, this.payloadLen);
    const got = rest.subarray(this.payloadLen);
    const want = mac(this.key, h, payload);
    if (!timingSafeEqual(got, want)) {
      throw new ProtocolError('BAD_MAC', `frame MAC mismatch (type ${frameTypeName(h.readUInt8(5))}, seq ${h.readBigUInt64LE(16)}): corrupted or forged`);
    }
    const seq = h.readBigUInt64LE(16);
    if (seq !== this.nextSeq) {
      throw new ProtocolError('REPLAY', `frame sequence must be ${this.nextSeq}, got ${seq}: replayed, dropped or reordered frame`);
    }
    this.nextSeq++;
    return {
      type: h.readUInt8(5) as FrameTypeValue,
      seq,
      generation: h.readBigUInt64LE(24),
      epoch: h.readBigUInt64LE(32),
      payload,
    };
  }
}
