/**
 * The body of one epoch: everything the backup must commit atomically (page frame, CPU blob,
 * output records), serialised once on the primary and carried in EPOCH_DATA chunks.
 *
 *   0      4      8        12        16      20        24         28        32
 *   +------+------+--------+---------+-------+---------+----------+---------+
 *   |magic |flags |pageSize|pageCount|cpuLen |nRecords |recordsLen|frameLen |
 *   +------+------+--------+---------+-------+---------+----------+---------+
 *   32               40              48                56               64
 *   | firstRecordSeq | final (8 B)   | captureMs (u64) | releasedRecords |
 *   +----------------+---------------+-----------------+-----------------+
 *   64: cpu blob (cpuLen) | records (recordsLen) | page frame (frameLen)
 *   record: seq u64 | chain 8 B | len u32 | data[len]        (20 + len bytes, len <= 4096)
 *
 * flags: bit 0 FULL (the frame is relative to an all-zero replica: the backup starts from a zero
 * image), bit 1 FINAL (the workload has finished; `final` holds its checksum). Record sequence
 * numbers are consecutive from firstRecordSeq. releasedRecords (u64, protocol 2) is the primary's
 * release watermark when it built the body: the backup keeps its retained history counted from
 * there, so a client that keeps up with the primary finds its place after a failover. It is at
 * most firstRecordSeq + nRecords. All integers little-endian.
 */
import { ProtocolError } from '../errors/protocol-error.js';
import type { OutputRecord } from '../guest/types.js';

export const BODY_MAGIC = 0x42455355; // "USEB"
export const META_BYTES = 64;
export const FLAG_FULL = 1;
export const FLAG_FINAL = 2;
const MAX_RECORD_DATA = 4096;

export interface EpochBody {
  flags: number;
  pageSize: number;
  pageCount: number;
  cpu: Uint8Array;
  records: OutputRecord[];
  firstRecordSeq: number;
  /** The primary's release watermark (records clients may have seen) when the body was built. */
  releasedRecords: number;
  /** 16 hex digits when FINAL. */
  final: string | null;
  captureMs: number;
  frame: Uint8Array;
}

const HEX16 = /^[0-9a-f]{16}$/;

export function encodeEpochBody(b: EpochBody): Buffer {
  let recordsLen = 0;
  for (const r of b.records) {
    if (r.data.length > MAX_RECORD_DATA) throw new RangeError(`record ${r.seq} data must be at most ${MAX_RECORD_DATA} bytes, got ${r.data.length}`);
    if (!HEX16.test(r.chain)) throw new RangeError(`record ${r.seq} chain must be 16 lowercase hex digits, got ${JSON.stringify(r.chain)}`);
    recordsLen += 20 + r.data.length;
  }
  const total = META_BYTES + b.cpu.length + recordsLen + b.frame.length;
  const out = Buffer.allocUnsafe(total);
  out.fill(0, 0, META_BYTES);
  out.writeUInt32LE(BODY_MAGIC, 0);
  out.writeUInt32LE(b.flags, 4);
  out.writeUInt32LE(b.pageSize, 8);
  out.writeUInt32LE(b.pageCount, 12);
  out.writeUInt32LE(b.cpu.length, 16);
  out.writeUInt32LE(b.records.length, 20);
  out.writeUInt32LE(recordsLen, 24);
  out.writeUInt32LE(b.frame.length, 28);
  out.writeBigUInt64LE(BigInt(b.firstRecordSeq), 32);
  if (b.final !== null) {
    if (!HEX16.test(b.final)) throw new RangeError(`\`final\` must be 16 lowercase hex digits, got ${JSON.stringify(b.final)}`);
    Buffer.from(b.final, 'hex').copy(out, 40);
  }
  out.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(b.captureMs))), 48);
  if (!Number.isSafeInteger(b.releasedRecords) || b.releasedRecords < 0 || b.releasedRecords > b.firstRecordSeq + b.records.length) {
    throw new RangeError(`\`releasedRecords\` must be an integer from 0 to ${b.firstRecordSeq + b.records.length}, got ${b.releasedRecords}`);
  }
  out.writeBigUInt64LE(BigInt(b.releasedRecords), 56);
  let off = META_BYTES;
  out.set(b.cpu, off);
  off += b.cpu.length;
  let seq = b.firstRecordSeq;
  for (const r of b.records) {
    if (r.seq !== seq) throw new RangeError(`records must be consecutive: expected seq ${seq}, got ${r.seq}`);
    seq++;
    out.writeBigUInt64LE(BigInt(r.seq), off);
    Buffer.from(r.chain, 'hex').copy(out, off + 8);
    out.writeUInt32LE(r.data.length, off + 16);
    out.set(r.data, off + 20);
    off += 20 + r.data.length;
  }
  out.set(b.frame, off);
  return out;
}

/** Parses and checks a body (hostile input): every length bounded, records consecutive. */
export function decodeEpochBody(buf: Buffer): EpochBody {
  const bad = (msg: string): never => {
    throw new ProtocolError('BAD_PAYLOAD', `epoch body: ${msg}`);
  };
  if (buf.length < META_BYTES) bad(`must be at least ${META_BYTES} bytes, got ${buf.length}`);
  const magic = buf.readUInt32LE(0);
  if (magic !== BODY_MAGIC) bad(`magic must be 0x${BODY_MAGIC.toString(16)}, got 0x${magic.toString(16)}`);
  const flags = buf.readUInt32LE(4);
  if (flags & ~(FLAG_FULL | FLAG_FINAL)) bad(`unknown flags 0x${flags.toString(16)}`);
  const pageSize = buf.readUInt32LE(8);
  const pageCount = buf.readUInt32LE(12);
  const cpuLen = buf.readUInt32LE(16);
  const nRecords = buf.readUInt32LE(20);
  const recordsLen = buf.readUInt32LE(24);
  const frameLen = buf.readUInt32LE(28);
  if (META_BYTES + cpuLen + recordsLen + frameLen !== buf.length) {
    bad(`section lengths ${cpuLen} + ${recordsLen} + ${frameLen} do not add up to ${buf.length - META_BYTES}`);
  }
  const first = buf.readBigUInt64LE(32);
  if (first + BigInt(nRecords) > BigInt(Number.MAX_SAFE_INTEGER)) bad(`firstRecordSeq too large: ${first}`);
  const finalBytes = buf.subarray(40, 48);
  const final = flags & FLAG_FINAL ? finalBytes.toString('hex') : null;
  if (!(flags & FLAG_FINAL) && !finalBytes.every((x) => x === 0)) bad('final must be 0 unless FINAL');
  let off = META_BYTES;
  const cpu = buf.subarray(off, off + cpuLen);
  off += cpuLen;
  const recEnd = off + recordsLen;
  const records: OutputRecord[] = [];
  let seq = Number(first);
  for (let i = 0; i < nRecords; i++) {
    if (off + 20 > recEnd) bad(`record ${i} header runs past the records section`);
    const s = buf.readBigUInt64LE(off);
    if (s !== BigInt(seq)) bad(`record ${i} seq must be ${seq}, got ${s}`);
    const chain = buf.subarray(off + 8, off + 16).toString('hex');
    const len = buf.readUInt32LE(off + 16);
    if (len > MAX_RECORD_DATA || off + 20 + len > recEnd) bad(`record ${i} length ${len} runs past the records section`);
    records.push({ seq, chain, data: Uint8Array.prototype.slice.call(buf, off + 20, off + 20 + len) });
    off += 20 + len;
    seq++;
  }
  if (off !== recEnd) bad(`records section has ${recEnd - off} trailing bytes`);
  const released = buf.readBigUInt64LE(56);
  if (released > BigInt(seq)) bad(`releasedRecords ${released} is past the records it carries (${seq})`);
  return {
    flags,
    pageSize,
    pageCount,
    cpu,
    records,
    firstRecordSeq: Number(first),
    releasedRecords: Number(released),
    final,
    captureMs: Number(buf.readBigUInt64LE(48)),
    frame: buf.subarray(recEnd, recEnd + frameLen),
  };
}
