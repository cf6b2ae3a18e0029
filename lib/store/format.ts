/**
 * The checkpoint store's byte formats: the store header, segment headers, page records and
 * manifests. Every structure is versioned and CRC-32 checked; every decoder treats its input as
 * hostile (bounds first, then checksum, then meaning) and throws StoreFormatError naming the file
 * and what is wrong. The layouts are drawn in docs/FORMAT.md "checkpoint store".
 *
 *   STORE (32 bytes)            segment header (32 bytes)        record header (48 bytes)
 *   0  magic "USTSTORE"         0  magic "USTSEGMT"              0  magic u32 0x31435255 "URC1"
 *   8  version u16 = 1          8  version u16 = 1               4  kind u8 (1 page, 2 delta)
 *   10 header length u16 = 32   10 header length u16 = 32        5  codec u8 (0 raw, 1 zstd)
 *   12 page size u32            12 page size u32                 6  delta depth u16
 *   16 created ms u64           16 segment number u32            8  payload length u32
 *   24 reserved u32 = 0         20 reserved (8 bytes, 0)         12 base segment u32 (delta)
 *   28 CRC-32 of bytes 0..27    28 CRC-32 of bytes 0..27         16 base offset u32 (delta)
 *                                                                20 CRC-32 of bytes 24..end
 *                                                                24 namespace tag (8 bytes)
 *                                                                32 fingerprint of the page (16 bytes)
 *                                                                48 payload
 * The record CRC covers the namespace, fingerprint and payload, and bytes 4..19 are folded into
 * it too (see recordCrc), so one contiguous pass plus a 16-byte one checks everything but the
 * magic.
 * All integers little-endian.
 */
import { crc32 } from 'node:zlib';

export const STORE_MAGIC = 'USTSTORE';
export const SEGMENT_MAGIC = 'USTSEGMT';
export const MANIFEST_MAGIC = 'USTMANIF';
export const FORMAT_VERSION = 1;
/** STORE version 2 (40 bytes) carries a store id; version 1 (32 bytes, no id) is still read. */
export const STORE_VERSION = 2;
export const STORE_HEADER_BYTES = 32;
export const STORE_HEADER_V2_BYTES = 40;
export const STORE_ID_BYTES = 8;
export const SEGMENT_HEADER_BYTES = 32;
export const RECORD_HEADER_BYTES = 48;
export const MANIFEST_HEADER_BYTES = 48;
export const RECORD_MAGIC = 0x31435255;
/** Largest guest a manifest may describe: 2^26 pages (256 GiB of 4 KiB pages). */
export const MAX_PAGES = 1 << 26;
/**
 * Highest segment number (2^21 - 1): a record reference (segment * 2^32 + offset) stays an exact
 * double, and the number fits every u32 field and the 8-digit file name.
 */
export const MAX_SEGMENT = 2 ** 21 - 1;
/** Highest checkpoint id: 15 decimal digits, an exact double. */
export const MAX_CHECKPOINT_ID = 999_999_999_999_999;
/** Limits on a manifest's parts, checked before anything is read past the 48-byte header. */
export const MAX_MANIFEST_META_BYTES = 16 << 20;
export const MAX_MANIFEST_CPU_BYTES = 64 << 20;
/**
 * A map of n entries (12n bytes before zstd) must be at least 12n / 64 bytes: our writer's maps
 * compress 2 to 6 times, so a small manifest cannot make a reader allocate a huge map.
 */
export const MAX_MAP_RATIO = 64;

export const KIND_PAGE = 1;
export const KIND_DELTA = 2;
export const CODEC_RAW = 0;
export const CODEC_ZSTD = 1;

/** A byte structure in the store is malformed, truncated, corrupt or of an unknown version. */
export class StoreFormatError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'StoreFormatError';
  }
}

export function crc(...parts: Uint8Array[]): number {
  let c = 0;
  for (const p of parts) c = crc32(p, c);
  return c >>> 0;
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function magicAt(b: Uint8Array, magic: string): boolean {
  for (let i = 0; i < 8; i++) if (b[i] !== magic.charCodeAt(i)) return false;
  return true;
}

function putMagic(b: Uint8Array, magic: string): void {
  for (let i = 0; i < 8; i++) b[i] = magic.charCodeAt(i);
}

export function isPowerOfTwoPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= 512 && n <= 1 << 20 && (n & (n - 1)) === 0;
}

// ---------------------------------------------------------------- store and segment headers

/**
 * STORE version 2 (40 bytes): magic, u16 version = 2, u16 header length = 40, u32 page size,
 * u64 created ms, 8-byte store id at 24, u32 reserved = 0 at 32, CRC-32 of bytes 0..35 at 36.
 * `storeId` null writes version 1 (32 bytes, no id; as stores before the id was added).
 */
export function encodeStoreHeader(pageSize: number, createdMs: number, storeId: Uint8Array | null = null): Uint8Array {
  const len = storeId ? STORE_HEADER_V2_BYTES : STORE_HEADER_BYTES;
  const b = new Uint8Array(len);
  const v = dv(b);
  putMagic(b, STORE_MAGIC);
  v.setUint16(8, storeId ? STORE_VERSION : FORMAT_VERSION, true);
  v.setUint16(10, len, true);
  v.setUint32(12, pageSize, true);
  v.setBigUint64(16, BigInt(createdMs), true);
  if (storeId) b.set(storeId.subarray(0, STORE_ID_BYTES), 24);
  v.setUint32(len - 4, crc(b.subarray(0, len - 4)), true);
  return b;
}

export function decodeStoreHeader(file: string, b: Uint8Array): { pageSize: number; createdMs: number; storeId: Uint8Array | null } {
  if (b.byteLength < STORE_HEADER_BYTES) throw new StoreFormatError(file, `store header is truncated (${b.byteLength} of ${STORE_HEADER_BYTES} bytes)`);
  if (!magicAt(b, STORE_MAGIC)) throw new StoreFormatError(file, 'not an understudy store (bad magic)');
  const v = dv(b);
  const version = v.getUint16(8, true);
  if (version !== FORMAT_VERSION && version !== STORE_VERSION) throw new StoreFormatError(file, `unsupported store format version ${version} (this build reads 1 and ${STORE_VERSION})`);
  const len = version === FORMAT_VERSION ? STORE_HEADER_BYTES : STORE_HEADER_V2_BYTES;
  if (b.byteLength !== len || v.getUint16(10, true) !== len) throw new StoreFormatError(file, `store header of version ${version} must be ${len} bytes, got ${b.byteLength} (header length field ${v.getUint16(10, true)})`);
  if (v.getUint32(len - 4, true) !== crc(b.subarray(0, len - 4))) throw new StoreFormatError(file, 'store header checksum mismatch');
  const pageSize = v.getUint32(12, true);
  if (!isPowerOfTwoPageSize(pageSize)) throw new StoreFormatError(file, `bad page size ${pageSize}`);
  const storeId = version === STORE_VERSION ? Uint8Array.prototype.slice.call(b, 24, 24 + STORE_ID_BYTES) : null;
  if (storeId && storeId.every((x) => x === 0)) throw new StoreFormatError(file, 'store id is zero');
  return { pageSize, createdMs: Number(v.getBigUint64(16, true)), storeId };
}

export const hexId = (id: Uint8Array | null): string => (id ? Buffer.from(id).toString('hex') : 'none');

/** Segment header; bytes 20..27 hold the store id (zero in a store without one). */
export function encodeSegmentHeader(pageSize: number, segment: number, storeId: Uint8Array | null = null): Uint8Array {
  if (!Number.isInteger(segment) || segment < 1 || segment > MAX_SEGMENT) throw new RangeError(`segment number must be from 1 to ${MAX_SEGMENT}, got ${segment}`);
  const b = new Uint8Array(SEGMENT_HEADER_BYTES);
  const v = dv(b);
  putMagic(b, SEGMENT_MAGIC);
  v.setUint16(8, FORMAT_VERSION, true);
  v.setUint16(10, SEGMENT_HEADER_BYTES, true);
  v.setUint32(12, pageSize, true);
  v.setUint32(16, segment, true);
  if (storeId) b.set(storeId.subarray(0, STORE_ID_BYTES), 20);
  v.setUint32(28, crc(b.subarray(0, 28)), true);
  return b;
}

export function decodeSegmentHeader(file: string, b: Uint8Array, pageSize: number, segment: number, storeId: Uint8Array | null = null): void {
  if (b.byteLength < SEGMENT_HEADER_BYTES) throw new StoreFormatError(file, `segment header is truncated (${b.byteLength} of ${SEGMENT_HEADER_BYTES} bytes)`);
  if (!magicAt(b, SEGMENT_MAGIC)) throw new StoreFormatError(file, 'not a segment (bad magic)');
  const v = dv(b);
  if (v.getUint32(28, true) !== crc(b.subarray(0, 28))) throw new StoreFormatError(file, 'segment header checksum mismatch');
  const version = v.getUint16(8, true);
  if (version !== FORMAT_VERSION) throw new StoreFormatError(file, `unsupported segment format version ${version}`);
  if (v.getUint32(12, true) !== pageSize) throw new StoreFormatError(file, `segment page size ${v.getUint32(12, true)} differs from the store's ${pageSize}`);
  if (v.getUint32(16, true) !== segment) throw new StoreFormatError(file, `segment number ${v.getUint32(16, true)} does not match its file name (${segment})`);
  const id = b.subarray(20, 20 + STORE_ID_BYTES);
  const none = id.every((x) => x === 0);
  if (storeId ? Buffer.compare(id, storeId) !== 0 : !none) {
    throw new StoreFormatError(file, `segment belongs to another store (store id ${none ? 'none' : hexId(id)}, this store's ${hexId(storeId)})`);
  }
}

// ---------------------------------------------------------------- records

export interface RecordHeader {
  kind: number;
  codec: number;
  depth: number;
  payloadLength: number;
  baseSegment: number;
  baseOffset: number;
  crc: number;
  /** 8 bytes */
  namespace: Uint8Array;
  /** 16 bytes: XXH3-128 of the page this record yields */
  fingerprint: Uint8Array;
}

export function writeRecordHeader(out: Uint8Array, h: Omit<RecordHeader, 'crc' | 'payloadLength'>, payload: Uint8Array): void {
  const v = dv(out);
  v.setUint32(0, RECORD_MAGIC, true);
  out[4] = h.kind;
  out[5] = h.codec;
  v.setUint16(6, h.depth, true);
  v.setUint32(8, payload.byteLength, true);
  v.setUint32(12, h.baseSegment, true);
  v.setUint32(16, h.baseOffset, true);
  out.set(h.namespace.subarray(0, 8), 24);
  out.set(h.fingerprint.subarray(0, 16), 32);
  v.setUint32(20, crc32(payload, crc32(out.subarray(24, 48), crc32(out.subarray(4, 20)))) >>> 0, true);
}

/**
 * Parses a record header from `b` (which may extend past the record); returns null when the
 * bytes are not a plausible record (bad magic, kind, codec, depth, or a payload length that
 * cannot be a page's encoding). The CRC is checked separately (recordCrcOk).
 */
export function parseRecordHeader(b: Uint8Array, pageSize: number): RecordHeader | null {
  if (b.byteLength < RECORD_HEADER_BYTES) return null;
  const u32 = (o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
  if (u32(0) !== RECORD_MAGIC) return null;
  const kind = b[4]!;
  const codec = b[5]!;
  if (kind !== KIND_PAGE && kind !== KIND_DELTA) return null;
  if (codec !== CODEC_RAW && codec !== CODEC_ZSTD) return null;
  const payloadLength = u32(8);
  // A delta of a page is at most a little larger than the page; zstd output likewise.
  if (payloadLength === 0 || payloadLength > pageSize * 2 + 64) return null;
  if (kind === KIND_PAGE && codec === CODEC_RAW && payloadLength !== pageSize) return null;
  const depth = b[6]! | (b[7]! << 8);
  if ((kind === KIND_PAGE) !== (depth === 0)) return null;
  if (u32(12) > MAX_SEGMENT) return null;
  return {
    kind,
    codec,
    depth,
    payloadLength,
    baseSegment: u32(12),
    baseOffset: u32(16),
    crc: u32(20),
    namespace: b.subarray(24, 32),
    fingerprint: b.subarray(32, 48),
  };
}

/** Whether the CRC in `header` (at least 48 bytes) matches it and `payload`. */
export function recordCrcOk(header: Uint8Array, payload: Uint8Array): boolean {
  const want = (header[20]! | (header[21]! << 8) | (header[22]! << 16) | (header[23]! << 24)) >>> 0;
  const c = crc32(header.subarray(4, 20));
  if (payload.byteOffset === header.byteOffset + RECORD_HEADER_BYTES && payload.buffer === header.buffer) {
    // contiguous: one pass over namespace, fingerprint and payload
    return (crc32(new Uint8Array(header.buffer, header.byteOffset + 24, 24 + payload.byteLength), c) >>> 0) === want;
  }
  return (crc32(payload, crc32(header.subarray(24, 48), c)) >>> 0) === want;
}

// ---------------------------------------------------------------- manifests

/**
 *   manifest
 *   0  magic "USTMANIF"        8  version u16 = 1         10 header length u16 = 48
 *   12 flags u32 (bit 0: full page map; otherwise changes against the parent)
 *   16 page size u32           20 page count u32          24 map entry count u32
 *   28 metadata length u32     32 CPU state length u32    36 map length u32 (zstd)
 *   40 reserved u32 = 0        44 CRC-32 of the whole file without these 4 bytes
 *   48 metadata (UTF-8 JSON) | CPU state blob | map: zstd(pfn u32[n] | segment u32[n] | offset u32[n])
 */
export interface ManifestMeta {
  id: string;
  parent: string | null;
  created: string;
  namespace: string;
  /** The store's id (hex), in stores that have one (STORE version 2). */
  store?: string;
  label?: string;
  /** Segment lengths known committed when this manifest was written (segment number -> bytes). */
  extents: Record<string, number>;
  guest?: Record<string, unknown>;
  stats: {
    /** Pages the source reported written (all pages for a full snapshot). */
    dirtyPages: number;
    /** Non-zero pages this checkpoint wrote a new record for. */
    newPages: number;
    deltaPages: number;
    dedupPages: number;
    zeroPages: number;
    unchangedPages: number;
    /** Bytes of the whole dirty pages (the Remus-style cost). */
    rawDirtyBytes: number;
    /** Bytes appended to segments for this checkpoint. */
    recordBytes: number;
  };
  [k: string]: unknown;
}

export interface ManifestData {
  full: boolean;
  pageSize: number;
  pageCount: number;
  meta: ManifestMeta;
  cpu: Uint8Array;
  pfns: Uint32Array;
  segments: Uint32Array;
  offsets: Uint32Array;
}

export function encodeManifest(m: ManifestData, compress: (b: Uint8Array) => Uint8Array): Uint8Array {
  const n = m.pfns.length;
  if (m.segments.length !== n || m.offsets.length !== n) throw new RangeError('manifest map arrays differ in length');
  const metaBytes = Buffer.from(JSON.stringify(m.meta), 'utf8');
  // Never write what decodeManifestLayout refuses.
  if (metaBytes.length > MAX_MANIFEST_META_BYTES) throw new RangeError(`manifest metadata is ${metaBytes.length} bytes, more than the limit (${MAX_MANIFEST_META_BYTES})`);
  if (m.cpu.length > MAX_MANIFEST_CPU_BYTES) throw new RangeError(`manifest CPU state is ${m.cpu.length} bytes, more than the limit (${MAX_MANIFEST_CPU_BYTES})`);
  const raw = new Uint8Array(n * 12);
  raw.set(new Uint8Array(m.pfns.buffer, m.pfns.byteOffset, n * 4), 0);
  raw.set(new Uint8Array(m.segments.buffer, m.segments.byteOffset, n * 4), n * 4);
  raw.set(new Uint8Array(m.offsets.buffer, m.offsets.byteOffset, n * 4), n * 8);
  const map = compress(raw);
  const out = new Uint8Array(MANIFEST_HEADER_BYTES + metaBytes.length + m.cpu.length + map.length);
  const v = dv(out);
  putMagic(out, MANIFEST_MAGIC);
  v.setUint16(8, FORMAT_VERSION, true);
  v.setUint16(10, MANIFEST_HEADER_BYTES, true);
  v.setUint32(12, m.full ? 1 : 0, true);
  v.setUint32(16, m.pageSize, true);
  v.setUint32(20, m.pageCount, true);
  v.setUint32(24, n, true);
  v.setUint32(28, metaBytes.length, true);
  v.setUint32(32, m.cpu.length, true);
  v.setUint32(36, map.length, true);
  let o = MANIFEST_HEADER_BYTES;
  out.set(metaBytes, o);
  o += metaBytes.length;
  out.set(m.cpu, o);
  o += m.cpu.length;
  out.set(map, o);
  v.setUint32(44, crc(out.subarray(0, 44), out.subarray(48)), true);
  return out;
}

/** zstd's ZSTD_COMPRESSBOUND: the most a frame of `n` input bytes can take. */
function zstdBound(n: number): number {
  return n + Math.floor(n / 256) + (n < 128 << 10 ? Math.floor(((128 << 10) - n) / 2048) : 0);
}

export interface ManifestLayout {
  metaLen: number;
  cpuLen: number;
  mapLen: number;
  entries: number;
}

/**
 * Checks a manifest's fixed 48-byte header against the limits and the file's size (`fileSize`),
 * before anything past it is read: magic, version, part lengths, the map's entry count against
 * what its bytes can hold.
 */
export function decodeManifestLayout(file: string, b: Uint8Array, fileSize: number): ManifestLayout {
  if (fileSize < MANIFEST_HEADER_BYTES || b.byteLength < MANIFEST_HEADER_BYTES) {
    throw new StoreFormatError(file, `manifest is truncated (${fileSize} bytes, header needs ${MANIFEST_HEADER_BYTES})`);
  }
  if (!magicAt(b, MANIFEST_MAGIC)) throw new StoreFormatError(file, 'not a manifest (bad magic)');
  const v = dv(b);
  const version = v.getUint16(8, true);
  if (version !== FORMAT_VERSION) throw new StoreFormatError(file, `unsupported manifest format version ${version} (this build reads ${FORMAT_VERSION})`);
  const metaLen = v.getUint32(28, true);
  const cpuLen = v.getUint32(32, true);
  const mapLen = v.getUint32(36, true);
  const entries = v.getUint32(24, true);
  if (metaLen > MAX_MANIFEST_META_BYTES) throw new StoreFormatError(file, `manifest metadata length ${metaLen} is more than the limit (${MAX_MANIFEST_META_BYTES})`);
  if (cpuLen > MAX_MANIFEST_CPU_BYTES) throw new StoreFormatError(file, `manifest CPU state length ${cpuLen} is more than the limit (${MAX_MANIFEST_CPU_BYTES})`);
  const total = MANIFEST_HEADER_BYTES + metaLen + cpuLen + mapLen;
  if (total !== fileSize) throw new StoreFormatError(file, `manifest is ${fileSize} bytes but its header describes ${total} (truncated or corrupt)`);
  if (entries > MAX_PAGES) throw new StoreFormatError(file, `map has ${entries} entries, more than this build supports (${MAX_PAGES})`);
  if (mapLen > zstdBound(entries * 12) || entries * 12 > mapLen * MAX_MAP_RATIO) {
    throw new StoreFormatError(file, `map of ${mapLen} bytes cannot hold ${entries} entries`);
  }
  return { metaLen, cpuLen, mapLen, entries };
}

/**
 * The rest of a manifest's head, once its layout is known: `front` is the header, metadata and CPU
 * state; `crcOk` whether the CRC over the whole file matched (the caller computed it).
 */
export function decodeManifestFront(file: string, front: Uint8Array, layout: ManifestLayout, crcOk: boolean): { full: boolean; pageSize: number; pageCount: number; entries: number; meta: ManifestMeta; cpu: Uint8Array } {
  if (!crcOk) throw new StoreFormatError(file, 'manifest checksum mismatch');
  const v = dv(front);
  const { metaLen, cpuLen, entries } = layout;
  const flags = v.getUint32(12, true);
  if (flags > 1) throw new StoreFormatError(file, `unknown manifest flags 0x${flags.toString(16)}`);
  const pageSize = v.getUint32(16, true);
  if (!isPowerOfTwoPageSize(pageSize)) throw new StoreFormatError(file, `bad page size ${pageSize}`);
  const pageCount = v.getUint32(20, true);
  if (pageCount > MAX_PAGES) throw new StoreFormatError(file, `page count ${pageCount} is more than this build supports (${MAX_PAGES})`);
  if (entries > pageCount) throw new StoreFormatError(file, `map has ${entries} entries for ${pageCount} pages`);
  let meta: ManifestMeta;
  try {
    meta = JSON.parse(Buffer.from(front.buffer, front.byteOffset + 48, metaLen).toString('utf8')) as ManifestMeta;
  } catch {
    throw new StoreFormatError(file, 'manifest metadata is not valid JSON');
  }
  if (!meta || typeof meta !== 'object' || typeof meta.id !== 'string' || (meta.parent !== null && typeof meta.parent !== 'string')
    || typeof meta.extents !== 'object' || meta.extents === null || typeof meta.stats !== 'object' || meta.stats === null) {
    throw new StoreFormatError(file, 'manifest metadata lacks id, parent, extents or stats');
  }
  const cpu = Uint8Array.prototype.slice.call(front, 48 + metaLen, 48 + metaLen + cpuLen);
  return { full: (flags & 1) === 1, pageSize, pageCount, entries, meta, cpu };
}

/** Header and metadata of a whole manifest in memory (no map decompression). */
export function decodeManifestHead(file: string, b: Uint8Array): { full: boolean; pageSize: number; pageCount: number; entries: number; meta: ManifestMeta; cpu: Uint8Array; map: Uint8Array } {
  const layout = decodeManifestLayout(file, b, b.byteLength);
  const crcOk = dv(b).getUint32(44, true) === crc(b.subarray(0, 44), b.subarray(48));
  const frontLen = MANIFEST_HEADER_BYTES + layout.metaLen + layout.cpuLen;
  return { ...decodeManifestFront(file, b.subarray(0, frontLen), layout, crcOk), map: b.subarray(frontLen) };
}

export function decodeManifestMap(file: string, head: { pageCount: number; entries: number; map: Uint8Array }, decompress: (b: Uint8Array) => Uint8Array): { pfns: Uint32Array; segments: Uint32Array; offsets: Uint32Array } {
  let raw: Uint8Array;
  try {
    raw = decompress(head.map);
  } catch (err) {
    throw new StoreFormatError(file, `manifest map does not decompress: ${(err as Error).message}`);
  }
  const n = head.entries;
  if (raw.byteLength !== n * 12) throw new StoreFormatError(file, `manifest map is ${raw.byteLength} bytes, expected ${n * 12}`);
  const copy = raw.byteOffset % 4 === 0 ? raw : new Uint8Array(raw); // Uint32Array views need alignment
  const pfns = new Uint32Array(copy.buffer, 0, n);
  const segments = new Uint32Array(copy.buffer, n * 4, n);
  const offsets = new Uint32Array(copy.buffer, n * 8, n);
  return { pfns, segments, offsets };
}
