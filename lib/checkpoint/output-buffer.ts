/**
 * Output commit. The OutputLog holds the output records the guest produced, in sequence order,
 * and a release watermark: records below it are known to be committed on the backup (the backup
 * acknowledged an epoch that holds them) and only those are ever shown to clients. A promoted
 * backup builds its log from committed epochs, so everything in it is releasable.
 *
 * Retention: released records are kept so a client can ask for the stream from an earlier point
 * and a fresh backup can be given the history, but only the newest `retainRecords` of them (and
 * at most `retainBytes` of their data): older released records are dropped, so a long-running
 * deployment holds bounded memory. Unreleased records are never dropped (they are bounded by the
 * primary, which pauses its guest when too much is held), nor is what a connected reader still
 * needs, up to twice the limits. `firstKept` says where the kept history starts; asking for
 * anything before it is a RangeError.
 */
import { EventEmitter } from 'node:events';
import type { OutputRecord } from '../guest/types.js';

// The service port's lines are exactly `understudy run --records`'s: one formatter for both.
export { recordLine as recordToLine, endLine as endToLine } from '../guest/records.js';

export interface OutputLogOptions {
  /** Released records kept for late clients and new backups (default 1,000,000). */
  retainRecords?: number;
  /** Bytes of released record data kept (default 256 MiB). */
  retainBytes?: number;
}

export const DEFAULT_RETAIN_RECORDS = 1_000_000;
export const DEFAULT_RETAIN_BYTES = 256 * 1024 * 1024;

function positiveInt(v: number | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`\`${name}\` must be a positive integer, got ${v}`);
  return v;
}

export class OutputLog extends EventEmitter {
  // records[head + i] holds seq base + i; slots before head were dropped (set to undefined so
  // their data can be collected) and are spliced away once they are half of the array.
  private records: (OutputRecord | undefined)[] = [];
  private head = 0;
  private base = 0;
  private releasedCount = 0;
  // Records below this may be dropped at the next release (see release()).
  private trimCap = 0;
  // Bytes of record data in [base, trimCap) (what retention counts) and in [released, length).
  private capBytes = 0;
  private heldBytesCount = 0;
  // Connected readers (service-port clients): the next seq each still needs.
  private readonly readers = new Set<() => number>();
  private finalValue: string | null = null;
  private finalReleasedFlag = false;
  /** Released records kept (the retention limit). */
  readonly retainRecords: number;
  /** Bytes of released record data kept. */
  readonly retainBytes: number;

  constructor(options: OutputLogOptions = {}) {
    super();
    this.retainRecords = positiveInt(options.retainRecords, 'retainRecords', DEFAULT_RETAIN_RECORDS);
    this.retainBytes = positiveInt(options.retainBytes, 'retainBytes', DEFAULT_RETAIN_BYTES);
  }

  /** Records produced so far (the next sequence number). */
  get length(): number {
    return this.base + this.records.length - this.head;
  }

  /** The oldest record still kept (== length when none is). */
  get firstKept(): number {
    return this.base;
  }

  /** Records produced but not yet released. */
  get held(): number {
    return this.length - this.releasedCount;
  }

  /** Bytes of record data produced but not yet released. */
  get heldBytes(): number {
    return this.heldBytesCount;
  }

  /**
   * Registers a reader (a connected client) whose next needed seq retention should not drop, up
   * to a hard limit of twice the retention (a reader that stops reading cannot pin memory without
   * bound). Returns the function that unregisters it.
   */
  addReader(next: () => number): () => void {
    this.readers.add(next);
    return () => this.readers.delete(next);
  }

  /** Records clients may see: seq < released. */
  get released(): number {
    return this.releasedCount;
  }

  /** The workload's final checksum, once known (not necessarily released). */
  get final(): string | null {
    return this.finalValue;
  }

  /** True once the end of the stream may be shown to clients. */
  get finalReleased(): boolean {
    return this.finalReleasedFlag;
  }

  get(seq: number): OutputRecord {
    if (seq < this.base && seq >= 0) throw new RangeError(this.droppedMessage(seq));
    const r = Number.isInteger(seq) && seq >= 0 ? this.records[this.head + seq - this.base] : undefined;
    if (!r) throw new RangeError(`\`seq\` must be an integer from ${this.base} to ${this.length - 1}, got ${seq}`);
    return r;
  }

  slice(from: number, to: number): OutputRecord[] {
    if (to <= from) return [];
    if (from < this.base) throw new RangeError(this.droppedMessage(from));
    return this.records.slice(this.head + from - this.base, this.head + Math.max(from, to) - this.base) as OutputRecord[];
  }

  /** Appends records produced by the guest; they must continue the sequence exactly. */
  append(recs: readonly OutputRecord[]): void {
    for (const r of recs) {
      if (r.seq !== this.length) {
        throw new RangeError(`output record seq must be ${this.length}, got ${r.seq}`);
      }
      this.records.push(r);
      this.heldBytesCount += r.data.length;
    }
  }

  /**
   * Forgets every record and starts the sequence at `seq`, all of it counted as released: a
   * backup given a full resync by a primary that no longer keeps the early records.
   */
  restartAt(seq: number): void {
    if (!Number.isSafeInteger(seq) || seq < this.length) {
      throw new RangeError(`\`seq\` must be an integer of at least ${this.length}, got ${seq}`);
    }
    this.records = [];
    this.head = 0;
    this.base = seq;
    this.capBytes = 0;
    this.heldBytesCount = 0;
    this.releasedCount = seq;
    this.trimCap = seq;
    this.emit('release', seq);
  }

  /** Marks the workload finished (the end line waits for releaseFinal). */
  setFinal(final: string): void {
    this.finalValue = final;
  }

  /**
   * Releases records with seq < upTo (the backup has committed them). Never moves backwards.
   * `seenUpTo` (a backup's log: the primary's release watermark) caps what retention may drop.
   */
  release(upTo: number, seenUpTo = Infinity): void {
    if (!Number.isInteger(upTo) || upTo < 0 || upTo > this.length) {
      throw new RangeError(`\`upTo\` must be an integer from 0 to ${this.length}, got ${upTo}`);
    }
    if (upTo <= this.releasedCount) return;
    // Trim against the previous release's cap: a record becomes droppable only one release after
    // clients could first see it, so a burst (a new backup committing everything held while there
    // was none) reaches the connected clients before any of it can be dropped. On a backup the cap
    // is the primary's release watermark, so after a failover the history clients need is there.
    this.trim();
    this.heldBytesCount -= this.bytesBetween(this.releasedCount, upTo);
    this.releasedCount = upTo;
    const cap = Math.min(upTo, Math.max(this.trimCap, seenUpTo));
    this.capBytes += this.bytesBetween(this.trimCap, cap);
    this.trimCap = cap;
    this.emit('release', upTo);
  }

  private bytesBetween(from: number, to: number): number {
    let n = 0;
    for (let i = this.head + from - this.base; i < this.head + to - this.base; i++) n += this.records[i]!.data.length;
    return n;
  }

  /**
   * Drops the oldest released records below the trim cap while more than the retention limits
   * are kept there, but not what a connected reader still needs unless twice the limits are kept.
   */
  private trim(): void {
    let limit = this.trimCap;
    const over2x = this.trimCap - this.base > 2 * this.retainRecords || this.capBytes > 2 * this.retainBytes;
    if (!over2x) for (const next of this.readers) limit = Math.min(limit, next());
    while (this.base < limit && (this.trimCap - this.base > this.retainRecords || this.capBytes > this.retainBytes)) {
      this.capBytes -= this.records[this.head]!.data.length;
      this.records[this.head++] = undefined;
      this.base++;
    }
    if (this.head > 1024 && this.head * 2 > this.records.length) {
      this.records.splice(0, this.head);
      this.head = 0;
    }
  }

  private droppedMessage(seq: number): string {
    return `record ${seq} is no longer kept: this log keeps records from seq ${this.base} on (retention limit)`;
  }

  /** Releases the end of stream (the backup has committed the final epoch). */
  releaseFinal(): void {
    if (this.finalValue === null) throw new RangeError('releaseFinal: the final checksum is not known yet');
    this.release(this.length);
    if (this.finalReleasedFlag) return;
    this.finalReleasedFlag = true;
    this.emit('release', this.releasedCount);
  }
}
