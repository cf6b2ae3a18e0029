/**
 * The epoch loop: every interval, pause the guest, drain its output, take its dirty log, copy the
 * dirty pages (gatherPages), save the CPU state, and resume. Nothing else happens while the
 * guest is paused; encoding and sending run after resume (the handler's business), overlapped with
 * the next epoch. When the consumer is not ready (too many epochs in flight) the loop lengthens
 * its interval instead of buffering, and says so with a 'backpressure' event.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Guest, OutputRecord } from '../guest/types.js';
import type { PageKernels } from '../replication/kernels.js';

export interface Capture {
  /** All pages (a full resync) rather than the dirty ones. */
  full: boolean;
  pfns: Uint32Array;
  /** pfns.length pages, copied while paused; null when not gathered. */
  pages: Uint8Array | null;
  cpu: Uint8Array;
  records: OutputRecord[];
  /** The workload's final checksum if it had finished at this pause. */
  final: string | null;
  /** Guest downtime, ms (pause() call to resume() return). */
  pauseMs: number;
  /** Of which: dirty-log fetch, ms. */
  dirtyMs: number;
  /** Of which: page copy, ms. */
  gatherMs: number;
  /** Wall clock of the capture, ms since 1970 (for lag across hosts). */
  wallMs: number;
  /** performance.now() at resume. */
  at: number;
}

export interface CaptureOptions {
  full: boolean;
  gather: boolean;
  /** Nondeterministic mode: the host value the guest mixes in at resume. */
  clock?: bigint;
  /** Recycled buffers to gather into (fresh memory costs a page fault per page touched). */
  pool?: PageBufferPool;
}

/**
 * A few page buffers handed back once their epoch is encoded, so each epoch's gather writes into
 * memory that is already mapped: on a nested host a fresh 2 MiB buffer costs ~500 page faults of
 * a few microseconds each, while the guest is paused. Bounded: at most `max` buffers, none over
 * `maxBytes` (a full epoch of a large guest is not kept).
 */
export class PageBufferPool {
  private readonly free: Uint8Array[] = [];
  // Only buffers this pool allocated come back into it (a view of anything else, e.g. a slice of
  // Node's shared Buffer slab, must never be written into).
  private readonly own = new WeakSet<ArrayBufferLike>();
  constructor(private readonly max = 4, private readonly maxBytes = 64 * 1024 * 1024) {}

  /**
   * A buffer of at least `bytes` (its first `bytes` are the caller's), or undefined for none.
   * Past `maxBytes` it is a one-off buffer the pool does not keep.
   */
  take(bytes: number): Uint8Array | undefined {
    if (bytes === 0) return undefined;
    if (bytes > this.maxBytes) return new Uint8Array(new SharedArrayBuffer(bytes));
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      if (this.free[i]!.length >= bytes && (best < 0 || this.free[i]!.length < this.free[best]!.length)) best = i;
    }
    if (best >= 0) return this.free.splice(best, 1)[0]!.subarray(0, bytes);
    // Round up so slightly larger epochs reuse the buffer too.
    const size = Math.min(this.maxBytes, Math.ceil((bytes * 1.25) / 65536) * 65536);
    // Shared memory, as the primary's shadow: encodePages works on it in the background on
    // every runtime (see holdForAsync).
    const buf = new Uint8Array(new SharedArrayBuffer(size));
    this.own.add(buf.buffer);
    return buf.subarray(0, bytes);
  }

  /** Returns a buffer from take() (any view of it) once nothing reads it any more. */
  give(view: Uint8Array | null): void {
    if (!view || !this.own.has(view.buffer) || this.free.some((b) => b.buffer === view.buffer)) return;
    const whole = new Uint8Array(view.buffer);
    if (this.free.length >= this.max) this.free.shift();
    this.free.push(whole);
  }
}

const allPfnsCache = new Map<number, Uint32Array>();
function allPfns(n: number): Uint32Array {
  let a = allPfnsCache.get(n);
  if (!a) {
    a = new Uint32Array(n);
    for (let i = 0; i < n; i++) a[i] = i; // once per guest size, not per epoch
    allPfnsCache.set(n, a);
  }
  return a;
}

/** One pause-copy-resume. */
export async function captureEpoch(guest: Guest, kernels: PageKernels, opts: CaptureOptions): Promise<Capture> {
  const t0 = performance.now();
  await guest.pause();
  let resumed = false;
  try {
    const final = guest.result ? guest.result.final : null;
    // Drain the output first: draining writes the ring indices and the chain into the control
    // page, and the memory we copy must say these records are delivered, or a guest resumed from
    // it would publish them again.
    const records = guest.takeOutput();
    const t1 = performance.now();
    const dirty = guest.takeDirty();
    const t2 = performance.now();
    // A full epoch sends every page that is not all zero (the backup starts from a zero image).
    const pfns = opts.full
      ? (kernels.nonZeroPfns?.(guest.memory.view, { pageSize: guest.pageSize }) ?? allPfns(guest.pageCount))
      : dirty.pfns;
    const out = opts.gather ? opts.pool?.take(pfns.length * guest.pageSize) : undefined;
    const pages = opts.gather ? kernels.gatherPages(guest.memory.view, pfns, { pageSize: guest.pageSize, out }) : null;
    const t3 = performance.now();
    const cpu = guest.saveCpu();
    if (opts.clock !== undefined) guest.setClock(opts.clock);
    if (final === null) guest.resume();
    resumed = true;
    const t4 = performance.now();
    return { full: opts.full, pfns, pages, cpu, records, final, pauseMs: t4 - t0, dirtyMs: t2 - t1, gatherMs: t3 - t2, wallMs: Date.now(), at: t4 };
  } finally {
    if (!resumed && !guest.result) guest.resume();
  }
}

export interface EpochLoopOptions {
  intervalMs: number;
  /** Upper bound the interval may be stretched to under backpressure (default 16x, at most 2 s). */
  maxIntervalMs?: number;
  /** Called before each capture: may the loop take an epoch now? */
  ready(): boolean;
  /** What to capture this time. */
  plan(): CaptureOptions;
  /** Receives each capture (synchronously after resume). */
  handle(c: Capture): void;
}

/**
 * Runs captureEpoch on a timer. Events: 'backpressure' ({intervalMs}) when it lengthens its
 * interval, 'recovered' ({intervalMs}) when back to normal, 'error' on a capture failure.
 */
export class EpochLoop extends EventEmitter {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private current: number;
  private readonly maxMs: number;
  private busy = false;

  constructor(private readonly guest: Guest, private readonly kernels: PageKernels, private readonly opts: EpochLoopOptions) {
    super();
    if (!(opts.intervalMs >= 5)) throw new RangeError(`\`intervalMs\` must be at least 5, got ${opts.intervalMs}`);
    this.current = opts.intervalMs;
    this.maxMs = opts.maxIntervalMs ?? Math.min(2000, opts.intervalMs * 16);
  }

  get intervalMs(): number {
    return this.current;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(this.current);
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Takes an epoch now (out of schedule), e.g. right after a backup connected. */
  kick(): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.schedule(0);
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    this.timer = null;
    if (!this.running || this.busy) return;
    if (!this.opts.ready()) {
      const next = Math.min(this.maxMs, this.current * 2);
      if (next !== this.current) {
        this.current = next;
        this.emit('backpressure', { intervalMs: next });
      }
      this.schedule(this.current);
      return;
    }
    const start = performance.now();
    this.busy = true;
    try {
      const c = await captureEpoch(this.guest, this.kernels, this.opts.plan());
      this.opts.handle(c);
      if (c.final !== null) {
        this.running = false;
        return;
      }
    } catch (err) {
      this.running = false;
      this.emit('error', err);
      return;
    } finally {
      this.busy = false;
    }
    if (this.current > this.opts.intervalMs) {
      this.current = Math.max(this.opts.intervalMs, this.current / 2);
      if (this.current === this.opts.intervalMs) this.emit('recovered', { intervalMs: this.current });
    }
    if (this.running) this.schedule(Math.max(0, this.current - (performance.now() - start)));
  }
}
