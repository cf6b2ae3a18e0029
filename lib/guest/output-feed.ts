/**
 * The Guest interface's 'output' event (docs/guests.md, "The 'output' event") over the pull-based
 * takeOutput() both backends implement natively.
 *
 * Every record is emitted once, in seq order, as it leaves the guest. A record leaves the guest
 * when takeOutput() returns it, or, as long as nobody has called takeOutput() and an 'output'
 * listener is attached, when the guest drains its output itself: every OUTPUT_DRAIN_MS while it
 * runs, at every pause() and before 'exit'. Once takeOutput() has been called, its caller owns the
 * stream (the replication primary holds records until its backup commits them) and the guest
 * never drains on its own again: listeners then see what takeOutput() returns, on the next tick,
 * so a throwing listener cannot take records from takeOutput()'s caller.
 */
import type { EventEmitter } from 'node:events';
import type { OutputRecord } from './types.js';

/** How often a guest with an 'output' listener, and no takeOutput() caller, drains its output. */
export const OUTPUT_DRAIN_MS = 10;

/** @internal one per guest */
export class OutputFeed {
  readonly #guest: EventEmitter;
  /** The native take, or null once the guest is closed. */
  readonly #take: () => OutputRecord[] | null;
  #timer: NodeJS.Timeout | null = null;
  /** takeOutput() has been called: the guest no longer drains on its own. */
  #pulled = false;
  #stopped = false;

  constructor(guest: EventEmitter, take: () => OutputRecord[] | null) {
    this.#guest = guest;
    this.#take = take;
    guest.on('newListener', (event: string | symbol) => {
      if (event !== 'output' || this.#pulled) return;
      // A guest that has already finished drains once, for the listener being added now.
      if (this.#stopped) process.nextTick(() => this.drain());
      else this.#arm();
    });
    guest.on('removeListener', (event: string | symbol) => {
      if (event === 'output' && guest.listenerCount('output') === 0) this.#disarm();
    });
  }

  /** takeOutput(): the records, and the same records to 'output' listeners on the next tick. */
  pull(): OutputRecord[] {
    this.#pulled = true;
    this.#disarm();
    const records = this.#take() ?? [];
    if (records.length > 0 && this.#guest.listenerCount('output') > 0) {
      process.nextTick(() => this.#emit(records));
    }
    return records;
  }

  /** The guest's own drain (timer, pause, exit): only while listened to and nobody pulls. */
  drain(): void {
    if (this.#pulled || this.#guest.listenerCount('output') === 0) return;
    let records: OutputRecord[] | null;
    try {
      records = this.#take();
    } catch {
      // A ring the host cannot read: the guest reports that as its own error ('error', wait()
      // rejects) and takeOutput() would throw the same; stop draining, never throw from a timer.
      this.stop();
      return;
    }
    if (records && records.length > 0) this.#emit(records);
  }

  /** The guest finished, failed or closed: no more timer (call drain() first for the last records). */
  stop(): void {
    this.#stopped = true;
    this.#disarm();
  }

  #emit(records: OutputRecord[]): void {
    for (const r of records) this.#guest.emit('output', r);
  }

  #arm(): void {
    if (this.#timer || this.#pulled || this.#stopped) return;
    this.#timer = setInterval(() => this.drain(), OUTPUT_DRAIN_MS);
    // The guest's own work keeps the process alive while it runs; this timer must not.
    this.#timer.unref();
  }

  #disarm(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
