/**
 * Output commit. The OutputLog holds every output record the guest produced, in sequence order,
 * and a release watermark: records below it are known to be committed on the backup (the backup
 * acknowledged an epoch that holds them) and only those are ever shown to clients. A promoted
 * backup builds its log from committed epochs, so everything in it is releasable.
 *
 * Records are kept for the whole run, so a client can ask for the stream from any point and a
 * fresh backup can be given the full history. (A long-running deployment would cap this and
 * checkpoint it; see docs/replication.md.)
 */
import { EventEmitter } from 'node:events';
import type { OutputRecord } from '../guest/types.js';

// The service port's lines are exactly `understudy run --records`'s: one formatter for both.
export { recordLine as recordToLine, endLine as endToLine } from '../guest/records.js';

export class OutputLog extends EventEmitter {
  private readonly records: OutputRecord[] = [];
  private releasedCount = 0;
  private finalValue: string | null = null;
  private finalReleasedFlag = false;

  /** Records produced so far (the next sequence number). */
  get length(): number {
    return this.records.length;
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
    const r = this.records[seq];
    if (!r) throw new RangeError(`\`seq\` must be below ${this.records.length}, got ${seq}`);
    return r;
  }

  slice(from: number, to: number): OutputRecord[] {
    return this.records.slice(from, to);
  }

  /** Appends records produced by the guest; they must continue the sequence exactly. */
  append(recs: readonly OutputRecord[]): void {
    for (const r of recs) {
      if (r.seq !== this.records.length) {
        throw new RangeError(`output record seq must be ${this.records.length}, got ${r.seq}`);
      }
      this.records.push(r);
    }
  }

  /** Marks the workload finished (the end line waits for releaseFinal). */
  setFinal(final: string): void {
    this.finalValue = final;
  }

  /** Releases records with seq < upTo (the backup has committed them). Never moves backwards. */
  release(upTo: number): void {
    if (!Number.isInteger(upTo) || upTo < 0 || upTo > this.records.length) {
      throw new RangeError(`\`upTo\` must be an integer from 0 to ${this.records.length}, got ${upTo}`);
    }
    if (upTo <= this.releasedCount) return;
    this.releasedCount = upTo;
    this.emit('release', upTo);
  }

  /** Releases the end of stream (the backup has committed the final epoch). */
  releaseFinal(): void {
    if (this.finalValue === null) throw new RangeError('releaseFinal: the final checksum is not known yet');
    this.release(this.records.length);
    if (this.finalReleasedFlag) return;
    this.finalReleasedFlag = true;
    this.emit('release', this.releasedCount);
  }
}
