/**
 * One authenticated replication connection: a socket, a FrameDecoder for what comes in, a
 * sequence counter and session key for what goes out, a monotonic "last heard" time, and
 * periodic heartbeats. Frames are written whole; a big epoch goes out as 256 KiB chunks with
 * awaited drains between them, so heartbeats (written between chunks) are never starved.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import { encodeFrame, FrameDecoder, FrameType, HANDSHAKE_MAX_PAYLOAD, ZERO_KEY, type Frame, type FrameTypeValue, frameTypeName } from './wire.js';
import { ProtocolError } from '../errors/protocol-error.js';

/**
 * Tells a periodic watchdog that its own process was stalled (a long GC, a big synchronous job):
 * a timer that fires far later than its period runs before the socket reads that waited with it,
 * so the peer's frames are not counted yet and the peer would be blamed for our silence. The
 * watchdog skips that one check; the next runs after the pending reads.
 */
export class StallGuard {
  private last = performance.now();
  constructor(private readonly periodMs: number) {}

  private skipped = false;

  /**
   * True when this call comes more than a period late (and so the check should wait a turn);
   * never twice in a row, so a loop that is late on every tick still gets its checks.
   */
  stalled(): boolean {
    const now = performance.now();
    const late = now - this.last > 2 * this.periodMs + 50 && !this.skipped;
    this.last = now;
    this.skipped = late;
    return late;
  }
}

/** Handshakes a listener runs at once; a flood of unauthenticated connections beyond it is dropped. */
export const MAX_PENDING_HANDSHAKES = 16;

/**
 * The connections whose handshake is still running, oldest first. Each costs a socket and a
 * timer until it ends: at most MAX_PENDING_HANDSHAKES at once, and a new one evicts the oldest (so
 * idle connections cannot keep the real peer out; a real handshake takes one round trip).
 */
export class HandshakeSlots {
  private readonly links = new Set<Link>();

  /** A Link for `sock`, counted until end(); the oldest pending one is failed if all are taken. */
  begin(sock: Socket): Link {
    if (this.links.size >= MAX_PENDING_HANDSHAKES) {
      const oldest = this.links.values().next().value as Link;
      this.links.delete(oldest);
      oldest.fail(new ProtocolError('TIMEOUT', `evicted: ${MAX_PENDING_HANDSHAKES} handshakes were in progress`));
    }
    const link = new Link(sock);
    this.links.add(link);
    return link;
  }

  end(link: Link): void {
    this.links.delete(link);
  }
}

export class Link extends EventEmitter {
  readonly decoder: FrameDecoder;
  txKey: Uint8Array = ZERO_KEY;
  private txSeq = 0n;
  lastHeard = performance.now();
  closed = false;
  /** Why the link closed, when it was an error (a bad frame, a socket error); null otherwise. */
  failure: Error | null = null;
  private hb: NodeJS.Timeout | null = null;
  private queue: Frame[] = [];
  private waiter: ((f: Frame | null) => void) | null = null;
  /** Frames go to 'frame' listeners after the handshake; before, to next(). */
  private handshaking = true;

  constructor(readonly socket: Socket, maxPayload?: number) {
    super();
    this.decoder = new FrameDecoder(maxPayload);
    this.decoder.payloadLimit = Math.min(HANDSHAKE_MAX_PAYLOAD, this.decoder.maxPayload);
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      if (this.closed) return;
      let frames: Frame[];
      try {
        frames = this.decoder.push(d);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      for (const f of frames) {
        this.lastHeard = performance.now();
        if (this.handshaking) {
          if (this.waiter) {
            const w = this.waiter;
            this.waiter = null;
            w(f);
          } else this.queue.push(f);
        } else if (f.type !== FrameType.HEARTBEAT) {
          try {
            this.emit('frame', f);
          } catch (err) {
            this.fail(err as Error);
            return;
          }
        }
        if (this.closed) return;
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(null));
  }

  /** Next frame during the handshake (null on close or timeout). */
  next(timeoutMs: number): Promise<Frame | null> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = null;
        resolve(null);
      }, timeoutMs);
      this.waiter = (f) => {
        clearTimeout(t);
        resolve(f);
      };
    });
  }

  /** Ends the handshake phase: from now on frames are emitted as 'frame'. */
  established(): void {
    this.handshaking = false;
    this.decoder.payloadLimit = this.decoder.maxPayload;
    const q = this.queue;
    this.queue = [];
    for (const f of q) if (f.type !== FrameType.HEARTBEAT) this.emit('frame', f);
  }

  send(type: FrameTypeValue, generation: bigint, epoch: bigint, payload?: Uint8Array): boolean {
    if (this.closed) return false;
    const buf = encodeFrame({ type, seq: this.txSeq++, generation, epoch, payload }, this.txKey);
    return this.socket.write(buf);
  }

  /** Resolves when the socket's write buffer has drained (or the link closed). */
  drain(): Promise<void> {
    if (this.closed || this.socket.writableLength < 1024 * 1024) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.off('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.once('close', done);
    });
  }

  startHeartbeat(everyMs: number, generation: () => bigint): void {
    this.hb = setInterval(() => this.send(FrameType.HEARTBEAT, generation(), 0n), everyMs);
    this.hb.unref();
  }

  /** Monotonic milliseconds since the last verified frame. */
  silentFor(): number {
    return performance.now() - this.lastHeard;
  }

  fail(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = err;
    if (this.hb) clearInterval(this.hb);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(null);
    }
    this.socket.destroy();
    this.emit('close', err);
  }
}

/**
 * The frame `f` if it is of `type`. With `link`, a missing frame names why the link failed (a
 * bad frame's own error: magic, MAC, length) instead of only that none came.
 */
export function expectType(f: Frame | null, type: FrameTypeValue, what: string, link?: Link): Frame {
  if (!f && link?.failure) {
    const code = link.failure instanceof ProtocolError ? link.failure.code : 'TIMEOUT';
    throw new ProtocolError(code, `${what}: waiting for ${frameTypeName(type)}: ${link.failure.message}`);
  }
  if (!f) throw new ProtocolError('TIMEOUT', `${what}: connection closed or timed out waiting for ${frameTypeName(type)}`);
  if (f.type !== type) throw new ProtocolError('BAD_TYPE', `${what}: expected ${frameTypeName(type)}, got ${frameTypeName(f.type)}`);
  return f;
}
