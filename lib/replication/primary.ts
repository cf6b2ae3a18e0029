/**
 * The primary: runs the epoch loop over a guest, encodes each epoch against a shadow of what the
 * backup holds, ships it, and releases the guest's output only as the backup acknowledges it.
 *
 * Shadow invariant: between full resyncs, shadow == the replica the backup will hold once it has
 * committed every epoch we have sent. Epochs go out in order on one TCP stream and the backup
 * drops the connection rather than skip one, so any loss of an epoch means a lost connection; the
 * next connection begins with a FULL epoch (all pages, shadow reset to zero), which covers every
 * page harvested in epochs that never arrived. Records, too, are resent from the backup's own
 * count. So harvested pages and output are never lost.
 */
import { EventEmitter } from 'node:events';
import { randomBytes, createHash } from 'node:crypto';
import { connect as netConnect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Guest } from '../guest/types.js';
import { EpochLoop, PageBufferPool, captureEpoch, type Capture } from '../checkpoint/epoch-loop.js';
import { OutputLog, type OutputLogOptions } from '../checkpoint/output-buffer.js';
import { startServicePort, type ServicePort } from '../checkpoint/service-port.js';
import { encodeEpochBody, FLAG_FINAL, FLAG_FULL } from './epoch-body.js';
import { CHUNK_BYTES, FrameType, type Frame } from './wire.js';
import { HandshakeSlots, Link, StallGuard } from './link.js';
import { primaryHandshake, SupersededError } from './handshake.js';
import { defaultKernels, type PageKernels } from './kernels.js';
import { ProtocolError } from '../errors/protocol-error.js';
import type { GuestTypeName } from './auth.js';
import { checkEndpoint, checkKey, checkOptionsObject, checkPrimaryTuning } from './options.js';


export interface Endpoint {
  host: string;
  port: number;
}

export interface PrimaryOptions {
  guest: Guest | null;
  /** Pre-shared key (32 bytes); omit only with insecure: true. */
  key?: Uint8Array;
  insecure?: boolean;
  /** Connect to a backup that listens here (retried). */
  connect?: Endpoint;
  /** Or accept backups on this address / this server. */
  listen?: Endpoint | Server;
  /** Service port for clients (address, or an already running ServicePort). */
  serve?: Endpoint | ServicePort;
  /** Epoch interval, ms (default 25, at least 5). */
  intervalMs?: number;
  /** Backup silent this long, or its oldest epoch in flight unacknowledged this long, = lost (default max(20 intervals, 1 s)). */
  timeoutMs?: number;
  /** Epochs sent but not acknowledged, at most (default 3). */
  maxInFlight?: number;
  onBackupLoss?: 'continue' | 'pause';
  generation?: bigint;
  vmId?: Buffer;
  nextEpoch?: bigint;
  /** Committed history (a promoted backup's). */
  log?: OutputLog;
  /** How much released output history to keep, when `log` is not given. */
  retain?: OutputLogOptions;
  kernels?: PageKernels;
  threads?: number;
  guestType?: GuestTypeName;
  nondeterministic?: boolean;
  /** Geometry when guest is null (a promoted backup whose workload had finished). */
  pageSize?: number;
  pageCount?: number;
}

/** Per-epoch statistics, emitted as 'epoch' when the backup acknowledges it. */
export interface EpochStats {
  epoch: number;
  full: boolean;
  pauseMs: number;
  /** Floor of the pause: dirty-log fetch + page copy, ms. */
  floorMs: number;
  dirtyPages: number;
  /** dirtyPages * pageSize: what Remus-style whole-page shipping would send. */
  pageBytes: number;
  /** Encoded page frame bytes. */
  frameBytes: number;
  /** Whole epoch body on the wire. */
  bodyBytes: number;
  records: number;
  encodeMs: number;
  /** Resume to acknowledgement, ms: the added output latency. */
  commitMs: number;
  /** Epochs captured but not yet acknowledged after this ack. */
  lagEpochs: number;
  intervalMs: number;
}

interface InFlight {
  stats: Omit<EpochStats, 'commitMs' | 'lagEpochs' | 'intervalMs'>;
  at: number;
  recordEnd: number;
  final: string | null;
  /** performance.now() once its EPOCH_END was written (the backup can acknowledge it from then); null while it is being sent. */
  sentAt: number | null;
}

export interface PrimaryEvents {
  epoch: [EpochStats];
  protected: [{ generation: bigint; backupEpoch: bigint }];
  degraded: [{ reason: string }];
  backpressure: [{ intervalMs: number }];
  fenced: [{ reason: string }];
  done: [{ final: string }];
  log: [string];
  error: [Error];
}

export class Primary extends EventEmitter<PrimaryEvents> {
  readonly log: OutputLog;
  readonly vmId: Buffer;
  readonly generation: bigint;
  service: ServicePort | null = null;
  private link: Link | null = null;
  private linkSerial = 0;
  private loop: EpochLoop | null = null;
  private kernels!: PageKernels;
  private shadow: Uint8Array;
  private nextEpoch: bigint;
  private needFull = true;
  private sentRecords = 0;
  /** Epochs sent (or being sent) on the current link and not yet acknowledged, oldest first. */
  private inFlight = new Map<bigint, InFlight>();
  /** Captures handed to ship() that are neither in flight yet nor dropped. */
  private queued = 0;
  /** performance.now() when the epoch being written last made progress (started, or a drain ended). */
  private sendProgressAt = 0;
  private queue: Promise<void> = Promise.resolve();
  private server: Server | null = null;
  private ownServer = false;
  private closed = false;
  /** The backup acknowledged the final epoch (the run is done): close() says BYE. */
  private runDone = false;
  private fenced = false;
  private readonly handshakes = new HandshakeSlots();
  private stallGuard: StallGuard | null = null;
  private degradedSince: number | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private finishedCapture = false;
  private guestPausedForLoss = false;
  /** The guest is stopped because a connected backup is too far behind (held output past the limit). */
  private guestPausedForHeld = false;
  /** Gather buffers, handed back once their epoch is encoded (or dropped). */
  private readonly pagePool = new PageBufferPool();
  readonly intervalMs: number;
  readonly timeoutMs: number;
  private readonly pageSize: number;
  private readonly pageCount: number;

  constructor(readonly opts: PrimaryOptions) {
    super();
    checkOptionsObject(opts, 'options');
    checkKey(opts.key, opts.insecure);
    checkPrimaryTuning(opts as unknown as Record<string, unknown>);
    checkEndpoint(opts.connect, 'connect');
    checkEndpoint(opts.listen, 'listen', 'listen');
    checkEndpoint(opts.serve, 'serve', 'server');
    const interval = opts.intervalMs ?? 25;
    this.intervalMs = interval;
    this.timeoutMs = opts.timeoutMs ?? Math.max(20 * interval, 1000);
    this.log = opts.log ?? new OutputLog(opts.retain);
    this.vmId = opts.vmId ?? randomBytes(16);
    this.generation = opts.generation ?? 1n;
    this.nextEpoch = opts.nextEpoch ?? 1n;
    this.sentRecords = 0;
    this.pageSize = opts.guest?.pageSize ?? opts.pageSize ?? 4096;
    this.pageCount = opts.guest?.pageCount ?? opts.pageCount ?? 0;
    // Shared memory: never detached, so encodePages works on it in the background on every
    // runtime (a plain ArrayBuffer is encoded inline on Node 22, see holdForAsync).
    this.shadow = new Uint8Array(new SharedArrayBuffer(this.pageSize * this.pageCount));
  }

  /**
   * Epochs captured and not yet acknowledged: queued for encoding or in flight. Counted from the
   * queue and the in-flight set themselves, so no ACK and no lost link can skew it.
   */
  get lag(): number {
    return this.queued + this.inFlight.size;
  }

  get isProtected(): boolean {
    return this.link !== null && !this.needFull;
  }

  async start(): Promise<void> {
    this.kernels = this.opts.kernels ?? (await defaultKernels());
    const s = this.opts.serve;
    if (s) this.service = 'server' in s ? s : await startServicePort(this.log, s.host, s.port);
    if (this.service && 'server' in (s as object)) this.service.setLog(this.log);
    if (this.opts.listen) {
      if ('listen' in this.opts.listen && typeof this.opts.listen.listen === 'function') {
        this.server = this.opts.listen as Server;
      } else {
        const ep = this.opts.listen as Endpoint;
        const { createServer } = await import('node:net');
        this.server = createServer();
        this.ownServer = true;
        await new Promise<void>((res, rej) => {
          this.server!.once('error', rej);
          this.server!.listen(ep.port, ep.host, () => res());
        });
      }
      this.server.removeAllListeners('connection');
      this.server.on('connection', (sock: Socket) => void this.adopt(sock));
    }
    if (this.opts.connect) this.dial();
    if (this.opts.guest) {
      const guest = this.opts.guest;
      this.loop = new EpochLoop(guest, this.kernels, {
        intervalMs: this.intervalMs,
        // Captured-but-unacknowledged epochs (queued for encoding or on the wire) are bounded.
        ready: () => this.lag < (this.opts.maxInFlight ?? 3) && !this.guestPausedForLoss && !this.guestPausedForHeld,
        plan: () => {
          const linked = this.link !== null;
          return {
            full: linked && this.needFull,
            gather: linked,
            clock: this.opts.nondeterministic ? BigInt(Date.now()) : undefined,
            pool: this.pagePool,
          };
        },
        handle: (c) => this.onCapture(c),
      });
      // Only a connected backup can be behind (with none, the guest paused for loss also stalls the loop).
      let behind = false;
      this.loop.on('backpressure', (e: { intervalMs: number }) => {
        if (this.link) {
          behind = true;
          this.emit('log', `backup is behind: epoch interval lengthened to ${e.intervalMs} ms`);
        }
        this.emit('backpressure', e);
      });
      this.loop.on('recovered', (e: { intervalMs: number }) => {
        if (behind) this.emit('log', `backup caught up: epoch interval back to ${e.intervalMs} ms`);
        behind = false;
      });
      this.loop.on('error', (err: Error) => this.emit('error', err));
      guest.start();
      this.loop.start();
    } else if (this.log.final !== null) {
      this.log.releaseFinal();
    }
    this.stallGuard = new StallGuard(Math.max(20, this.timeoutMs / 4));
    this.watchdog = setInterval(() => this.checkLiveness(), Math.max(20, this.timeoutMs / 4));
    this.watchdog.unref();
  }

  private dial(): void {
    if (this.closed || this.fenced || !this.opts.connect) return;
    const ep = this.opts.connect;
    const sock = netConnect(ep.port, ep.host);
    let settled = false;
    const retry = (): void => {
      if (settled) return;
      settled = true;
      if (!this.closed && !this.fenced) this.reconnectTimer = setTimeout(() => this.dial(), 200);
    };
    sock.once('error', retry);
    sock.once('connect', () => {
      sock.off('error', retry);
      settled = true;
      void this.adopt(sock).then((ok) => {
        if (!ok) this.reconnectTimer = setTimeout(() => this.dial(), 500);
      });
    });
  }

  /** Runs the handshake on a new socket and makes it the backup link. */
  private async adopt(sock: Socket): Promise<boolean> {
    if (this.closed || this.fenced) {
      sock.destroy();
      return false;
    }
    // With a backup already connected the handshake still runs: a stale primary dialling us must
    // meet our HELLO and proof to learn it is stale and fence itself (refused before any HELLO it
    // retried for ever); a second backup is refused once the handshake is done.
    const link = this.handshakes.begin(sock);
    try {
      const ch = await primaryHandshake(link, {
        key: this.opts.insecure ? null : this.opts.key!,
        vmId: this.vmId, generation: this.generation, nextEpoch: this.nextEpoch,
        pageSize: this.pageSize, pageCount: this.pageCount, guestType: this.opts.guestType ?? 'other',
      }, this.timeoutMs * 4);
      if (this.link || this.closed) {
        if (this.link) this.emit('log', 'refused a second backup connection: one backup at a time');
        link.fail(null);
        return true;
      }
      if (ch.nextRecord > BigInt(this.log.length)) {
        throw new ProtocolError('REJECTED', `backup holds ${ch.nextRecord} records but we produced only ${this.log.length}: not our history`);
      }
      link.established();
      this.link = link;
      const serial = ++this.linkSerial;
      this.needFull = true;
      // A backup that holds less than we still keep gets the history from our oldest kept record.
      this.sentRecords = Math.max(Number(ch.nextRecord), this.log.firstKept);
      this.log.release(Math.max(this.log.released, Math.min(this.sentRecords, this.log.length)));
      link.on('frame', (f: Frame) => this.onFrame(f, serial));
      link.on('close', (err: Error | null) => this.onLinkClose(serial, err));
      link.startHeartbeat(Math.max(10, Math.min(this.intervalMs * 2, this.timeoutMs / 5)), () => this.generation);
      this.emit('log', `backup connected (it holds epoch ${ch.lastCommitted}, ${ch.nextRecord} records): full resync`);
      this.degradedSince = null;
      if (this.guestPausedForLoss && this.opts.guest) {
        this.guestPausedForLoss = false;
        // Past the held-output limit it stays stopped: the full resync's capture resumes it and
        // stops it again until that epoch is acknowledged (onCapture), so a backup that connects
        // and never acknowledges cannot let the held output grow, one reconnection at a time.
        if (this.heldWithin(1 / 2)) this.opts.guest.resume();
      }
      if (!this.opts.guest) this.sendFinishedState(link);
      if (this.finishedCapture && this.opts.guest) void this.recaptureFinal();
      else this.loop?.kick();
      return true;
    } catch (err) {
      link.fail(null);
      if (err instanceof SupersededError) {
        this.fence(err.message);
        return true;
      }
      this.emit('log', `backup handshake failed: ${(err as Error).message}`);
      return false;
    } finally {
      this.handshakes.end(link);
    }
  }

  /** A promoted backup whose workload had finished: hand the new backup the final state. */
  private sendFinishedState(_link: Link): void {
    // Nothing to run: the stream is complete and already released. A new backup simply holds
    // nothing to fail over to; refusing it keeps that honest.
    this.emit('log', 'workload already finished: nothing to protect');
  }

  /** The workload finished before this backup had its final state: capture it once more. */
  private async recaptureFinal(): Promise<void> {
    try {
      this.onCapture(await captureEpoch(this.opts.guest!, this.kernels, { full: true, gather: true }));
    } catch (err) {
      this.emit('error', err as Error);
    }
  }

  private onCapture(c: Capture): void {
    this.log.append(c.records);
    const recordEnd = this.log.length;
    // An unprotected `continue` primary holds its output; past half the retention (so the burst
    // a returning backup releases still fits in it) it stops the guest rather than hold without bound.
    const heldLimit = Math.floor(this.log.retainRecords / 2);
    const heldBytesLimit = Math.floor(this.log.retainBytes / 2);
    const over = !this.heldWithin(1 / 2);
    if (!this.link && c.final === null && over) {
      this.pauseGuestForLoss(`${this.log.held} output records (${this.log.heldBytes} bytes) held with no backup (limit ${heldLimit} records, ${heldBytesLimit} bytes): guest paused until a backup connects`);
    }
    // A connected backup that cannot keep up with the guest's output: the same bound, or the held
    // output grows without limit (a sim guest writing records as fast as it can reached 4.6 GB).
    // The guest waits for the backup's acknowledgements (onFrame resumes it), so only with epochs
    // queued or in flight, this one included (a backup that connects while too much is held gets
    // its full resync before the guest runs on: it used to run until the next capture each time,
    // so a backup that reconnected and never acknowledged let the held output grow on).
    const ships = this.link !== null && c.pages !== null && !(this.needFull && !c.full);
    if (this.link && this.opts.guest && c.final === null && !this.guestPausedForHeld && (this.lag > 0 || ships) && over) {
      this.guestPausedForHeld = true;
      this.emit('log', `${this.log.held} output records (${this.log.heldBytes} bytes) held, the backup is behind (limit ${heldLimit} records, ${heldBytesLimit} bytes): guest paused until it catches up`);
      void this.opts.guest.pause();
    }
    if (c.final !== null) {
      this.finishedCapture = true;
      this.log.setFinal(c.final);
    }
    const link = this.link;
    // Degraded, or a delta planned before a new backup connected (it must get the full resync
    // first, and the full epoch will carry these pages too): nothing to send.
    if (!link || !c.pages || (this.needFull && !c.full)) {
      this.pagePool.give(c.pages);
      this.needFull = true;
      return;
    }
    if (c.full) this.needFull = false;
    const epoch = this.nextEpoch++;
    const serial = this.linkSerial;
    this.queued++;
    this.queue = this.queue.then(() => this.ship(c, epoch, serial, recordEnd)).catch((err: Error) => {
      this.emit('log', `epoch ${epoch} not sent: ${err.message}`);
      this.needFull = true;
    });
  }

  private async ship(c: Capture, epoch: bigint, serial: number, recordEnd: number): Promise<void> {
    // Counted in `queued` until it is in flight or dropped (a failed encode too).
    let queued = true;
    const dequeue = (): void => {
      if (queued) this.queued--;
      queued = false;
    };
    try {
      await this.shipQueued(c, epoch, serial, recordEnd, dequeue);
    } finally {
      dequeue();
    }
  }

  private async shipQueued(c: Capture, epoch: bigint, serial: number, recordEnd: number, dequeue: () => void): Promise<void> {
    const link = this.link;
    if (!link || serial !== this.linkSerial || link.closed) {
      this.pagePool.give(c.pages);
      this.needFull = true;
      return;
    }
    const t0 = performance.now();
    if (c.full) this.shadow.fill(0);
    let frame: Uint8Array;
    try {
      frame = await this.kernels.encodePages(this.shadow, c.pages!, c.pfns, { pageSize: this.pageSize, threads: this.opts.threads });
    } finally {
      this.pagePool.give(c.pages);
    }
    const encodeMs = performance.now() - t0;
    const from = this.sentRecords;
    const records = this.log.slice(from, recordEnd);
    const body = encodeEpochBody({
      flags: (c.full ? FLAG_FULL : 0) | (c.final !== null ? FLAG_FINAL : 0),
      pageSize: this.pageSize, pageCount: this.pageCount, cpu: c.cpu, records, firstRecordSeq: from, releasedRecords: this.log.released,
      final: c.final, captureMs: c.wallMs, frame,
    });
    if (serial !== this.linkSerial || link.closed) {
      this.needFull = true;
      return;
    }
    this.sentRecords = recordEnd;
    dequeue();
    this.sendProgressAt = performance.now();
    const inFlight: InFlight = {
      stats: {
        epoch: Number(epoch), full: c.full, pauseMs: c.pauseMs, floorMs: c.dirtyMs + c.gatherMs, dirtyPages: c.pfns.length,
        pageBytes: c.pfns.length * this.pageSize, frameBytes: frame.length, bodyBytes: body.length, records: records.length, encodeMs,
      },
      at: c.at, recordEnd, final: c.final, sentAt: null,
    };
    this.inFlight.set(epoch, inFlight);
    const lenBuf = Buffer.alloc(16);
    lenBuf.writeBigUInt64LE(BigInt(body.length), 0);
    link.send(FrameType.EPOCH_BEGIN, this.generation, epoch, lenBuf);
    for (let off = 0; off < body.length; off += CHUNK_BYTES) {
      if (!link.send(FrameType.EPOCH_DATA, this.generation, epoch, body.subarray(off, Math.min(body.length, off + CHUNK_BYTES)))) {
        await link.drain();
        this.sendProgressAt = performance.now();
      }
      if (link.closed) return;
    }
    link.send(FrameType.EPOCH_END, this.generation, epoch, createHash('sha256').update(body).digest());
    inFlight.sentAt = performance.now();
  }

  private onFrame(f: Frame, serial: number): void {
    if (serial !== this.linkSerial) return;
    if (f.type === FrameType.ACK) {
      // One ACK per epoch, in order (the backup commits them in order on one stream): an ACK must
      // name the oldest epoch in flight. A cumulative, skipped, repeated or early ACK is refused.
      const oldest = this.inFlight.keys().next();
      if (oldest.done) throw new ProtocolError('STALE_EPOCH', `ACK for epoch ${f.epoch}, but no epoch is in flight`);
      if (f.epoch !== oldest.value) {
        throw new ProtocolError('STALE_EPOCH', `ACK for epoch ${f.epoch}, but the oldest epoch in flight is ${oldest.value}: each epoch must be acknowledged once, in order`);
      }
      const e = this.inFlight.get(f.epoch)!;
      if (e.sentAt === null) throw new ProtocolError('STALE_EPOCH', `ACK for epoch ${f.epoch} before it was sent in full`);
      if (f.payload.length !== 8) throw new ProtocolError('BAD_PAYLOAD', `ACK payload must be 8 bytes, got ${f.payload.length}`);
      const nextRecord = Number(f.payload.readBigUInt64LE(0));
      if (nextRecord !== e.recordEnd) throw new ProtocolError('BAD_PAYLOAD', `ACK for epoch ${f.epoch} says ${nextRecord} records, expected ${e.recordEnd}`);
      this.inFlight.delete(f.epoch);
      this.log.release(nextRecord);
      // Resumed under a quarter of the retention, or once nothing is in flight (records captured
      // but not sent, e.g. before a new backup's full resync, go in the next epoch, which needs
      // the loop, which waits for the guest).
      if (this.guestPausedForHeld && (this.heldWithin(1 / 4) || this.inFlight.size === 0)) {
        this.guestPausedForHeld = false;
        this.emit('log', 'the backup caught up with the held output: guest resumed');
        this.opts.guest?.resume();
        this.loop?.kick();
      }
      const stats: EpochStats = { ...e.stats, commitMs: performance.now() - e.at, lagEpochs: this.lag, intervalMs: this.loop?.intervalMs ?? this.intervalMs };
      this.emit('epoch', stats);
      if (e.stats.full) this.emit('protected', { generation: this.generation, backupEpoch: f.epoch });
      if (e.final !== null) {
        this.log.releaseFinal();
        this.runDone = true;
        this.emit('done', { final: e.final });
      }
      return;
    }
    if (f.type === FrameType.REJECT) {
      throw new ProtocolError('REJECTED', `backup refused: ${f.payload.subarray(2).toString('utf8')}`);
    }
    throw new ProtocolError('BAD_TYPE', `primary does not accept frame type 0x${f.type.toString(16)} after the handshake`);
  }

  private onLinkClose(serial: number, err: Error | null): void {
    if (serial !== this.linkSerial || !this.link) return;
    this.link = null;
    if (this.guestPausedForHeld) {
      this.guestPausedForHeld = false;
      if (this.opts.onBackupLoss !== 'pause' && this.heldWithin(1 / 2)) {
        // `continue` with no more held than an unprotected primary may hold: run on.
        this.opts.guest?.resume();
      } else {
        // Still paused, now with no backup: it resumes when one connects (as for a loss).
        this.guestPausedForLoss = true;
      }
    }
    this.needFull = true;
    this.inFlight.clear();
    this.emit('log', `backup link lost${err ? `: ${err.message}` : ''}`);
    this.markDegraded(err ? `backup link lost: ${err.message}` : 'backup link closed');
    if (this.opts.connect && !this.closed && !this.fenced) this.reconnectTimer = setTimeout(() => this.dial(), 100);
  }

  private markDegraded(reason: string): void {
    if (this.degradedSince !== null || this.closed) return;
    this.degradedSince = performance.now();
    this.emit('degraded', { reason });
    if (this.opts.onBackupLoss === 'pause' && !this.finishedCapture) this.pauseGuestForLoss(null);
  }

  /** Output held (appended, not yet released) within `share` of the retention, in records and bytes. */
  private heldWithin(share: number): boolean {
    return this.log.held <= this.log.retainRecords * share && this.log.heldBytes <= this.log.retainBytes * share;
  }

  /** Stops the guest until a backup connects (handshake resumes it); `why` is logged. */
  private pauseGuestForLoss(why: string | null): void {
    if (!this.opts.guest || this.guestPausedForLoss) return;
    this.guestPausedForLoss = true;
    if (why) this.emit('log', why);
    void this.opts.guest.pause();
  }

  private checkLiveness(): void {
    if (this.stallGuard?.stalled()) return; // our own stall, not the peer's silence: look again next tick
    const link = this.link;
    if (link && link.silentFor() > this.timeoutMs) {
      this.emit('log', `backup silent for ${Math.round(link.silentFor())} ms (timeout ${this.timeoutMs} ms)`);
      link.fail(new ProtocolError('TIMEOUT', `backup silent past the ${this.timeoutMs} ms timeout`));
      return;
    }
    // A backup that heartbeats but does not commit is lost too: with maxInFlight epochs
    // unacknowledged the loop takes no epoch, the guest runs on, and the output it writes piles
    // up unbounded in the guest's own queue (no capture takes it, so no held-output limit sees it).
    // The oldest epoch must be acknowledged within the timeout once sent in full, and while it is
    // being sent the backup must keep taking its data.
    const oldest = this.inFlight.entries().next();
    if (link && !oldest.done) {
      const [epoch, e] = oldest.value;
      const now = performance.now();
      if (e.sentAt !== null && now - e.sentAt > this.timeoutMs) {
        link.fail(new ProtocolError('TIMEOUT', `epoch ${epoch} not acknowledged ${Math.round(now - e.sentAt)} ms after it was sent (timeout ${this.timeoutMs} ms): the backup is alive but not committing`));
      } else if (e.sentAt === null && now - this.sendProgressAt > this.timeoutMs) {
        link.fail(new ProtocolError('TIMEOUT', `epoch ${epoch}: the backup took none of its data for ${Math.round(now - this.sendProgressAt)} ms (timeout ${this.timeoutMs} ms)`));
      }
    }
  }

  /** We learned that a newer generation exists: stop releasing and stop the guest. */
  fence(reason: string): void {
    if (this.fenced) return;
    this.fenced = true;
    this.emit('log', `fenced: ${reason}`);
    this.loop?.stop();
    this.link?.fail(null);
    this.emit('fenced', { reason });
    void this.opts.guest?.pause().catch(() => undefined);
  }

  /** Waits until the queue of epochs to ship is empty (tests). */
  async flush(): Promise<void> {
    await this.queue;
  }

  /** Sends BYE (run finished) so the backup can stop. */
  bye(): void {
    this.link?.send(FrameType.BYE, this.generation, 0n);
  }

  /**
   * Stops the primary and closes its guest. After 'done' (the backup holds the final epoch) it
   * first says BYE, so the backup stops too; before, closing looks to the backup like a crash
   * and it takes over, which is what a primary stopped mid-run wants.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.loop?.stop();
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.link && this.runDone) {
      this.bye();
      const s = this.link.socket;
      // Let the BYE reach the wire before the socket is torn down (bounded: a dead peer).
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 500);
        s.end(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (this.link) {
      const s = this.link.socket;
      this.link.fail(null);
      s.destroy();
    }
    await this.queue.catch(() => undefined);
    if (this.server && this.ownServer) await new Promise<void>((r) => this.server!.close(() => r()));
    else this.server?.removeAllListeners('connection');
    if (this.service) await this.service.close();
    if (this.opts.guest) await this.opts.guest.close().catch(() => undefined);
  }
}

/**
 * Starts a primary: the guest runs in epochs, each shipped to the backup, output released as the
 * backup acknowledges it. Events: 'epoch' (EpochStats), 'protected', 'degraded', 'backpressure',
 * 'fenced', 'done', 'log' (a human-readable line), 'error'.
 * @throws TypeError without a key unless `insecure: true`; RangeError for a bad interval.
 */
export async function startPrimary(opts: PrimaryOptions): Promise<Primary> {
  const p = new Primary(opts);
  await p.start();
  return p;
}
