/**
 * The checkpoint store: a directory of append-only segment files holding content-addressed page
 * records, and one manifest per checkpoint mapping each non-zero guest page to a record.
 *
 *   DIR/STORE                 versioned store header (page size)
 *   DIR/segments/NNNNNNNN.seg append-only: segment header, then records (page or delta, CRC each)
 *   DIR/manifests/NNNNNNNN.man one per checkpoint, written to a temporary name, fsynced, renamed,
 *                             directory fsynced: a checkpoint exists exactly when its manifest does
 *   DIR/LOCK                  held by the one writer (checkpoint, snapshot, prune, compact)
 *
 * Crash safety comes from ordering: records are appended and fsynced before the manifest that
 * refers to them is renamed into place, and nothing is ever rewritten in place. A writer always
 * appends to a fresh segment, so a torn tail from a crash is never appended to: on open, bytes past
 * the longest length any manifest recorded as committed are ignored. Pages are deduplicated by
 * XXH3-128 fingerprint within one namespace (tenant), always after a byte comparison with the
 * stored page; incremental checkpoints store XOR deltas against the parent's version of a page when
 * that is smaller, and zstd where it pays. Zero pages have no record at all.
 *
 * TypeScript here loops over records (one per stored page) and manifest entries; every pass over
 * page bytes (fingerprints, zero tests, gather/scatter, deltas, compression) is a native call.
 */
import fs from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { zstdCompress, zstdDecompressInto } from './codec.js';
import { kernels } from './kernels.js';
import {
  CODEC_RAW, CODEC_ZSTD, KIND_DELTA, KIND_PAGE, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, STORE_HEADER_BYTES,
  MAX_PAGES, MAX_SEGMENT, MAX_CHECKPOINT_ID, MANIFEST_HEADER_BYTES, MAX_MANIFEST_CPU_BYTES, MAX_MANIFEST_META_BYTES, StoreFormatError, decodeManifestLayout, decodeManifestFront, decodeManifestMap, crc, decodeSegmentHeader, decodeStoreHeader, encodeManifest, hexId, STORE_ID_BYTES,
  encodeSegmentHeader, encodeStoreHeader, isPowerOfTwoPageSize, parseRecordHeader, recordCrcOk, writeRecordHeader,
  type ManifestMeta,
} from './format.js';

/** Longest chain of deltas before a page is stored whole again (bounds restore work). */
export const MAX_DELTA_DEPTH = 8;
/** Every this many checkpoints of a chain the manifest carries the whole page map again. */
export const FULL_MAP_EVERY = 32;
const DEFAULT_SEGMENT_BYTES = 1 << 30;
/** Metadata bytes kept for what the store itself writes (ids, dates, extents, stats). */
const MANIFEST_META_RESERVE = 1 << 20;
const WRITE_CHUNK = 8 << 20;
const READ_WINDOW = 8 << 20;
const READ_BLOCK = 1 << 20;
const READ_BLOCKS_CACHED = 32;

/** The namespace every writer that asks for sharing uses. */
export const SHARED_NAMESPACE = 'shared';

export interface StoreOptions {
  /** Create the directory and store if missing (default false). */
  create?: boolean;
  /** Page size of a new store (default 4096); an existing store's must match if given. */
  pageSize?: number;
  /** Roll over to a new segment file past this size (default 1 GiB, at most 4 GiB - 1). */
  segmentBytes?: number;
  /** Records are written to the segment in chunks of this size (default 8 MiB, at least 64 KiB). */
  writeBufferBytes?: number;
}

export interface CheckpointInfo {
  id: string;
  parent: string | null;
  created: string;
  namespace: string;
  label: string | null;
  /** Whether the manifest holds the whole page map (else changes against its parent). */
  full: boolean;
  pageSize: number;
  pageCount: number;
  /** Bytes this checkpoint added: its records plus its manifest. */
  bytes: number;
  manifestBytes: number;
  stats: ManifestMeta['stats'];
  guest: Record<string, unknown> | null;
}

/** The resolved page map of one checkpoint: segment 0 means a zero page. */
export interface PageMap {
  pageCount: number;
  segments: Uint32Array;
  offsets: Uint32Array;
}

export interface CommitOptions {
  /** Pages written since the parent (ascending pfns); omitted: every page. */
  dirty?: Uint32Array | null;
  /**
   * The dirty pages already gathered (dirty.length * pageSize bytes, in `dirty` order), so that the
   * guest can run again while this commit encodes and writes them. Ignored by the first commit.
   */
  pages?: Uint8Array;
  /** CPU state blob (saveCpu()); empty for stopped images. */
  cpu?: Uint8Array;
  label?: string;
  guest?: Record<string, unknown>;
}

export interface WriterOptions {
  /** Dedup scope (default "default"); pages are never matched across namespaces. */
  namespace?: string;
  /** Use the shared namespace (overrides `namespace`). */
  shared?: boolean;
  /** Checkpoint to continue from (its pages become the delta bases). */
  parent?: string | null;
  /** Keep a copy of the last committed memory for deltas (default true). */
  incremental?: boolean;
}

export interface VerifyProblem {
  file: string;
  offset: number | null;
  problem: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Files in segments/ or manifests/ named like store files but not canonically (ignored, never read). */
  ignored: VerifyProblem[];
  segments: number;
  records: number;
  bytesRead: number;
  corrupt: VerifyProblem[];
  /** Uncommitted bytes after the last committed record of a segment (crash leftovers; harmless). */
  tornTails: { segment: number; bytes: number }[];
  checkpoints: { id: string; ok: boolean; problems: string[] }[];
}

/** A checkpoint could not be written; nothing committed before it changed. */
export class CheckpointError extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'CheckpointError';
  }
}

/** A copy (Buffer#slice would return a view). */
const copyOf = (u: Uint8Array, start?: number, end?: number): Uint8Array => Uint8Array.prototype.slice.call(u, start, end);
const pad = (n: number) => String(n).padStart(8, '0');
/** A record reference as one number: exact, since segment numbers are at most MAX_SEGMENT (2^21 - 1). */
const refKey = (seg: number, off: number) => seg * 4294967296 + off;
/** The segment and offset of a refKey. */
const refParts = (key: number): [seg: number, off: number] => [Math.floor(key / 4294967296), key % 4294967296];

/** The message of an error without its "FILE: " prefix when it names `file`. */
function problemOf(err: unknown, file: string): string {
  if (err instanceof StoreFormatError && err.file === file) return err.message.slice(file.length + 2);
  return (err as Error).message;
}

/**
 * Opens a store file for reading: a regular file, or a StoreFormatError naming it (never a bare
 * EISDIR; O_NONBLOCK so that a FIFO in its place cannot block the open).
 */
function openRegular(file: string, what: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new StoreFormatError(file, code === 'ENOENT' ? `${what} is missing (ENOENT)` : `${what} cannot be opened (${code ?? (err as Error).message})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new StoreFormatError(file, `${what} is not a regular file (${st.isDirectory() ? 'a directory' : 'a special file'})`);
    return { fd, size: st.size };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** The size of a store file that must be a regular file (openRegular's errors). */
function regularSize(file: string, what: string): number {
  const { fd, size } = openRegular(file, what);
  fs.closeSync(fd);
  return size;
}

/** readSync that throws a StoreFormatError naming the file on a system error. */
function readFd(file: string, what: string, fd: number, buf: Uint8Array, off: number, len: number, pos: number): number {
  try {
    return fs.readSync(fd, buf, off, len, pos);
  } catch (err) {
    throw new StoreFormatError(file, `${what} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Reads exactly `len` bytes at `pos` (the file was checked to be that long). */
function readExact(file: string, what: string, fd: number, buf: Uint8Array, pos: number): void {
  let o = 0;
  while (o < buf.byteLength) {
    const n = readFd(file, what, fd, buf, o, buf.byteLength - o, pos + o);
    if (n === 0) throw new StoreFormatError(file, `${what} ends early (changed while read?)`);
    o += n;
  }
}

/** Numbered files of a store directory: canonical names (pad(n) === name) from 1 to `max`, and the rest. */
function scanNumbered(dir: string, ext: string, max: number): { numbers: number[]; ignored: string[] } {
  const numbers: number[] = [];
  const ignored: string[] = [];
  const re = new RegExp(`^(\\d+)\\${ext}$`);
  for (const f of fs.readdirSync(dir)) {
    const m = re.exec(f);
    if (!m) continue;
    const n = Number(m[1]);
    if (pad(n) === m[1] && n >= 1 && n <= max) numbers.push(n);
    else ignored.push(f);
  }
  return { numbers: numbers.sort((a, b) => a - b), ignored: ignored.sort() };
}

function namespaceTag(name: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`understudy-namespace\0${name}`).digest().subarray(0, 8));
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** zstd, copied out of the codec's scratch buffer (for callers that keep the result). */
function compress(b: Uint8Array): Uint8Array {
  return copyOf(zstdCompress(b));
}

/** Decompresses `src` into `dst`, which must end up exactly full. */
function decompressExact(file: string, what: string, dst: Uint8Array, src: Uint8Array): void {
  let n: number;
  try {
    n = zstdDecompressInto(dst, src);
  } catch (err) {
    throw new StoreFormatError(file, `${what} does not decompress: ${(err as Error).message}`);
  }
  if (n !== dst.byteLength) throw new StoreFormatError(file, `${what} decompresses to ${n} bytes, expected ${dst.byteLength}`);
}

/** Decompresses `src` (at most `max` bytes out) into a scratch buffer; returns a view of it. */
let deltaScratch = new Uint8Array(0);
function decompressDelta(file: string, what: string, src: Uint8Array, max: number): Uint8Array {
  if (deltaScratch.byteLength < max) deltaScratch = new Uint8Array(max);
  try {
    return deltaScratch.subarray(0, zstdDecompressInto(deltaScratch.subarray(0, max), src));
  } catch (err) {
    throw new StoreFormatError(file, `${what} does not decompress: ${(err as Error).message}`);
  }
}

/** An open store directory. */
export class Store {
  readonly dir: string;
  readonly pageSize: number;
  readonly segmentBytes: number;
  /** 8 random bytes naming this store in its segments and manifests (null: a store made before ids). */
  readonly storeId: Uint8Array | null;
  private readonly fds = new Map<number, number>();
  private readonly blocks = new Map<number, { buf: Buffer; len: number }>();
  private readonly spare: Buffer[] = [];
  /** A record starting in a block always ends inside block + slack. */
  private readonly slack: number;
  /** key: namespace tag + fingerprint (latin1) -> record refs */
  private index: Map<string, number[]> | null = null;
  private lockHeld = false;
  private closed = false;
  /** committed segment lengths, kept while this process is the writer (see committedExtents) */
  private extentsCache: Map<number, number> | null = null;

  /** @internal */
  writeBufferBytes = WRITE_CHUNK;

  private constructor(dir: string, pageSize: number, segmentBytes: number, storeId: Uint8Array | null) {
    this.dir = dir;
    this.pageSize = pageSize;
    this.storeId = storeId;
    this.segmentBytes = segmentBytes;
    this.slack = RECORD_HEADER_BYTES + pageSize * 2 + 64;
  }

  /**
   * Opens (or with `create`, creates) a store directory.
   * @throws RangeError for bad options; StoreFormatError for a directory that is not a store.
   */
  static open(dir: string, options: StoreOptions = {}): Store {
    if (typeof dir !== 'string' || dir === '') throw new TypeError('`dir` must be a non-empty string');
    const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isInteger(segmentBytes) || segmentBytes < 65536 || segmentBytes > 0xffffffff) {
      throw new RangeError(`\`segmentBytes\` must be an integer from 65536 to 4294967295, got ${segmentBytes}`);
    }
    if (options.pageSize !== undefined && !isPowerOfTwoPageSize(options.pageSize)) {
      throw new RangeError(`\`pageSize\` must be a power of two from 512 to 1048576, got ${options.pageSize}`);
    }
    const wb = options.writeBufferBytes ?? WRITE_CHUNK;
    if (!Number.isInteger(wb) || wb < 65536 || wb > 1 << 30) {
      throw new RangeError(`\`writeBufferBytes\` must be an integer from 65536 to 1073741824, got ${wb}`);
    }
    const store = Store.openInner(dir, options, segmentBytes);
    store.writeBufferBytes = wb;
    return store;
  }

  private static openInner(dir: string, options: StoreOptions, segmentBytes: number): Store {
    const headerFile = join(dir, 'STORE');
    if (!fs.existsSync(headerFile)) {
      if (!options.create) throw new StoreFormatError(dir, 'no store here (missing STORE file)');
      const pageSize = options.pageSize ?? 4096;
      let storeId = new Uint8Array(randomBytes(STORE_ID_BYTES));
      while (storeId.every((x) => x === 0)) storeId = new Uint8Array(randomBytes(STORE_ID_BYTES));
      fs.mkdirSync(join(dir, 'segments'), { recursive: true });
      fs.mkdirSync(join(dir, 'manifests'), { recursive: true });
      const tmp = join(dir, '.STORE.tmp');
      const fd = fs.openSync(tmp, 'w');
      try {
        fs.writeSync(fd, encodeStoreHeader(pageSize, Date.now(), storeId));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, headerFile);
      fsyncDir(dir);
      return new Store(dir, pageSize, segmentBytes, storeId);
    }
    // At most 64 bytes are read: the header is 32 (version 1) or 40 (version 2) bytes.
    const { fd, size } = openRegular(headerFile, 'store header');
    const hb = new Uint8Array(Math.min(size, 64));
    try {
      readExact(headerFile, 'store header', fd, hb, 0);
    } finally {
      fs.closeSync(fd);
    }
    const { pageSize, storeId } = decodeStoreHeader(headerFile, hb);
    if (options.pageSize !== undefined && options.pageSize !== pageSize) {
      throw new RangeError(`\`pageSize\` ${options.pageSize} differs from the store's ${pageSize}`);
    }
    for (const d of ['segments', 'manifests']) {
      if (!fs.existsSync(join(dir, d))) throw new StoreFormatError(dir, `missing ${d}/ directory`);
    }
    return new Store(dir, pageSize, segmentBytes, storeId);
  }

  /** Closes cached file descriptors and releases the writer lock. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    this.blocks.clear();
    this.unlock();
  }

  // ------------------------------------------------------------------ files

  segmentFile(seg: number): string {
    return join(this.dir, 'segments', `${pad(seg)}.seg`);
  }

  manifestFile(id: string): string {
    return join(this.dir, 'manifests', `${pad(Number(id))}.man`);
  }

  /**
   * Segment numbers present, ascending: files named with exactly 8 digits, 00000001.seg to
   * MAX_SEGMENT. Other names (an alias such as 000000001.seg, a number past the limit) are
   * never read, written or deleted (strays() lists them).
   */
  segmentNumbers(): number[] {
    return scanNumbered(join(this.dir, 'segments'), '.seg', MAX_SEGMENT).numbers;
  }

  /** Checkpoint ids present, in creation order: manifest names that are pad(id) for 1 <= id <= MAX_CHECKPOINT_ID. */
  ids(): string[] {
    return scanNumbered(join(this.dir, 'manifests'), '.man', MAX_CHECKPOINT_ID).numbers.map(String);
  }

  /** Files named like segments or manifests that the store ignores (not canonical, or out of range). */
  strays(): VerifyProblem[] {
    const out: VerifyProblem[] = [];
    for (const f of scanNumbered(join(this.dir, 'segments'), '.seg', MAX_SEGMENT).ignored) {
      out.push({ file: join(this.dir, 'segments', f), offset: null, problem: `not a segment name this store uses (8 digits, 00000001 to ${pad(MAX_SEGMENT)}); ignored` });
    }
    for (const f of scanNumbered(join(this.dir, 'manifests'), '.man', MAX_CHECKPOINT_ID).ignored) {
      out.push({ file: join(this.dir, 'manifests', f), offset: null, problem: `not a manifest name this store uses (the id in at least 8 digits, no other leading zeros, 1 to ${MAX_CHECKPOINT_ID}); ignored` });
    }
    return out;
  }

  /** Takes the writer lock (one writer per store; a lock left by a dead process is taken over). */
  lock(): void {
    if (this.lockHeld) return;
    const file = join(this.dir, 'LOCK');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = fs.openSync(file, 'wx');
        fs.writeSync(fd, String(process.pid));
        fs.closeSync(fd);
        this.lockHeld = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        let text: string;
        try {
          const { fd, size } = openRegular(file, 'lock file');
          try {
            const b = Buffer.alloc(Math.min(size, 32));
            text = b.subarray(0, readFd(file, 'lock file', fd, b, 0, b.length, 0)).toString('latin1');
          } finally {
            fs.closeSync(fd);
          }
        } catch (e) {
          if (e instanceof StoreFormatError && /is missing/.test(e.message)) continue; // released meanwhile
          throw e;
        }
        const pid = Number(text);
        let alive = false;
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
          try {
            process.kill(pid, 0);
            alive = true;
          } catch (e) {
            alive = (e as NodeJS.ErrnoException).code === 'EPERM';
          }
        }
        if (alive) throw new Error(`store ${this.dir} is in use by process ${pid} (LOCK)`);
        fs.rmSync(file, { force: true });
      }
    }
    throw new Error(`could not take the lock of store ${this.dir}`);
  }

  unlock(): void {
    if (!this.lockHeld) return;
    this.lockHeld = false;
    fs.rmSync(join(this.dir, 'LOCK'), { force: true });
  }

  // ------------------------------------------------------------------ manifests

  /**
   * A manifest's header, metadata and CPU state (and with `withMap` its compressed map), checked:
   * the fixed header first, its lengths against the limits and the file's size, then the rest,
   * CRC-checked in 1 MiB pieces so that the memory used is what the parts asked for need.
   */
  private readManifestHead(id: string, withMap = false) {
    const file = this.manifestFile(id);
    const { fd, size } = openRegular(file, 'manifest');
    let head;
    let map: Uint8Array;
    try {
      const hb = new Uint8Array(MANIFEST_HEADER_BYTES);
      if (size >= MANIFEST_HEADER_BYTES) readExact(file, 'manifest', fd, hb, 0);
      const layout = decodeManifestLayout(file, hb, size);
      const front = new Uint8Array(MANIFEST_HEADER_BYTES + layout.metaLen + layout.cpuLen);
      front.set(hb);
      readExact(file, 'manifest', fd, front.subarray(MANIFEST_HEADER_BYTES), MANIFEST_HEADER_BYTES);
      let c = crc(hb.subarray(0, 44), front.subarray(MANIFEST_HEADER_BYTES));
      if (withMap) {
        map = new Uint8Array(layout.mapLen);
        readExact(file, 'manifest', fd, map, front.byteLength);
        c = crc32(map, c) >>> 0;
      } else {
        map = new Uint8Array(0);
        const piece = new Uint8Array(Math.min(layout.mapLen, 1 << 20));
        for (let o = 0; o < layout.mapLen; o += piece.byteLength) {
          const part = piece.subarray(0, Math.min(piece.byteLength, layout.mapLen - o));
          readExact(file, 'manifest', fd, part, front.byteLength + o);
          c = crc32(part, c) >>> 0;
        }
      }
      const want = new DataView(hb.buffer).getUint32(44, true);
      head = decodeManifestFront(file, front, layout, c === want);
    } finally {
      fs.closeSync(fd);
    }
    if (head.pageSize !== this.pageSize) throw new StoreFormatError(file, `page size ${head.pageSize} differs from the store's ${this.pageSize}`);
    if (head.meta.id !== id) throw new StoreFormatError(file, `manifest names checkpoint ${JSON.stringify(head.meta.id)}, expected ${id}`);
    const theirs = head.meta.store;
    const mine = this.storeId ? hexId(this.storeId) : undefined;
    if (theirs !== mine) {
      throw new StoreFormatError(file, `manifest belongs to another store (store id ${theirs === undefined ? 'none' : typeof theirs === 'string' ? theirs : JSON.stringify(theirs)}, this store's ${mine ?? 'none'})`);
    }
    return { file, size, ...head, map };
  }

  /** Metadata of one checkpoint. @throws StoreFormatError if its manifest is missing or corrupt. */
  info(id: string): CheckpointInfo {
    this.checkId(id);
    const h = this.readManifestHead(id);
    const m = h.meta;
    return {
      id: m.id, parent: m.parent, created: m.created, namespace: m.namespace, label: m.label ?? null,
      full: h.full, pageSize: h.pageSize, pageCount: h.pageCount,
      bytes: (m.stats.recordBytes ?? 0) + h.size, manifestBytes: h.size, stats: m.stats, guest: m.guest ?? null,
    };
  }

  /** Every readable checkpoint in creation order, and the manifests that could not be read. */
  list(): { checkpoints: CheckpointInfo[]; problems: VerifyProblem[]; ignored: VerifyProblem[] } {
    const checkpoints: CheckpointInfo[] = [];
    const problems: VerifyProblem[] = [];
    for (const id of this.ids()) {
      try {
        checkpoints.push(this.info(id));
      } catch (err) {
        const file = this.manifestFile(id);
        problems.push({ file, offset: null, problem: problemOf(err, file) });
      }
    }
    return { checkpoints, problems, ignored: this.strays() };
  }

  private checkId(id: string): void {
    if (typeof id !== 'string') {
      throw new TypeError(`\`checkpoint\` must be a checkpoint id string such as '12' (as list() gives them), got ${typeof id} ${String(id)}`);
    }
    if (!/^\d{1,15}$/.test(id) || String(Number(id)) !== id) {
      throw new RangeError(`\`checkpoint\` must be a checkpoint id (a decimal number), got ${JSON.stringify(id)}`);
    }
    if (Number(id) < 1 || !fs.existsSync(this.manifestFile(id))) throw new RangeError(`no checkpoint ${id} in ${this.dir}`);
  }

  /** Resolves `latest` or an id. */
  resolveId(name: string): string {
    if (name === 'latest') {
      const ids = this.ids();
      if (!ids.length) throw new RangeError(`store ${this.dir} has no checkpoints`);
      return ids[ids.length - 1]!;
    }
    this.checkId(name);
    return name;
  }

  /** The whole page map of a checkpoint (following the chain of change-only manifests). */
  pageMap(id: string): PageMap & { cpu: Uint8Array; meta: ManifestMeta } {
    this.checkId(id);
    const chain: ReturnType<Store['readManifestHead']>[] = [];
    let cur: string | null = id;
    const seen = new Set<string>();
    for (;;) {
      if (cur === null) throw new StoreFormatError(this.manifestFile(id), 'change-only manifest chain has no full manifest at its root');
      if (seen.has(cur)) throw new StoreFormatError(this.manifestFile(id), `manifest chain loops at ${cur}`);
      seen.add(cur);
      if (!fs.existsSync(this.manifestFile(cur))) throw new StoreFormatError(this.manifestFile(id), `parent checkpoint ${cur} is missing`);
      const h = this.readManifestHead(cur, true);
      chain.push(h);
      if (h.full) break;
      cur = h.meta.parent;
    }
    const top = chain[0]!;
    const pageCount = top.pageCount;
    const segments = new Uint32Array(pageCount);
    const offsets = new Uint32Array(pageCount);
    for (let i = chain.length - 1; i >= 0; i--) {
      const h = chain[i]!;
      if (h.pageCount !== pageCount) throw new StoreFormatError(h.file, `page count ${h.pageCount} differs from ${pageCount} in the chain`);
      const map = decodeManifestMap(h.file, h, (b) => {
        const raw = new Uint8Array(h.entries * 12);
        decompressExact(h.file, 'manifest map', raw, b);
        return raw;
      });
      for (let e = 0; e < map.pfns.length; e++) {
        const pfn = map.pfns[e]!;
        if (pfn >= pageCount) throw new StoreFormatError(h.file, `map entry ${e} names page ${pfn}, past the ${pageCount} pages`);
        if (map.segments[e]! > MAX_SEGMENT) throw new StoreFormatError(h.file, `map entry ${e} names segment ${map.segments[e]}, past the highest segment number (${MAX_SEGMENT})`);
        segments[pfn] = map.segments[e]!;
        offsets[pfn] = map.offsets[e]!;
      }
    }
    return { pageCount, segments, offsets, cpu: top.cpu, meta: top.meta };
  }

  /** `replace`: a rewrite of an existing manifest (prune, compact); otherwise the id must be new. */
  private writeManifestAtomic(id: string, bytes: Uint8Array, replace: boolean): void {
    if (!replace) {
      let exists = true;
      try {
        fs.lstatSync(this.manifestFile(id));
      } catch {
        exists = false;
      }
      if (exists) throw new StoreFormatError(this.manifestFile(id), `checkpoint ${id} already exists; refusing to replace its manifest`);
    }
    const tmp = join(this.dir, 'manifests', `.tmp-${pad(Number(id))}-${process.pid}`);
    const fd = fs.openSync(tmp, 'w');
    try {
      let o = 0;
      while (o < bytes.byteLength) o += fs.writeSync(fd, bytes, o, bytes.byteLength - o);
      fs.fsyncSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, this.manifestFile(id));
    fsyncDir(join(this.dir, 'manifests'));
  }

  /** Committed length of each segment: the longest any readable manifest recorded. */
  committedExtents(): Map<number, number> {
    // Cached only while this process holds the writer lock: nobody else can commit then.
    if (this.extentsCache && this.lockHeld) return new Map(this.extentsCache);
    const ext = this.scanExtents();
    this.extentsCache = this.lockHeld ? ext : null;
    return new Map(ext);
  }

  /** @internal a writer committed `len` bytes of segment `seg` */
  _committed(seg: number, len: number): void {
    if (this.extentsCache) this.extentsCache.set(seg, Math.max(this.extentsCache.get(seg) ?? 0, len));
  }

  private scanExtents(): Map<number, number> {
    const ext = new Map<number, number>();
    for (const id of this.ids()) {
      let meta: ManifestMeta;
      try {
        meta = this.readManifestHead(id).meta;
      } catch {
        continue;
      }
      for (const [k, v] of Object.entries(meta.extents)) {
        const seg = Number(k);
        if (String(seg) === k && Number.isInteger(seg) && seg > 0 && seg <= MAX_SEGMENT && Number.isInteger(v) && v > 0 && v <= 0xffffffff) ext.set(seg, Math.max(ext.get(seg) ?? 0, v));
      }
    }
    return ext;
  }

  // ------------------------------------------------------------------ reading records

  private segmentFd(seg: number): number {
    let fd = this.fds.get(seg);
    if (fd === undefined) {
      const file = this.segmentFile(seg);
      if (seg < 1 || seg > MAX_SEGMENT) throw new StoreFormatError(file, `segment number ${seg} is out of range (1 to ${MAX_SEGMENT})`);
      fd = openRegular(file, 'segment').fd;
      try {
        const head = Buffer.alloc(SEGMENT_HEADER_BYTES);
        const n = readFd(file, 'segment', fd, head, 0, SEGMENT_HEADER_BYTES, 0);
        decodeSegmentHeader(file, head.subarray(0, n), this.pageSize, seg, this.storeId);
      } catch (err) {
        fs.closeSync(fd);
        throw err;
      }
      this.fds.set(seg, fd);
    }
    return fd;
  }

  /**
   * Bytes [off, off+len) of a segment (a view valid until the next read), through a small LRU
   * cache of aligned blocks: sequential reads cost one read() per block, and the jumps that
   * deduplicated pages cause cost one block each.
   */
  private readAt(seg: number, off: number, len: number): Uint8Array {
    const block = Math.floor(off / READ_BLOCK);
    const key = seg * 1048576 + block;
    let b = this.blocks.get(key);
    if (b) {
      this.blocks.delete(key);
      this.blocks.set(key, b);
    } else {
      const fd = this.segmentFd(seg);
      const buf = this.spare.pop() ?? Buffer.allocUnsafe(READ_BLOCK + this.slack);
      let n: number;
      try {
        n = readFd(this.segmentFile(seg), 'segment', fd, buf, 0, buf.length, block * READ_BLOCK);
      } catch (err) {
        this.spare.push(buf);
        throw err;
      }
      b = { buf, len: n };
      this.blocks.set(key, b);
      if (this.blocks.size > READ_BLOCKS_CACHED) {
        const oldest = this.blocks.keys().next().value as number;
        this.spare.push(this.blocks.get(oldest)!.buf);
        this.blocks.delete(oldest);
      }
    }
    const rel = off - block * READ_BLOCK;
    return b.buf.subarray(rel, Math.min(rel + len, b.len));
  }

  /** Forgets cached segment contents (after this process appended to a segment). */
  private invalidate(seg: number): void {
    for (const key of [...this.blocks.keys()]) {
      if (Math.floor(key / 1048576) === seg) {
        this.spare.push(this.blocks.get(key)!.buf);
        this.blocks.delete(key);
      }
    }
  }

  /**
   * The record at (seg, off), CRC checked. `payload` is a view into the read cache, valid until
   * the next read of the store; `copy: true` returns a copy.
   */
  readRecord(seg: number, off: number, copy = true): { header: NonNullable<ReturnType<typeof parseRecordHeader>>; payload: Uint8Array } {
    if (off < SEGMENT_HEADER_BYTES) throw new StoreFormatError(this.segmentFile(seg), `record offset ${off} is inside the segment header`);
    const all = this.readAt(seg, off, this.slack);
    const header = parseRecordHeader(all, this.pageSize);
    if (!header) {
      const why = all.byteLength < RECORD_HEADER_BYTES ? 'is truncated' : 'is not a valid record';
      throw new StoreFormatError(this.segmentFile(seg), `record at offset ${off} ${why}`);
    }
    const end = RECORD_HEADER_BYTES + header.payloadLength;
    if (all.byteLength < end) throw new StoreFormatError(this.segmentFile(seg), `record at offset ${off} is truncated`);
    const payload = all.subarray(RECORD_HEADER_BYTES, end);
    if (!recordCrcOk(all, payload)) throw new StoreFormatError(this.segmentFile(seg), `record at offset ${off} fails its checksum`);
    if (!copy) return { header, payload };
    return { header: { ...header, namespace: copyOf(header.namespace), fingerprint: copyOf(header.fingerprint) }, payload: copyOf(payload) };
  }

  /**
   * Writes the page stored at (seg, off) into `out` (pageSize bytes), following deltas, and checks
   * it against the record's fingerprint (XXH3-128).
   */
  readPage(seg: number, off: number, out: Uint8Array, expectDepth = -1): void {
    const want = new Uint8Array(16);
    this.decodePage(seg, off, out, expectDepth, want);
    const got = kernels().fingerprintPages(out.subarray(0, this.pageSize), { pageSize: this.pageSize });
    if (!sameFingerprint(got, 0, want, 0)) throw this.fingerprintError(seg, off, '');
  }

  private fingerprintError(seg: number, off: number, where: string): StoreFormatError {
    return new StoreFormatError(this.segmentFile(seg), `record at offset ${off} does not yield the page its fingerprint names${where} (its bytes were altered, or come from another store)`);
  }

  /** readPage without the fingerprint check; the record's fingerprint goes to `fpOut`. */
  private decodePage(seg: number, off: number, out: Uint8Array, expectDepth: number, fpOut: Uint8Array | null): void {
    const { header, payload } = this.readRecord(seg, off, false);
    if (fpOut) fpOut.set(header.fingerprint);
    const bad = (what: string) => new StoreFormatError(this.segmentFile(seg), `record at offset ${off} ${what}`);
    // (bad() only allocates on the error paths' calls)
    if (expectDepth >= 0 && header.depth !== expectDepth) throw bad(`has delta depth ${header.depth}, expected ${expectDepth}`);
    if (header.depth > MAX_DELTA_DEPTH) throw bad(`has delta depth ${header.depth} > ${MAX_DELTA_DEPTH}`);
    const ps = this.pageSize;
    if (header.kind === KIND_PAGE) {
      if (header.codec === CODEC_ZSTD) {
        decompressExact(this.segmentFile(seg), `page record at offset ${off}`, out, payload);
      } else {
        out.set(payload);
      }
      return;
    }
    // A delta: the payload view would not survive reading the base, so keep a copy.
    const own = copyOf(payload);
    const { baseSegment, baseOffset, codec, depth } = header;
    if (baseSegment === 0) out.fill(0);
    else this.decodePage(baseSegment, baseOffset, out, depth - 1, null);
    const delta = codec === CODEC_ZSTD ? decompressDelta(this.segmentFile(seg), `delta record at offset ${off}`, own, ps * 2 + 64) : own;
    try {
      kernels().applyDelta(out, delta);
    } catch (err) {
      throw bad(`(a delta) does not apply: ${(err as Error).message}`);
    }
  }

  /**
   * The memory image of a checkpoint (pageCount * pageSize bytes), written into `target` if given
   * (it must be that size and zeroed, e.g. fresh guest memory).
   */
  readMemory(id: string, target?: Uint8Array): { memory: Uint8Array; cpu: Uint8Array; meta: ManifestMeta; map: PageMap } {
    const map = this.pageMap(id);
    const ps = this.pageSize;
    const bytes = map.pageCount * ps;
    if (target === undefined && bytes > bufferConstants.MAX_LENGTH) {
      throw new RangeError(
        `checkpoint ${id} holds ${bytes} bytes of memory, more than one buffer may hold in this Node.js (${bufferConstants.MAX_LENGTH})`,
      );
    }
    const memory = target ?? new Uint8Array(bytes);
    if (memory.byteLength !== bytes) throw new RangeError(`\`target\` must be ${bytes} bytes for checkpoint ${id}, got ${memory.byteLength}`);
    const { segments, offsets } = map;
    const k = kernels();
    // Stored (non-zero) pages: the zero test of a map of u32 segment numbers gives runs to visit.
    const present = k.scanBitmap(this.presentBitmap(segments));
    // A record shared by several pages (deduplicated) is decoded once; later pages copy it.
    const first = new Map<number, number>(); // ref -> index in `present`
    const want = new Uint8Array(present.length * 16); // each page's record fingerprint
    for (let i = 0; i < present.length; i++) {
      const pfn = present[i]!;
      const key = refKey(segments[pfn]!, offsets[pfn]!);
      const f = first.get(key);
      if (f !== undefined) {
        const fpfn = present[f]!;
        memory.copyWithin(pfn * ps, fpfn * ps, fpfn * ps + ps);
        want.copyWithin(i * 16, f * 16, f * 16 + 16);
      } else {
        this.decodePage(segments[pfn]!, offsets[pfn]!, memory.subarray(pfn * ps, pfn * ps + ps), -1, want.subarray(i * 16, i * 16 + 16));
        first.set(key, i);
      }
    }
    // Every page is checked against its record's fingerprint, in native batches: a span of memory
    // where the present pages are dense, else the pages gathered.
    for (let a = 0; a < present.length; a += 4096) {
      const b = Math.min(present.length, a + 4096);
      const lo = present[a]!;
      const hi = present[b - 1]!;
      const dense = hi - lo + 1 <= 2 * (b - a);
      const fps = dense
        ? k.fingerprintPages(memory.subarray(lo * ps, (hi + 1) * ps), { pageSize: ps })
        : k.fingerprintPages(k.gatherPages(memory, present.subarray(a, b), { pageSize: ps }), { pageSize: ps });
      for (let i = a; i < b; i++) {
        const pfn = present[i]!;
        if (!sameFingerprint(fps, (dense ? pfn - lo : i - a) * 16, want, i * 16)) {
          throw this.fingerprintError(segments[pfn]!, offsets[pfn]!, ` (page ${pfn} of checkpoint ${id})`);
        }
      }
    }
    return { memory, cpu: map.cpu, meta: map.meta, map };
  }

  /** Bitmap of pages with a record (segment != 0). */
  private presentBitmap(segments: Uint32Array): Uint8Array {
    const n = segments.length;
    const bm = new Uint8Array((n + 7) >> 3);
    // Segment numbers are 32-bit: mark non-zero words. This runs over map entries, not page bytes.
    for (let i = 0; i < n; i++) if (segments[i] !== 0) bm[i >> 3]! |= 1 << (i & 7);
    return bm;
  }

  // ------------------------------------------------------------------ dedup index

  /** The dedup index over committed page records (built on first use). */
  private dedupIndex(): Map<string, number[]> {
    if (this.index) return this.index;
    const index = new Map<string, number[]>();
    const ext = this.committedExtents();
    for (const [seg, committed] of ext) {
      if (!fs.existsSync(this.segmentFile(seg))) continue;
      this.scanSegment(seg, committed, (off, h) => {
        if (h.kind !== KIND_PAGE) return;
        const key = Buffer.from(h.namespace).toString('latin1') + Buffer.from(h.fingerprint).toString('latin1');
        const list = index.get(key);
        if (list) list.push(refKey(seg, off));
        else index.set(key, [refKey(seg, off)]);
      }, false);
    }
    this.index = index;
    return index;
  }

  /**
   * Walks the records of a segment up to `limit` bytes, calling `fn` for each. Returns where the
   * walk stopped and why (null: reached the limit cleanly).
   */
  scanSegment(seg: number, limit: number, fn: (off: number, h: NonNullable<ReturnType<typeof parseRecordHeader>>, crcOk: boolean) => void, checkCrc: boolean): { end: number; problem: string | null; bytesRead: number } {
    const file = this.segmentFile(seg);
    const { fd, size } = openRegular(file, 'segment');
    let bytesRead = 0;
    try {
      const end = Math.min(limit, size);
      const head = Buffer.alloc(SEGMENT_HEADER_BYTES);
      readFd(file, 'segment', fd, head, 0, SEGMENT_HEADER_BYTES, 0);
      try {
        decodeSegmentHeader(file, head, this.pageSize, seg, this.storeId);
      } catch (err) {
        return { end: 0, problem: problemOf(err, file), bytesRead: SEGMENT_HEADER_BYTES };
      }
      const buf = Buffer.allocUnsafe(READ_WINDOW);
      let bufStart = 0;
      let bufLen = 0;
      let off = SEGMENT_HEADER_BYTES;
      const view = (o: number, len: number): Uint8Array | null => {
        if (o + len > end) return null;
        if (o < bufStart || o + len > bufStart + bufLen) {
          bufStart = o;
          bufLen = readFd(file, 'segment', fd, buf, 0, Math.min(buf.length, end - o), o);
          bytesRead += bufLen;
          if (len > bufLen) return null;
        }
        return buf.subarray(o - bufStart, o - bufStart + len);
      };
      while (off < end) {
        const hb = view(off, RECORD_HEADER_BYTES);
        if (!hb) return { end: off, problem: `truncated record header at offset ${off}`, bytesRead };
        const h = parseRecordHeader(hb, this.pageSize);
        if (!h) return { end: off, problem: `no valid record header at offset ${off}`, bytesRead };
        const hcopy = { ...h, namespace: copyOf(h.namespace), fingerprint: copyOf(h.fingerprint) };
        let ok = true;
        if (checkCrc) {
          const all = view(off, RECORD_HEADER_BYTES + h.payloadLength);
          if (!all) return { end: off, problem: `truncated record at offset ${off}`, bytesRead };
          ok = recordCrcOk(all.subarray(0, RECORD_HEADER_BYTES), all.subarray(RECORD_HEADER_BYTES));
        } else if (off + RECORD_HEADER_BYTES + h.payloadLength > end) {
          return { end: off, problem: `truncated record at offset ${off}`, bytesRead };
        }
        fn(off, hcopy, ok);
        off += RECORD_HEADER_BYTES + h.payloadLength;
      }
      return { end: off, problem: null, bytesRead };
    } finally {
      fs.closeSync(fd);
    }
  }

  // ------------------------------------------------------------------ writing

  /** Starts a writer for one guest's chain of checkpoints (takes the store's lock). */
  writer(options: WriterOptions = {}): CheckpointWriter {
    this.lock();
    return new CheckpointWriter(this, options);
  }

  /** @internal */
  _index(): Map<string, number[]> {
    return this.dedupIndex();
  }

  /** @internal a segment opened for appending by a writer */
  _openSegment(): SegmentAppender {
    const existing = this.segmentNumbers();
    const last = existing.length ? existing[existing.length - 1]! : 0;
    if (last >= MAX_SEGMENT) {
      throw new StoreFormatError(this.segmentFile(last), `segment ${last} is the highest number a store may use (${MAX_SEGMENT}); no segment can be created after it`);
    }
    return new SegmentAppender(this, last + 1);
  }

  /** @internal */
  _invalidate(seg: number): void {
    this.invalidate(seg);
  }

  /** @internal */
  _writeManifest(id: string, bytes: Uint8Array): void {
    this.writeManifestAtomic(id, bytes, false);
  }

  /** @internal next checkpoint id (one past the highest; refused past MAX_CHECKPOINT_ID) */
  _nextId(): string {
    const ids = this.ids();
    const last = ids.length ? Number(ids[ids.length - 1]) : 0;
    if (last >= MAX_CHECKPOINT_ID) {
      throw new StoreFormatError(this.manifestFile(String(last)), `checkpoint id ${last} is the highest a store may use (${MAX_CHECKPOINT_ID}); no checkpoint can be numbered after it`);
    }
    return String(last + 1);
  }

  // ------------------------------------------------------------------ verify

  /** Reads every segment and manifest; reports corrupt records and the checkpoints they hurt. */
  verify(): VerifyReport {
    const corrupt: VerifyProblem[] = [];
    const tornTails: VerifyReport['tornTails'] = [];
    const good = new Map<number, { depth: number; kind: number; base: number }>();
    const ext = this.scanExtents();
    let records = 0;
    let bytesRead = 0;
    const segs = this.segmentNumbers();
    // A segment the manifests commit records in but that is gone: one problem, naming the file.
    for (const [seg, committed] of ext) {
      if (committed > 0 && !segs.includes(seg)) {
        corrupt.push({ file: this.segmentFile(seg), offset: null, problem: `segment is missing (${committed} committed bytes)` });
      }
    }
    for (const seg of segs) {
      const file = this.segmentFile(seg);
      // A segment that cannot be opened or read (a directory in its place, EIO) is one problem;
      // the walk goes on to the others.
      try {
        const size = regularSize(file, 'segment');
        const committed = ext.get(seg) ?? 0;
        if (committed === 0) {
          if (size > 0) tornTails.push({ segment: seg, bytes: size });
          continue;
        }
        const r = this.scanSegment(seg, committed, (off, h, ok) => {
          records++;
          if (ok) good.set(refKey(seg, off), { depth: h.depth, kind: h.kind, base: refKey(h.baseSegment, h.baseOffset) });
          else corrupt.push({ file, offset: off, problem: `record at offset ${off} fails its checksum` });
        }, true);
        bytesRead += r.bytesRead;
        if (r.problem) corrupt.push({ file, offset: r.end, problem: `${r.problem}; the ${Math.max(0, Math.min(committed, size) - r.end)} committed bytes from there on are unreadable` });
        if (committed > size) corrupt.push({ file, offset: size, problem: `segment is ${size} bytes but ${committed} were committed (truncated)` });
        if (size > committed) tornTails.push({ segment: seg, bytes: size - committed });
      } catch (err) {
        corrupt.push({ file, offset: null, problem: problemOf(err, file) });
      }
    }
    const checkpoints: VerifyReport['checkpoints'] = [];
    // A page's problem: null if its record (and every base of its delta chain) is readable, else
    // the record that is not, so the pages and records hurt can be counted per segment.
    const checkRef = (key: number, depth: number): { missing: number } | 'deep' | null => {
      for (let d = depth; ; d--) {
        const r = good.get(key);
        if (!r) return { missing: key };
        if (r.kind === KIND_PAGE || r.base < 4294967296) return null;
        if (d < 0) return 'deep';
        key = r.base;
      }
    };
    // Every record whose chain is readable must yield the page its fingerprint names (a payload
    // edited with its CRC recomputed, or a delta applied to a base from another store, does not).
    {
      const ps = this.pageSize;
      const BATCH = 256;
      const pages = new Uint8Array(BATCH * ps);
      const want = new Uint8Array(BATCH * 16);
      const keys: number[] = [];
      const flush = () => {
        if (!keys.length) return;
        const fps = kernels().fingerprintPages(pages.subarray(0, keys.length * ps), { pageSize: ps });
        for (let j = 0; j < keys.length; j++) {
          if (sameFingerprint(fps, j * 16, want, j * 16)) continue;
          const key = keys[j]!;
          const [seg, off] = refParts(key);
          const err = this.fingerprintError(seg, off, '');
          corrupt.push({ file: err.file, offset: off, problem: problemOf(err, err.file) });
          good.delete(key);
        }
        keys.length = 0;
      };
      for (const key of [...good.keys()]) {
        const r = good.get(key);
        if (!r) continue;
        if (r.kind === KIND_DELTA && checkRef(key, MAX_DELTA_DEPTH) !== null) continue; // its base is reported
        const [seg, off] = refParts(key);
        const n = keys.length;
        try {
          this.decodePage(seg, off, pages.subarray(n * ps, n * ps + ps), -1, want.subarray(n * 16, n * 16 + 16));
          keys.push(key);
        } catch (err) {
          const file = this.segmentFile(seg);
          corrupt.push({ file, offset: off, problem: problemOf(err, file) });
          good.delete(key);
        }
        if (keys.length === BATCH) flush();
      }
      flush();
    }
    for (const id of this.ids()) {
      const problems: string[] = [];
      try {
        const map = this.pageMap(id);
        bytesRead += fs.statSync(this.manifestFile(id)).size;
        // Per segment: the pages hurt, and the distinct unreadable records with their offsets.
        const bySeg = new Map<number, { pages: number; records: Set<number>; lo: number; hi: number }>();
        let deep = 0;
        for (let pfn = 0; pfn < map.pageCount; pfn++) {
          const seg = map.segments[pfn]!;
          if (seg === 0) continue;
          const p = checkRef(refKey(seg, map.offsets[pfn]!), MAX_DELTA_DEPTH);
          if (p === null) continue;
          if (p === 'deep') {
            deep++;
            continue;
          }
          const [s2, off] = refParts(p.missing);
          const e = bySeg.get(s2) ?? { pages: 0, records: new Set<number>(), lo: off, hi: off };
          e.pages++;
          e.records.add(off);
          e.lo = Math.min(e.lo, off);
          e.hi = Math.max(e.hi, off);
          bySeg.set(s2, e);
        }
        for (const [seg2, e] of [...bySeg].sort((a, b) => a[0] - b[0])) {
          const where = e.records.size === 1 ? `at offset ${e.lo}` : `at offsets ${e.lo} to ${e.hi}`;
          problems.push(`${e.pages} page(s): ${e.records.size} record(s) of ${this.segmentFile(seg2)} ${where} missing or corrupt`);
        }
        if (deep) problems.push(`${deep} page(s): delta chain too deep`);
      } catch (err) {
        problems.push((err as Error).message);
        if (err instanceof StoreFormatError && err.file === this.manifestFile(id)) {
          corrupt.push({ file: err.file, offset: null, problem: err.message.slice(err.file.length + 2) });
        }
      }
      checkpoints.push({ id, ok: problems.length === 0, problems });
    }
    const ok = corrupt.length === 0 && checkpoints.every((c) => c.ok);
    return { ok, ignored: this.strays(), segments: segs.length, records, bytesRead, corrupt, tornTails, checkpoints };
  }

  // ------------------------------------------------------------------ prune and compact

  /**
   * Deletes checkpoints: all but the newest `keep`, and/or those created more than `olderThanMs`
   * ago. Kept checkpoints whose manifests depended on a deleted one are first rewritten with their
   * whole page map (atomically). Records are reclaimed by compact().
   */
  prune(options: { keep?: number; olderThanMs?: number; now?: number }): { removed: string[]; rewritten: string[] } {
    const { keep, olderThanMs } = options;
    if (keep === undefined && olderThanMs === undefined) throw new RangeError('prune needs `keep` or `olderThanMs`');
    if (keep !== undefined && (!Number.isInteger(keep) || keep < 0)) throw new RangeError(`\`keep\` must be a non-negative integer, got ${keep}`);
    if (olderThanMs !== undefined && !(olderThanMs >= 0)) throw new RangeError(`\`olderThanMs\` must be a non-negative number, got ${olderThanMs}`);
    this.lock();
    const ids = this.ids();
    // Which checkpoints are "the newest N" is only known when every manifest can be read: refuse
    // (changing nothing) while one cannot, as compact does.
    for (const id of ids) {
      try {
        this.readManifestHead(id);
      } catch (err) {
        const file = this.manifestFile(id);
        throw new StoreFormatError(file, `${problemOf(err, file)}; prune changed nothing (it does not run while a manifest is unreadable: see \`understudy verify\`)`);
      }
    }
    const now = options.now ?? Date.now();
    const remove = new Set<string>();
    if (keep !== undefined) for (const id of ids.slice(0, Math.max(0, ids.length - keep))) remove.add(id);
    if (olderThanMs !== undefined) {
      for (const id of ids) {
        try {
          if (now - Date.parse(this.info(id).created) > olderThanMs) remove.add(id);
        } catch {
          // unreadable manifests are verify's business, not prune's
        }
      }
    }
    const rewritten: string[] = [];
    for (const id of ids) {
      if (remove.has(id)) continue;
      let head;
      try {
        head = this.readManifestHead(id);
      } catch {
        continue;
      }
      if (head.full) continue;
      // Does its chain pass through a checkpoint being removed?
      let dep = false;
      let cur: string | null = head.meta.parent;
      while (cur !== null && fs.existsSync(this.manifestFile(cur))) {
        if (remove.has(cur)) { dep = true; break; }
        const h = this.readManifestHead(cur);
        if (h.full) break;
        cur = h.meta.parent;
      }
      if (dep) {
        this.rewriteFull(id, null);
        rewritten.push(id);
      }
    }
    // Newest first: a change-only manifest is always deleted before its parent, so a prune
    // interrupted at any point leaves every remaining checkpoint readable.
    for (const id of [...ids].reverse()) if (remove.has(id)) fs.rmSync(this.manifestFile(id), { force: true });
    fsyncDir(join(this.dir, 'manifests'));
    this.index = null;
    this.extentsCache = null;
    return { removed: ids.filter((id) => remove.has(id)), rewritten };
  }

  /** Rewrites a manifest with its whole page map, optionally remapping record refs. */
  private rewriteFull(id: string, remap: ((seg: number, off: number) => number) | null, extents?: Record<string, number>, resolved?: PageMap): void {
    const head = this.readManifestHead(id);
    // Maps must be resolved before any manifest of the chain is rewritten (compact passes them in).
    const map = resolved ?? this.pageMap(id);
    const present = kernels().scanBitmap(this.presentBitmap(map.segments));
    const n = present.length;
    const segs = new Uint32Array(n);
    const offs = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const pfn = present[i]!;
      let s = map.segments[pfn]!;
      let o = map.offsets[pfn]!;
      if (remap) {
        const k = remap(s, o);
        s = Math.floor(k / 4294967296);
        o = k % 4294967296;
      }
      segs[i] = s;
      offs[i] = o;
    }
    const meta = { ...head.meta, extents: extents ?? head.meta.extents };
    const bytes = encodeManifest({ full: true, pageSize: this.pageSize, pageCount: map.pageCount, meta, cpu: head.cpu, pfns: present, segments: segs, offsets: offs }, compress);
    this.writeManifestAtomic(id, bytes, true);
  }

  /**
   * Copies every record a checkpoint needs into new segments, rewrites each manifest to point at
   * them (one atomic rename each), then deletes the old segments. A crash at any point leaves
   * every checkpoint readable: until the last manifest is rewritten both copies exist, and old
   * segments no manifest names any more are deleted by the next compact.
   */
  compact(): { segmentsBefore: number; segmentsAfter: number; bytesBefore: number; bytesAfter: number; records: number } {
    this.lock();
    const ids = this.ids();
    const oldSegs = this.segmentNumbers();
    // Every segment it will delete must be a file it can delete: checked before anything changes.
    let bytesBefore = 0;
    for (const s of oldSegs) {
      const file = this.segmentFile(s);
      try {
        const size = regularSize(file, 'segment');
        bytesBefore += size;
      } catch (err) {
        throw new StoreFormatError(file, `${problemOf(err, file)}; compact changed nothing`);
      }
    }
    // Live records: every ref of every manifest, plus delta bases.
    const live = new Set<number>();
    const maps = new Map<string, PageMap>();
    for (const id of ids) {
      const map = this.pageMap(id); // throws on a corrupt manifest: compact refuses to lose data
      maps.set(id, map);
      for (let pfn = 0; pfn < map.pageCount; pfn++) {
        const seg = map.segments[pfn]!;
        if (seg === 0) continue;
        let key = refKey(seg, map.offsets[pfn]!);
        while (!live.has(key)) {
          live.add(key);
          const r = this.readRecord(...refParts(key));
          if (r.header.kind !== KIND_DELTA || r.header.baseSegment === 0) break;
          key = refKey(r.header.baseSegment, r.header.baseOffset);
        }
      }
    }
    const order = [...live].sort((a, b) => a - b);
    const remap = new Map<number, number>();
    let app: SegmentAppender | null = null;
    const newSegs: number[] = [];
    const extents: Record<string, number> = {};
    for (const key of order) {
      const r = this.readRecord(...refParts(key));
      if (!app || app.size + RECORD_HEADER_BYTES + r.payload.byteLength > this.segmentBytes) {
        if (app) {
          app.sync();
          extents[String(app.seg)] = app.size;
          app.close();
        }
        app = this._openSegment();
        newSegs.push(app.seg);
      }
      let baseKey = 0;
      if (r.header.kind === KIND_DELTA && r.header.baseSegment !== 0) {
        const b = remap.get(refKey(r.header.baseSegment, r.header.baseOffset));
        if (b === undefined) throw new Error('compact: a delta base was not copied before its delta');
        baseKey = b;
      }
      const off = app.append({
        kind: r.header.kind, codec: r.header.codec, depth: r.header.depth,
        baseSegment: Math.floor(baseKey / 4294967296), baseOffset: baseKey % 4294967296,
        namespace: r.header.namespace, fingerprint: r.header.fingerprint,
      }, r.payload);
      remap.set(key, refKey(app.seg, off));
    }
    if (app) {
      app.sync();
      extents[String(app.seg)] = app.size;
      app.close();
    }
    fsyncDir(join(this.dir, 'segments'));
    // Before any manifest points at the copies: each copy reads back as its original (same
    // header fields, payload bytes, and a delta's base the copy of its original's base).
    for (const key of order) {
      const [seg, off] = refParts(key);
      const a = this.readRecord(seg, off, true);
      const k2 = remap.get(key)!;
      const [seg2, off2] = refParts(k2);
      const b = this.readRecord(seg2, off2, false);
      const baseWant = a.header.kind === KIND_DELTA && a.header.baseSegment !== 0 ? remap.get(refKey(a.header.baseSegment, a.header.baseOffset)) : 0;
      if (b.header.kind !== a.header.kind || b.header.codec !== a.header.codec || b.header.depth !== a.header.depth
        || Buffer.compare(b.header.fingerprint, a.header.fingerprint) !== 0 || Buffer.compare(b.header.namespace, a.header.namespace) !== 0
        || Buffer.compare(b.payload, a.payload) !== 0 || refKey(b.header.baseSegment, b.header.baseOffset) !== baseWant) {
        throw new StoreFormatError(this.segmentFile(seg2), `compact: the copy at offset ${off2} of record ${seg}:${off} does not read back as it; nothing was changed (the new segments are unreferenced)`);
      }
    }
    const remapRef = (id: string) => (s: number, o: number) => {
      const k = remap.get(refKey(s, o));
      if (k === undefined) throw new Error(`compact: record ${s}:${o} of checkpoint ${id} was not copied`);
      return k;
    };
    for (const id of ids) this.rewriteFull(id, remapRef(id), extents, maps.get(id));
    // Each rewritten manifest resolves to the copies of what it named; old segments are deleted only then.
    for (const id of ids) {
      const before = maps.get(id)!;
      const after = this.pageMap(id);
      const remapOne = remapRef(id);
      let bad = after.pageCount !== before.pageCount ? 0 : -1;
      for (let pfn = 0; bad < 0 && pfn < before.pageCount; pfn++) {
        const s0 = before.segments[pfn]!;
        const want = s0 === 0 ? 0 : remapOne(s0, before.offsets[pfn]!);
        if (refKey(after.segments[pfn]!, after.offsets[pfn]!) !== want) bad = pfn;
      }
      if (bad >= 0) {
        throw new StoreFormatError(this.manifestFile(id), `compact: the rewritten manifest does not name the copies of its records (page ${bad}); old segments kept`);
      }
    }
    for (const s of oldSegs) {
      const fd = this.fds.get(s);
      if (fd !== undefined) {
        fs.closeSync(fd);
        this.fds.delete(s);
      }
      this.invalidate(s);
      fs.rmSync(this.segmentFile(s), { force: true });
    }
    fsyncDir(join(this.dir, 'segments'));
    this.index = null;
    this.extentsCache = null;
    const bytesAfter = newSegs.reduce((a, s) => a + fs.statSync(this.segmentFile(s)).size, 0);
    return { segmentsBefore: oldSegs.length, segmentsAfter: newSegs.length, bytesBefore, bytesAfter, records: order.length };
  }
}

/** @internal an append-only segment file opened by one writer. */
export class SegmentAppender {
  readonly seg: number;
  private fd: number;
  /** Bytes in the file (flushed + buffered). */
  size: number;
  private flushed: number;
  private buf: Buffer;
  private bufLen = 0;
  private readonly file: string;

  constructor(private readonly store: Store, seg: number) {
    this.seg = seg;
    this.buf = Buffer.allocUnsafe(Math.max(store.writeBufferBytes, RECORD_HEADER_BYTES + store.pageSize * 2 + 64));
    this.file = store.segmentFile(seg);
    this.fd = fs.openSync(this.file, 'wx');
    const header = encodeSegmentHeader(store.pageSize, seg, store.storeId);
    try {
      fs.writeSync(this.fd, header, 0, header.byteLength, 0);
      // The new file's directory entry is durable before any manifest can name the segment.
      fsyncDir(join(store.dir, 'segments'));
    } catch (err) {
      fs.closeSync(this.fd);
      fs.rmSync(this.file, { force: true });
      throw err;
    }
    this.size = SEGMENT_HEADER_BYTES;
    this.flushed = SEGMENT_HEADER_BYTES;
  }

  /** Appends one record; returns its offset. */
  append(h: Parameters<typeof writeRecordHeader>[1], payload: Uint8Array): number {
    const need = RECORD_HEADER_BYTES + payload.byteLength;
    if (this.bufLen + need > this.buf.length) this.flush();
    const off = this.size;
    writeRecordHeader(this.buf.subarray(this.bufLen, this.bufLen + RECORD_HEADER_BYTES), h, payload);
    this.buf.set(payload, this.bufLen + RECORD_HEADER_BYTES);
    this.bufLen += need;
    this.size += need;
    return off;
  }

  /** Whether (off) is already readable from the file. */
  isFlushed(off: number): boolean {
    return off < this.flushed;
  }

  flush(): void {
    let o = 0;
    while (o < this.bufLen) {
      o += fs.writeSync(this.fd, this.buf, o, this.bufLen - o, this.flushed + o);
    }
    this.flushed += this.bufLen;
    this.bufLen = 0;
    this.store._invalidate(this.seg);
  }

  sync(): void {
    this.flush();
    fs.fsyncSync(this.fd);
  }

  /** Drops everything after `length` (a failed checkpoint's records); best effort. */
  truncate(length: number): void {
    this.bufLen = 0;
    this.size = length;
    this.flushed = Math.min(this.flushed, length);
    try {
      fs.ftruncateSync(this.fd, length);
      this.flushed = length;
    } catch {
      // the bytes past the committed length are ignored on open anyway
    }
    this.store._invalidate(this.seg);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * Writes a chain of checkpoints of one guest: the first commit stores every non-zero page, each
 * later one only the pages its dirty list names (deltas against the previous commit where
 * smaller). A failed commit (ENOSPC, I/O error) changes nothing committed, and the writer stays
 * usable: the caller passes the failed commit's dirty pages again with the next one.
 */
export class CheckpointWriter {
  readonly namespace: string;
  private readonly tag: Uint8Array;
  private readonly tagKey: string;
  private parent: string | null;
  private chainLength = 0;
  private segments: Uint32Array | null = null;
  private offsets: Uint32Array | null = null;
  private depths: Uint8Array | null = null;
  private shadow: Uint8Array | null = null;
  private readonly incremental: boolean;
  private app: SegmentAppender | null = null;
  private ownsApp = true;
  private closed = false;

  constructor(private readonly store: Store, options: WriterOptions) {
    const ns = options.shared ? SHARED_NAMESPACE : options.namespace ?? 'default';
    if (typeof ns !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(ns)) {
      throw new RangeError(`\`namespace\` must be 1 to 64 characters of A-Z a-z 0-9 . _ -, got ${JSON.stringify(ns)}`);
    }
    this.namespace = ns;
    this.tag = namespaceTag(ns);
    this.tagKey = Buffer.from(this.tag).toString('latin1');
    this.incremental = options.incremental ?? true;
    this.parent = options.parent ?? null;
    if (this.parent !== null) {
      const { memory, map } = store.readMemory(store.resolveId(this.parent));
      this.segments = map.segments;
      this.offsets = map.offsets;
      this.depths = new Uint8Array(map.pageCount);
      // Unknown depths are treated as the maximum: the next change of such a page is stored whole.
      this.depths.fill(MAX_DELTA_DEPTH);
      this.shadow = this.incremental ? memory : null;
      this.chainLength = FULL_MAP_EVERY; // first manifest of a resumed chain carries the full map
    }
  }

  /**
   * A writer for another member of a snapshot group (same page count), whose first commit stores
   * every page of that guest as a delta against this writer's last committed version of the same
   * page where that is smaller: guests started from one image hold similar pages at the same
   * addresses. Its manifest carries the whole page map and names this writer's checkpoint as
   * parent (the checkpoint its deltas refer to). Needs an incremental writer with a commit.
   */
  sibling(): CheckpointWriter {
    if (!this.shadow || !this.segments || !this.offsets || !this.depths || this.parent === null) {
      throw new Error('sibling() needs an incremental writer that has committed a checkpoint');
    }
    const w = new CheckpointWriter(this.store, { namespace: this.namespace, incremental: false });
    w.segments = this.segments.slice();
    w.offsets = this.offsets.slice();
    w.depths = this.depths.slice();
    w.shadow = this.shadow; // read only: a non-incremental writer never updates it
    w.parent = this.parent;
    w.chainLength = FULL_MAP_EVERY;
    // Append to the same segment (one writer at a time: the group is committed one by one).
    w.app = this.app;
    w.ownsApp = false;
    return w;
  }

  /** The memory as of the last commit (or the parent), when incremental; do not modify. */
  get baseline(): Uint8Array | null {
    return this.shadow;
  }

  /** The last committed checkpoint of this writer (or the parent it started from). */
  get head(): string | null {
    return this.parent;
  }

  private ensureSegment(): SegmentAppender {
    if (!this.app || this.app.closed || this.app.size >= this.store.segmentBytes - (this.store.pageSize * 2 + 128)) {
      if (this.app && this.ownsApp) this.app.close();
      this.app = this.store._openSegment();
      this.ownsApp = true;
    }
    return this.app;
  }

  /**
   * Commits one checkpoint of `memory` (the guest's whole RAM, read only between pause and the
   * return of this call for the dirty pages). Returns its info.
   * @throws CheckpointError (cause: the system error) when it cannot be written; nothing changes.
   */
  commit(memory: Uint8Array, options: CommitOptions = {}): CheckpointInfo {
    if (this.closed) throw new Error('writer is closed');
    if (!(memory instanceof Uint8Array)) throw new TypeError('`memory` must be a Uint8Array');
    const ps = this.store.pageSize;
    if (memory.byteLength === 0 || memory.byteLength % ps !== 0) {
      throw new RangeError(`\`memory\` length must be a non-zero multiple of the page size ${ps}, got ${memory.byteLength}`);
    }
    const pageCount = memory.byteLength / ps;
    if (pageCount > MAX_PAGES) throw new RangeError(`\`memory\` has ${pageCount} pages, more than the store supports (${MAX_PAGES})`);
    if (this.segments && this.segments.length !== pageCount) {
      throw new RangeError(`\`memory\` has ${pageCount} pages but this chain has ${this.segments.length}`);
    }
    const k = kernels();
    const first = this.segments === null;
    let dirty = options.dirty ?? null;
    if (first) dirty = null; // the first checkpoint of a chain stores every page
    if (dirty) {
      if (!(dirty instanceof Uint32Array)) throw new TypeError('`dirty` must be a Uint32Array of page numbers');
      if (dirty.length && dirty[dirty.length - 1]! >= pageCount) {
        throw new RangeError(`\`dirty\` names page ${dirty[dirty.length - 1]}, past the ${pageCount} pages`);
      }
    }
    const cpu = options.cpu ?? new Uint8Array(0);
    // What the manifest will hold, against the limits its readers enforce: a manifest past them
    // would be committed and then refused by every reader (and would stop prune and compact).
    if (!(cpu instanceof Uint8Array)) throw new TypeError(`\`cpu\` must be a Uint8Array, got ${typeof cpu}`);
    if (cpu.byteLength > MAX_MANIFEST_CPU_BYTES) {
      throw new RangeError(`\`cpu\` is ${cpu.byteLength} bytes, more than a manifest holds (${MAX_MANIFEST_CPU_BYTES})`);
    }
    if (options.label !== undefined && typeof options.label !== 'string') throw new TypeError(`\`label\` must be a string, got ${typeof options.label}`);
    if (options.guest !== undefined && (options.guest === null || typeof options.guest !== 'object')) {
      throw new TypeError(`\`guest\` must be an object, got ${options.guest === null ? 'null' : typeof options.guest}`);
    }
    const userMeta = Buffer.byteLength(JSON.stringify({ label: options.label, guest: options.guest }), 'utf8');
    if (userMeta > MAX_MANIFEST_META_BYTES - MANIFEST_META_RESERVE) {
      throw new RangeError(`\`label\` and \`guest\` take ${userMeta} bytes of metadata, more than a manifest holds (${MAX_MANIFEST_META_BYTES - MANIFEST_META_RESERVE})`);
    }
    let pages: Uint8Array;
    if (dirty && options.pages) {
      if (!(options.pages instanceof Uint8Array) || options.pages.byteLength !== dirty.length * ps) {
        throw new RangeError(`\`pages\` must hold ${dirty.length} pages (${dirty.length * ps} bytes), got ${options.pages.byteLength}`);
      }
      pages = options.pages;
    } else {
      pages = dirty ? k.gatherPages(memory, dirty, { pageSize: ps }) : memory;
    }
    const n = dirty ? dirty.length : pageCount;
    const zero = k.zeroPages(pages, { pageSize: ps });
    const nonZero = k.scanBitmap(invertBitmap(zero, n));
    const fps = k.fingerprintPages(pages, { pageSize: ps });
    const fpBuf = Buffer.from(fps.buffer, fps.byteOffset, fps.byteLength);

    const segs = this.segments ?? new Uint32Array(pageCount);
    const offs = this.offsets ?? new Uint32Array(pageCount);
    const depths = this.depths ?? new Uint8Array(pageCount);
    const index = this.store._index();
    const added: string[] = [];
    // Changes: pfn -> new (seg, off, depth); applied to the chain state only after the commit.
    const chPfn = new Uint32Array(n);
    const chSeg = new Uint32Array(n);
    const chOff = new Uint32Array(n);
    const chDepth = new Uint8Array(n);
    let changes = 0;
    const stats = { dirtyPages: n, newPages: 0, deltaPages: 0, dedupPages: 0, zeroPages: 0, unchangedPages: 0, rawDirtyBytes: n * ps, recordBytes: 0 };
    const app = (() => {
      try {
        return this.ensureSegment();
      } catch (err) {
        throw new CheckpointError(`checkpoint failed: ${(err as Error).message}`, err);
      }
    })();
    const startSize = app.size;
    const scratch = new Uint8Array(ps);
    /** record ref -> index in `pages` of the page it holds, for records written by this commit */
    const writtenHere = new Map<number, number>();
    try {
      // Pages that became zero: an entry with segment 0 (only matters when the parent had data).
      const zeroIdx = k.scanBitmap(zero);
      for (let z = 0; z < zeroIdx.length; z++) {
        const i = zeroIdx[z]!;
        if (i >= n) break;
        const pfn = dirty ? dirty[i]! : i;
        stats.zeroPages++;
        if (segs[pfn] !== 0) {
          chPfn[changes] = pfn; chSeg[changes] = 0; chOff[changes] = 0; chDepth[changes] = 0;
          changes++;
        }
      }
      for (let j = 0; j < nonZero.length; j++) {
        const i = nonZero[j]!;
        const pfn = dirty ? dirty[i]! : i;
        const page = pages.subarray(i * ps, i * ps + ps);
        const prevSeg = segs[pfn]!;
        const shadowPage = this.shadow && prevSeg !== 0 ? this.shadow.subarray(pfn * ps, pfn * ps + ps) : null;
        if (shadowPage && Buffer.compare(shadowPage, page) === 0) {
          stats.unchangedPages++;
          continue;
        }
        // 1. an identical page already stored in this namespace (byte-compared, never trusted blindly)
        const key = this.tagKey + fpBuf.toString('latin1', i * 16, i * 16 + 16);
        const cands = index.get(key);
        let ref = -1;
        if (cands) {
          for (const c of cands) {
            // A record written by this commit is compared with its page in memory; an older one
            // is read back (and CRC-checked) first.
            const mine = writtenHere.get(c);
            let other: Uint8Array;
            if (mine !== undefined) {
              other = pages.subarray(mine * ps, mine * ps + ps);
            } else {
              try {
                this.store.readPage(...refParts(c), scratch);
              } catch {
                continue; // a corrupt record is never a dedup target
              }
              other = scratch;
            }
            if (Buffer.compare(other, page) === 0) { ref = c; break; }
          }
        }
        if (ref >= 0) {
          stats.dedupPages++;
          chPfn[changes] = pfn; chSeg[changes] = Math.floor(ref / 4294967296); chOff[changes] = ref % 4294967296; chDepth[changes] = 0;
          changes++;
          continue;
        }
        // 2. a delta against the parent's version: taken at once when at most 64 bytes, else when it beats
        //    the whole page compressed
        let cand: { delta: Uint8Array; codec: number } | null = null;
        if (shadowPage && depths[pfn]! < MAX_DELTA_DEPTH) {
          let delta = k.encodeDelta(shadowPage, page);
          let codec = CODEC_RAW;
          if (delta.byteLength > 64) {
            const z = zstdCompress(delta);
            if (z.byteLength < delta.byteLength) { delta = copyOf(z); codec = CODEC_ZSTD; }
          }
          if (delta.byteLength < ps / 2) cand = { delta, codec };
        }
        // 3. the whole page, compressed where it pays
        let payload: Uint8Array = page;
        let codec = CODEC_RAW;
        if (!cand || cand.delta.byteLength > 64) {
          const z = zstdCompress(page);
          if (z.byteLength < ps - ps / 8) { payload = z; codec = CODEC_ZSTD; }
        }
        if (cand && (cand.delta.byteLength <= 64 || cand.delta.byteLength < payload.byteLength)) {
          const depth = depths[pfn]! + 1;
          const off = app.append({ kind: KIND_DELTA, codec: cand.codec, depth, baseSegment: prevSeg, baseOffset: offs[pfn]!, namespace: this.tag, fingerprint: fps.subarray(i * 16, i * 16 + 16) }, cand.delta);
          stats.deltaPages++;
          stats.newPages++;
          chPfn[changes] = pfn; chSeg[changes] = app.seg; chOff[changes] = off; chDepth[changes] = depth;
          changes++;
          continue;
        }
        const off = app.append({ kind: KIND_PAGE, codec, depth: 0, baseSegment: 0, baseOffset: 0, namespace: this.tag, fingerprint: fps.subarray(i * 16, i * 16 + 16) }, payload);
        const r = refKey(app.seg, off);
        writtenHere.set(r, i);
        if (cands) cands.push(r);
        else index.set(key, [r]);
        added.push(key);
        stats.newPages++;
        chPfn[changes] = pfn; chSeg[changes] = app.seg; chOff[changes] = off; chDepth[changes] = 0;
        changes++;
      }
      app.sync();
      stats.recordBytes = app.size - startSize;

      // The manifest: the whole map for the first checkpoint and every FULL_MAP_EVERY-th, else changes.
      const id = this.store._nextId();
      const full = first || this.chainLength + 1 >= FULL_MAP_EVERY;
      const extents: Record<string, number> = {};
      for (const [s, l] of this.store.committedExtents()) extents[String(s)] = l;
      extents[String(app.seg)] = app.size;
      const meta: ManifestMeta = {
        id, parent: this.parent, created: new Date().toISOString(), namespace: this.namespace,
        ...(this.store.storeId ? { store: hexId(this.store.storeId) } : {}),
        ...(options.label !== undefined ? { label: options.label } : {}),
        extents, ...(options.guest ? { guest: options.guest } : {}), stats,
      };
      let mp: Uint32Array;
      let ms: Uint32Array;
      let mo: Uint32Array;
      if (full) {
        // apply changes to copies, then list every present page
        const s2 = segs.slice();
        const o2 = offs.slice();
        for (let c = 0; c < changes; c++) { s2[chPfn[c]!] = chSeg[c]!; o2[chPfn[c]!] = chOff[c]!; }
        mp = kernels().scanBitmap(presentBitmapOf(s2));
        ms = new Uint32Array(mp.length);
        mo = new Uint32Array(mp.length);
        for (let e = 0; e < mp.length; e++) { ms[e] = s2[mp[e]!]!; mo[e] = o2[mp[e]!]!; }
      } else {
        mp = chPfn.subarray(0, changes);
        ms = chSeg.subarray(0, changes);
        mo = chOff.subarray(0, changes);
      }
      const bytes = encodeManifest({ full, pageSize: ps, pageCount, meta, cpu, pfns: mp, segments: ms, offsets: mo }, compress);
      this.store._writeManifest(id, bytes);
      this.store._committed(app.seg, app.size);

      // Committed: advance the chain state.
      for (let c = 0; c < changes; c++) {
        const pfn = chPfn[c]!;
        segs[pfn] = chSeg[c]!; offs[pfn] = chOff[c]!; depths[pfn] = chDepth[c]!;
      }
      this.segments = segs;
      this.offsets = offs;
      this.depths = depths;
      if (this.incremental) {
        if (!this.shadow) this.shadow = copyOf(memory);
        else if (dirty) k.scatterPages(this.shadow, dirty, pages, { pageSize: ps });
        else this.shadow.set(memory);
      }
      this.parent = id;
      this.chainLength = full ? 0 : this.chainLength + 1;
      return {
        id, parent: meta.parent, created: meta.created, namespace: this.namespace, label: options.label ?? null, full,
        pageSize: ps, pageCount, bytes: stats.recordBytes + bytes.byteLength, manifestBytes: bytes.byteLength, stats,
        guest: options.guest ?? null,
      };
    } catch (err) {
      // Undo: forget index entries for records that never committed, drop the segment's tail.
      for (const key of added) {
        const list = index.get(key);
        if (!list) continue;
        const keep = list.filter((r) => !(Math.floor(r / 4294967296) === app.seg && r % 4294967296 >= startSize));
        if (keep.length) index.set(key, keep);
        else index.delete(key);
      }
      app.truncate(startSize);
      app.close();
      this.app = null; // the next attempt starts a fresh segment
      const e = err as NodeJS.ErrnoException;
      throw new CheckpointError(`checkpoint failed${e.code ? ` (${e.code})` : ''}: ${e.message}; earlier checkpoints are intact`, err);
    }
  }

  /** Closes the writer's segment and releases the store's lock. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.app && this.ownsApp) this.app.close();
    this.app = null;
  }
}

/** Whether the 16 bytes at a[ai] and b[bi] are equal. */
function sameFingerprint(a: Uint8Array, ai: number, b: Uint8Array, bi: number): boolean {
  for (let j = 0; j < 16; j++) if (a[ai + j] !== b[bi + j]) return false;
  return true;
}

function invertBitmap(bm: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(bm.length);
  for (let i = 0; i < bm.length; i++) out[i] = ~bm[i]! & 0xff;
  const tail = n & 7;
  if (tail && out.length) out[out.length - 1]! &= (1 << tail) - 1;
  return out;
}

function presentBitmapOf(segments: Uint32Array): Uint8Array {
  const n = segments.length;
  const bm = new Uint8Array((n + 7) >> 3);
  for (let i = 0; i < n; i++) if (segments[i] !== 0) bm[i >> 3]! |= 1 << (i & 7);
  return bm;
}

export { STORE_HEADER_BYTES };
