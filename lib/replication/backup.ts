/**
 * The backup: receives epochs, verifies each completely (per-frame MACs and sequence numbers, the
 * body's SHA-256, every length, the page frame via applyPages' validation), stages and commits it
 * atomically (memory, CPU blob, records) and only then acknowledges it. A torn or corrupt epoch is
 * dropped whole with its connection; the replica stays at the last committed epoch.
 *
 * When the primary has been silent past the timeout (monotonic clock) the backup fences it (a
 * command or a hook), restores the guest from the last committed epoch, becomes a primary of the
 * next generation on the same addresses (its listen socket now takes a new backup, its service
 * port serves the stream) and carries on.
 */
import { EventEmitter } from 'node:events';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { exec } from 'node:child_process';
import { OutputLog, type OutputLogOptions } from '../checkpoint/output-buffer.js';
import { startServicePort, type ServicePort } from '../checkpoint/service-port.js';
import { decodeEpochBody, FLAG_FINAL, FLAG_FULL } from './epoch-body.js';
import { FrameType, type Frame } from './wire.js';
import { HandshakeSlots, Link, StallGuard } from './link.js';
import { backupHandshake } from './handshake.js';
import { RejectCode, type GuestTypeName } from './auth.js';
import {
  defaultChainHash, defaultCheckGuestState, defaultKernels, defaultRestoreGuest,
  type ChainHash, type CheckGuestState, type PageKernels, type RestoreGuest,
} from './kernels.js';
import { ProtocolError } from '../errors/protocol-error.js';
import { startPrimary, type Endpoint, type Primary, type PrimaryOptions } from './primary.js';
import { checkEndpoint, checkInt, checkKey, checkMs, checkOptionsObject, checkPrimaryTuning } from './options.js';


export interface BackupOptions {
  key?: Uint8Array;
  insecure?: boolean;
  /** Accept the primary here (address or a listening server). */
  listen?: Endpoint | Server;
  /** Or dial a primary that listens here (a new backup joining a promoted primary). */
  connect?: Endpoint;
  /** Service port to open once it has taken over. */
  serve?: Endpoint;
  /** Primary silent this long = dead (default 1 s). */
  timeoutMs?: number;
  /** Shell command that fences the old primary; must exit 0. */
  fenceCmd?: string;
  /** Or a hook doing the same. */
  fence?: (info: { vmId: string; generation: bigint }) => Promise<void>;
  /** Take over on primary death (default true). */
  takeover?: boolean;
  kernels?: PageKernels;
  restore?: RestoreGuest;
  /**
   * Checks each epoch's guest state (memory image and CPU blob) before it is acknowledged, as a
   * restore would (default: the package's guests, or the registered backend's `check`; none when
   * `restore` is given without `check`); null turns it off. An epoch that fails is refused and the replica stays at the last committed one.
   */
  check?: CheckGuestState | null;
  /** Options for the primary it becomes after failover. */
  promoted?: Partial<Pick<PrimaryOptions, 'intervalMs' | 'maxInFlight' | 'onBackupLoss' | 'threads' | 'nondeterministic' | 'timeoutMs'>>;
  /** Largest epoch body accepted (default: 1.25 x memory + 64 MiB + twice the output retention). */
  maxEpochBytes?: number;
  /** How much released output history to keep for late clients and new backups. */
  retain?: OutputLogOptions;
}

export interface CommitInfo {
  epoch: number;
  full: boolean;
  bodyBytes: number;
  records: number;
  final: string | null;
  /** Capture on the primary to commit here, wall clock ms (same host: replica lag). */
  lagMs: number;
}

export interface BackupEvents {
  commit: [CommitInfo];
  connected: [{ generation: bigint }];
  dropped: [{ epoch: number; reason: string }];
  refused: [{ reason: string }];
  fenced: [{ vmId: string; generation: bigint }];
  failover: [{ epoch: number; generation: bigint; records: number; finished: boolean }];
  'takeover-refused': [{ reason: string }];
  done: [{ final: string }];
  log: [string];
  error: [Error];
}

const ZERO_CHAIN = '0000000000000000';

type UndoingApply = (replica: Uint8Array, frame: Uint8Array, pageSize: number, out: Uint8Array | null) => { pfns: Uint32Array; pages: Uint8Array };

/**
 * Applies a delta frame and returns the pages it overwrote (into `out` when it holds them): the
 * kernels' applyPagesWithUndo (one validation), else inspectFrame + gatherPages + applyPages; null
 * when the kernels have neither.
 */
function undoingApply(k: PageKernels): UndoingApply | null {
  if (k.applyPagesWithUndo) return (replica, frame, pageSize, out) => k.applyPagesWithUndo!(replica, frame, { pageSize, out: out ?? undefined });
  if (!k.inspectFrame) return null;
  return (replica, frame, pageSize, out) => {
    const pfns = k.inspectFrame!(frame).pfns;
    const fits = out !== null && out.length >= pfns.length * pageSize;
    const pages = k.gatherPages(replica, pfns, { pageSize, out: fits ? out : undefined });
    k.applyPages(replica, frame, { pageSize });
    return { pfns, pages };
  };
}
const MAX_EPOCH = 2n ** 53n - 1n;
const UNDO_KEEP_BYTES = 64 * 1024 * 1024;

interface Receiving {
  epoch: bigint;
  body: Buffer;
  off: number;
}

export class Backup extends EventEmitter<BackupEvents> {
  vmId: Buffer | null = null;
  generation = 0n;
  committedEpoch = 0n;
  replica: Uint8Array | null = null;
  cpu: Uint8Array | null = null;
  pageSize = 0;
  pageCount = 0;
  guestType: GuestTypeName = 'other';
  readonly log: OutputLog;
  /** The primary this backup became, after failover. */
  primary: Primary | null = null;
  /** The primary said goodbye after its final epoch. */
  primaryDone = false;
  private server: Server | null = null;
  private ownServer = false;
  private link: Link | null = null;
  private lastHeard = performance.now();
  private rx: Receiving | null = null;
  private lastBegun = 0n;
  private watchdog: NodeJS.Timeout | null = null;
  private redial: NodeJS.Timeout | null = null;
  private kernels!: PageKernels;
  private closed = false;
  private readonly handshakes = new HandshakeSlots();
  private stallGuard: StallGuard | null = null;
  private takingOver = false;
  private takeoverFailed = false;
  private refusedOnce = false;
  private service: ServicePort | null = null;
  private checkState: CheckGuestState | null = null;
  private chainHash!: ChainHash;
  /** The hash chain of the last record in the log (null: unknown, after a restart past it). */
  private lastChain: string | null = ZERO_CHAIN;
  /** A full epoch was committed on the current link (a link must start with one). */
  private fullOnLink = false;
  /** Where a delta's pages are saved before it is applied (see commitChecked). */
  private undoBuf: Uint8Array | null = null;
  readonly timeoutMs: number;

  constructor(readonly opts: BackupOptions) {
    super();
    checkOptionsObject(opts, 'options');
    checkKey(opts.key, opts.insecure);
    if (!opts.listen && !opts.connect) throw new TypeError('one of `listen` or `connect` is required');
    checkEndpoint(opts.listen, 'listen', 'listen');
    checkEndpoint(opts.connect, 'connect');
    checkEndpoint(opts.serve, 'serve');
    checkMs(opts.timeoutMs, 'timeoutMs', 0);
    checkInt(opts.maxEpochBytes, 'maxEpochBytes', 1, Number.MAX_SAFE_INTEGER);
    if (opts.fenceCmd !== undefined && typeof opts.fenceCmd !== 'string') throw new TypeError(`\`fenceCmd\` must be a string, got ${typeof opts.fenceCmd}`);
    if (opts.fence !== undefined && typeof opts.fence !== 'function') throw new TypeError(`\`fence\` must be a function, got ${typeof opts.fence}`);
    if (opts.promoted !== undefined) {
      checkOptionsObject(opts.promoted, 'promoted');
      checkPrimaryTuning(opts.promoted as Record<string, unknown>, 'promoted.');
    }
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.log = new OutputLog(opts.retain);
  }

  get address(): Endpoint | null {
    const a = this.server?.address();
    if (!a || typeof a === 'string') return null;
    return { host: a.address, port: a.port };
  }

  async start(): Promise<void> {
    this.kernels = this.opts.kernels ?? (await defaultKernels());
    // A custom `restore` knows its own state format: the package's check is for the package's guests.
    this.checkState = this.opts.check !== undefined ? this.opts.check : this.opts.restore ? null : await defaultCheckGuestState();
    this.chainHash = await defaultChainHash();
    // The service port is opened at takeover; a port that is taken must fail now, not then.
    if (this.opts.serve && this.opts.serve.port !== 0) {
      const probe = createServer();
      const ep = this.opts.serve;
      await new Promise<void>((res, rej) => {
        probe.once('error', (err: Error) => rej(new Error(`\`serve\` ${ep.host}:${ep.port} cannot be opened: ${err.message}`)));
        probe.listen(ep.port, ep.host, () => probe.close(() => res()));
      });
    }
    const l = this.opts.listen;
    if (l) {
      if ('listen' in l && typeof (l as Server).listen === 'function') this.server = l as Server;
      else {
        const ep = l as Endpoint;
        this.server = createServer();
        this.ownServer = true;
        await new Promise<void>((res, rej) => {
          this.server!.once('error', rej);
          this.server!.listen(ep.port, ep.host, () => res());
        });
      }
      this.server.on('connection', (s: Socket) => void this.adopt(s));
    }
    if (this.opts.connect) this.dial();
    this.stallGuard = new StallGuard(Math.max(20, this.timeoutMs / 4));
    this.watchdog = setInterval(() => void this.check(), Math.max(20, this.timeoutMs / 4));
  }

  private dial(): void {
    if (this.closed || this.primary || !this.opts.connect) return;
    const ep = this.opts.connect;
    const sock = netConnect(ep.port, ep.host);
    sock.once('error', () => {
      if (!this.closed) this.redial = setTimeout(() => this.dial(), 200);
    });
    sock.once('connect', () => void this.adopt(sock));
  }

  private async adopt(sock: Socket): Promise<void> {
    if (this.closed || this.primary) {
      sock.destroy();
      return;
    }
    const link = this.handshakes.begin(sock);
    try {
      const hello = await backupHandshake(link, {
        key: this.opts.insecure ? null : this.opts.key!,
        vmId: this.vmId, generation: this.generation, lastCommitted: this.committedEpoch, nextRecord: this.log.length,
        decide: (h) => {
          if (this.link && !this.link.closed) {
            if (h.generation > this.generation) return null; // a newer primary replaces the old link
            return [RejectCode.BUSY, 'this backup already has a primary'];
          }
          if (this.vmId && this.committedEpoch > 0n && !this.vmId.equals(h.vmId)) return [RejectCode.WRONG_VM, `this backup holds VM ${this.vmId.toString('hex')}, not ${h.vmId.toString('hex')}`];
          if (this.committedEpoch > 0n && (h.pageSize !== this.pageSize || h.pageCount !== this.pageCount)) return [RejectCode.GEOMETRY, `guest geometry ${h.pageCount}x${h.pageSize} differs from the replica's ${this.pageCount}x${this.pageSize}`];
          if (h.pageSize < 512 || h.pageSize > 1 << 20 || (h.pageSize & (h.pageSize - 1)) !== 0 || h.pageCount === 0) return [RejectCode.GEOMETRY, `bad guest geometry ${h.pageCount}x${h.pageSize}`];
          return null;
        },
      }, this.timeoutMs * 4);
      if (this.primary || this.closed) {
        link.fail(null);
        return;
      }
      if (this.link) this.link.fail(new ProtocolError('REJECTED', `replaced by a primary of generation ${hello.generation}`));
      link.established();
      this.link = link;
      this.rx = null;
      this.fullOnLink = false;
      this.takeoverFailed = false; // a new primary: if it dies too, try again
      this.vmId = hello.vmId;
      this.generation = hello.generation;
      this.pageSize = hello.pageSize;
      this.pageCount = hello.pageCount;
      this.guestType = hello.guestType;
      this.lastBegun = this.committedEpoch;
      this.lastHeard = performance.now();
      this.primaryDone = false;
      link.on('frame', (f: Frame) => this.onFrame(link, f));
      link.on('close', (err: Error | null) => {
        if (err) this.emit('log', `primary link dropped: ${err.message}`);
        if (err instanceof ProtocolError && this.rx) this.emit('dropped', { epoch: Number(this.rx.epoch), reason: err.message });
        if (this.link === link) {
          this.link = null;
          this.rx = null;
        }
        if (this.opts.connect && !this.closed && !this.primary) this.redial = setTimeout(() => this.dial(), 200);
      });
      link.startHeartbeat(Math.max(10, this.timeoutMs / 5), () => this.generation);
      this.emit('connected', { generation: hello.generation });
      this.emit('log', `primary of generation ${hello.generation} connected (VM ${hello.vmId.toString('hex')})`);
    } catch (err) {
      link.fail(null);
      const msg = (err as Error).message;
      this.emit('log', `refused a primary: ${msg}`);
      this.emit('refused', { reason: msg });
      if (this.opts.connect && !this.closed && !this.primary) this.redial = setTimeout(() => this.dial(), 500);
    } finally {
      this.handshakes.end(link);
    }
  }

  private maxBody(): number {
    // Memory, plus the output a full resync may carry: the retained history and what the primary
    // held while it had no backup (each bounded by the retention; 20 bytes of header per record).
    const records = 2 * (this.log.retainBytes + 20 * this.log.retainRecords);
    return this.opts.maxEpochBytes ?? Math.floor(this.pageSize * this.pageCount * 1.25) + 64 * 1024 * 1024 + records;
  }

  private onFrame(link: Link, f: Frame): void {
    if (link !== this.link) return;
    this.lastHeard = performance.now();
    if (f.generation !== this.generation) {
      throw new ProtocolError('STALE_GENERATION', `frame of generation ${f.generation} on a generation ${this.generation} link`);
    }
    switch (f.type) {
      case FrameType.EPOCH_BEGIN: {
        if (this.rx) throw new ProtocolError('BAD_PAYLOAD', `EPOCH_BEGIN ${f.epoch} while epoch ${this.rx.epoch} is incomplete`);
        if (f.epoch <= this.lastBegun || f.epoch <= this.committedEpoch) {
          throw new ProtocolError('STALE_EPOCH', `epoch ${f.epoch} is not after ${this.lastBegun > this.committedEpoch ? this.lastBegun : this.committedEpoch}: replayed or stale`);
        }
        if (f.payload.length !== 16) throw new ProtocolError('BAD_PAYLOAD', `EPOCH_BEGIN payload must be 16 bytes, got ${f.payload.length}`);
        if (f.payload.readBigUInt64LE(8) !== 0n) throw new ProtocolError('BAD_PAYLOAD', `EPOCH_BEGIN ${f.epoch} has non-zero reserved bytes`);
        // Epochs are counted in doubles by everyone downstream (events, the promoted primary).
        if (f.epoch > MAX_EPOCH) throw new ProtocolError('BAD_PAYLOAD', `epoch ${f.epoch} is past the largest epoch number, 2^53 - 1`);
        const len = f.payload.readBigUInt64LE(0);
        if (len > BigInt(this.maxBody()) || len < 64n) throw new ProtocolError('TOO_LARGE', `epoch body length must be from 64 to ${this.maxBody()}, got ${len}`);
        this.lastBegun = f.epoch;
        this.rx = { epoch: f.epoch, body: Buffer.allocUnsafe(Number(len)), off: 0 };
        return;
      }
      case FrameType.EPOCH_DATA: {
        const rx = this.rx;
        if (!rx || rx.epoch !== f.epoch) throw new ProtocolError('BAD_PAYLOAD', `EPOCH_DATA for epoch ${f.epoch} outside its epoch`);
        if (rx.off + f.payload.length > rx.body.length) throw new ProtocolError('TOO_LARGE', `epoch ${f.epoch} data runs past its announced ${rx.body.length} bytes`);
        f.payload.copy(rx.body, rx.off);
        rx.off += f.payload.length;
        return;
      }
      case FrameType.EPOCH_END: {
        const rx = this.rx;
        if (!rx || rx.epoch !== f.epoch) throw new ProtocolError('BAD_PAYLOAD', `EPOCH_END for epoch ${f.epoch} outside its epoch`);
        // this.rx stays set until the commit: if anything below throws, the link's close reports
        // the epoch as dropped.
        if (rx.off !== rx.body.length) throw new ProtocolError('BAD_PAYLOAD', `epoch ${f.epoch} is torn: ${rx.off} of ${rx.body.length} bytes`);
        const want = createHash('sha256').update(rx.body).digest();
        if (f.payload.length !== 32 || !timingSafeEqual(f.payload, want)) throw new ProtocolError('BAD_MAC', `epoch ${f.epoch} body checksum mismatch`);
        const info = this.commit(f.epoch, rx.body);
        this.rx = null;
        const ack = Buffer.alloc(8);
        ack.writeBigUInt64LE(BigInt(this.log.length), 0);
        link.send(FrameType.ACK, this.generation, f.epoch, ack);
        this.emit('commit', info);
        if (info.final !== null) this.emit('done', { final: info.final });
        return;
      }
      case FrameType.BYE:
        // Only the end of a finished run: a BYE mid-run would turn failover off for good.
        // (With nothing committed there is nothing to fail over to: a promoted primary whose run had
        // finished sends its new backup no epoch, only the BYE.)
        if (this.log.final === null && this.committedEpoch !== 0n) throw new ProtocolError('BAD_PAYLOAD', 'BYE before the final epoch was committed');
        this.primaryDone = true;
        this.emit('log', 'primary finished the run and said goodbye');
        return;
      default:
        throw new ProtocolError('BAD_TYPE', `backup does not accept frame type 0x${f.type.toString(16)} after the handshake`);
    }
  }

  /** Validates everything, then commits memory, CPU and records together. */
  private commit(epoch: bigint, raw: Buffer): CommitInfo {
    try {
      return this.commitChecked(epoch, raw);
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
      throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch}: ${(err as Error).message}`);
    }
  }

  private commitChecked(epoch: bigint, raw: Buffer): CommitInfo {
    const body = decodeEpochBody(raw);
    if (body.pageSize !== this.pageSize || body.pageCount !== this.pageCount) {
      throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch} geometry ${body.pageCount}x${body.pageSize} differs from the handshake's`);
    }
    const full = (body.flags & FLAG_FULL) !== 0;
    // A full resync may start past what this backup holds: the primary no longer keeps the early
    // records (retention), so this backup's history restarts there.
    const restart = full && body.firstRecordSeq > this.log.length;
    if (body.firstRecordSeq !== this.log.length && !restart) {
      throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch} records start at ${body.firstRecordSeq}, this backup holds ${this.log.length}`);
    }
    // After the final epoch only its own state again: a primary that lingers for its clients sends
    // it once more (a full epoch, nothing new) to a backup that reconnects.
    if (this.log.final !== null && !(full && body.final === this.log.final && body.records.length === 0 && body.firstRecordSeq === this.log.length)) {
      throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch} after the final epoch ${this.committedEpoch}: the run is over`);
    }
    if (!full && !this.replica) throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch} is a delta but this backup has no replica yet`);
    // Deltas are against the primary's shadow, which it only knows to match this replica after a
    // full epoch on the same connection.
    if (!full && !this.fullOnLink) throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch} is a delta but this connection has not begun with a full epoch`);
    const lastChain = this.checkChains(epoch, body.records, restart ? null : this.lastChain);
    // Stage: a full epoch builds a fresh image; a delta applies in place (applyPages validates the
    // whole frame before it writes a byte, so it is all or nothing). Where the guest state is
    // checked after the apply, the pages a delta writes are saved first, to be put back if it fails.
    const target = full ? new Uint8Array(this.pageSize * this.pageCount) : this.replica!;
    const opts = { pageSize: this.pageSize };
    const { scatterPages } = this.kernels;
    const applyWithUndo = undoingApply(this.kernels);
    const checked = this.checkState !== null && (full || (scatterPages !== undefined && applyWithUndo !== null));
    let undo: { pfns: Uint32Array; pages: Uint8Array } | null = null;
    if (checked && !full) {
      undo = applyWithUndo!(target, body.frame, this.pageSize, this.undoBuf);
      // One buffer reused across epochs (fresh memory costs a page fault per page, under nested
      // virtualisation more than the copy), kept only up to 64 MiB: when the apply had to make
      // its own (none yet, or too small), have one with room for the next.
      const need = undo.pages.byteLength;
      if (undo.pages.buffer !== this.undoBuf?.buffer && need <= UNDO_KEEP_BYTES) this.undoBuf = new Uint8Array(Math.min(UNDO_KEEP_BYTES, 2 * need));
    } else {
      this.kernels.applyPages(target, body.frame, opts);
    }
    if (checked) {
      try {
        this.checkGuestState(epoch, target, body.cpu, body.firstRecordSeq + body.records.length, lastChain, body.final);
      } catch (err) {
        if (undo) scatterPages!(target, undo.pfns, undo.pages, opts);
        throw err;
      }
    }
    // Commit point: nothing below can throw.
    this.replica = target;
    this.cpu = Uint8Array.prototype.slice.call(body.cpu);
    if (full) this.fullOnLink = true;
    this.lastChain = lastChain;
    if (restart) this.log.restartAt(body.firstRecordSeq);
    this.log.append(body.records);
    this.log.release(this.log.length, body.releasedRecords);
    if (body.flags & FLAG_FINAL) this.log.setFinal(body.final!);
    this.committedEpoch = epoch;
    return { epoch: Number(epoch), full, bodyBytes: raw.length, records: body.records.length, final: body.final, lagMs: Date.now() - body.captureMs };
  }

  /**
   * Each record's hash chain must follow from the one before (the log's last, or, after a restart
   * past what this backup holds, the epoch's first record, taken as it is). Returns the chain of
   * the last record (or `prev` when there are none).
   */
  private checkChains(epoch: bigint, records: readonly { seq: number; data: Uint8Array; chain: string }[], prev: string | null): string | null {
    for (const r of records) {
      if (prev !== null && this.chainHash(prev, r.data) !== r.chain) {
        throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch}: output record ${r.seq} breaks the hash chain`);
      }
      prev = r.chain;
    }
    return prev;
  }

  /**
   * The staged image and CPU blob must be resumable (every check of a restore) and agree with the
   * output log as it will stand: the records the log holds plus those the blob carries are those
   * the image's ring has handed out, and the chains meet.
   */
  private checkGuestState(epoch: bigint, image: Uint8Array, cpu: Uint8Array, logLength: number, lastChain: string | null, final: string | null): void {
    let st: ReturnType<CheckGuestState>;
    try {
      st = this.checkState!(image, cpu);
    } catch (err) {
      throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch} holds a guest state that cannot be resumed: ${(err as Error).message}`);
    }
    if (logLength + st.pending !== st.drained) {
      throw new ProtocolError(
        'BAD_PAYLOAD',
        `epoch ${epoch}: the output log would hold ${logLength} records and the CPU state ${st.pending} more, but the image has handed out ${st.drained}`,
      );
    }
    if (st.pending === 0 && lastChain !== null && logLength > 0 && lastChain !== st.outChain) {
      throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch}: the output log's hash chain (${lastChain}) differs from the image's (${st.outChain})`);
    }
    if (st.type !== undefined && (this.guestType === 'sim' || this.guestType === 'kvm') && st.type !== this.guestType) {
      throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch} holds a ${st.type} CPU state, but the primary said its guest is ${this.guestType}`);
    }
    if (final !== null && st.final !== undefined && st.final !== final) {
      throw new ProtocolError('BAD_PAYLOAD', `epoch ${epoch} is final with checksum ${final}, but its image's is ${st.final ?? 'not final (the workload has not finished)'}`);
    }
  }

  private async check(): Promise<void> {
    if (this.stallGuard?.stalled()) return; // our own stall, not the peer's silence: look again next tick
    if (this.closed || this.primary || this.takingOver) return;
    if (this.link && this.link.silentFor() > this.timeoutMs) {
      this.link.fail(new ProtocolError('TIMEOUT', `primary silent past the ${this.timeoutMs} ms timeout`));
    }
    if (this.link || this.vmId === null) return;
    if (performance.now() - this.lastHeard <= this.timeoutMs) return;
    if (this.opts.takeover === false || this.primaryDone || this.takeoverFailed) return;
    await this.takeOver();
  }

  /** Fences the old primary and becomes the primary. Public for embedders that decide themselves. */
  async takeOver(): Promise<void> {
    if (this.primary || this.takingOver) return;
    if (this.committedEpoch === 0n || !this.replica || !this.cpu) {
      const reason = 'cannot take over: no committed epoch (the primary never completed its first epoch), so there is no state to resume from';
      if (!this.refusedOnce) {
        this.refusedOnce = true;
        this.emit('log', reason);
        this.emit('takeover-refused', { reason });
      }
      return;
    }
    this.takingOver = true;
    const vmId = this.vmId!.toString('hex');
    try {
      await this.runFence(vmId);
    } catch (err) {
      this.emit('log', `fencing failed, not taking over: ${(err as Error).message}`);
      this.takingOver = false;
      return;
    }
    this.emit('fenced', { vmId, generation: this.generation });
    const finished = this.log.final !== null;
    const generation = this.generation + 1n;
    this.emit('log', `primary silent past ${this.timeoutMs} ms: taking over at epoch ${this.committedEpoch} as generation ${generation}${finished ? ' (workload already finished)' : ''}`);
    try {
      if (this.opts.serve && !this.service) this.service = await startServicePort(this.log, this.opts.serve.host, this.opts.serve.port);
      let guest: Awaited<ReturnType<RestoreGuest>> | null = null;
      if (!finished) {
        const restore = this.opts.restore ?? (await defaultRestoreGuest());
        const type = this.guestType === 'other' ? 'auto' : this.guestType;
        guest = await restore({ type, memoryImage: this.replica, cpu: this.cpu, start: false });
      }
      if (this.redial) clearTimeout(this.redial);
      let p: Primary;
      try {
        p = await startPrimary({
          ...this.opts.promoted,
          guest, key: this.opts.key, insecure: this.opts.insecure,
          listen: this.server ?? undefined, serve: this.service ?? undefined,
          generation, vmId: this.vmId!, nextEpoch: this.committedEpoch + 1n, log: this.log,
          kernels: this.kernels, guestType: this.guestType, pageSize: this.pageSize, pageCount: this.pageCount,
        });
      } catch (err) {
        await guest?.close().catch(() => undefined); // the restored VM and its memory
        throw err;
      }
      this.primary = p;
      this.generation = generation;
      p.on('log', (l) => this.emit('log', l));
      // The promoted primary's failures are this backup's: an 'error' with no listener on `p` would
      // be thrown where nobody catches it.
      p.on('error', (e) => this.emit('error', e));
      this.emit('failover', { epoch: Number(this.committedEpoch), generation, records: this.log.length, finished });
    } catch (err) {
      // Not again on every watchdog tick (each would run the fence command): an embedder that
      // knows better may call takeOver() itself.
      this.takeoverFailed = true;
      this.takingOver = false;
      this.emit('log', `takeover failed: ${(err as Error).message}`);
      this.emit('error', err as Error);
      return;
    }
    this.takingOver = false;
  }

  private runFence(vmId: string): Promise<void> {
    if (this.opts.fence) return this.opts.fence({ vmId, generation: this.generation });
    const cmd = this.opts.fenceCmd;
    if (!cmd) {
      this.emit('log', 'no fence command configured: relying on the old primary holding its output without acknowledgements');
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      exec(cmd, { timeout: 10_000, env: { ...process.env, UNDERSTUDY_VM_ID: vmId, UNDERSTUDY_GENERATION: String(this.generation) } }, (err, _o, stderr) => {
        if (err) reject(new Error(`fence command failed (${err.code ?? err.signal}): ${String(stderr).trim().slice(0, 200)}`));
        else resolve();
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.redial) clearTimeout(this.redial);
    this.link?.fail(null);
    if (this.primary) await this.primary.close();
    else if (this.service) await this.service.close();
    if (this.server && this.ownServer) {
      this.server.close();
    }
  }
}

/**
 * Starts a backup. Events: 'commit' (CommitInfo), 'connected', 'dropped' (a torn or corrupt epoch
 * discarded), 'refused' (a peer refused: stale, wrong key, replay), 'fenced', 'failover',
 * 'takeover-refused', 'done', 'log', 'error'.
 * @throws TypeError without a key unless `insecure: true`, or without listen/connect.
 */
export async function startBackup(opts: BackupOptions): Promise<Backup> {
  const b = new Backup(opts);
  await b.start();
  return b;
}
