/**
 * A running QEMU VM as a checkpoint source: its RAM is a shared file (`-object
 * memory-backend-file,share=on,mem-path=FILE`), read here through a mapping of that file, and it
 * is stopped and continued through its QMP socket.
 *
 * Memory only: device state (virtio queues, disk, timers) is QEMU's and out of scope, so a QEMU
 * checkpoint can be exported and inspected but not resumed by understudy. We cannot read QEMU's
 * KVM dirty log from outside, so the pages that changed since the previous checkpoint are found by
 * comparing 128-bit page fingerprints of the two images (changedPages in lib/store/diff.ts).
 *
 * QMP is JSON, one message per line: the server greets with {"QMP": ...}; the client must send
 * {"execute": "qmp_capabilities"} first; each command gets {"return": ...} or {"error": {...}};
 * asynchronous {"event": ...} messages may arrive in between.
 */
import net from 'node:net';
import fs from 'node:fs';
import { mapFile, type GuestMemory } from '../kernels/memory.js';

/** QEMU answered a command with an error. */
export class QmpError extends Error {
  constructor(readonly command: string, readonly errorClass: string, desc: string) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/** A QMP client over a unix socket. */
export class QmpClient {
  private buf = '';
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError: Error | null = null;
  /** Events received ({event, data, timestamp}), newest last (at most 100 kept). */
  readonly events: { event: string; data?: unknown }[] = [];

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    const fail = (err: Error) => {
      this.closedError = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    sock.on('error', (e) => fail(new Error(`QMP socket error: ${e.message}`)));
    sock.on('close', () => fail(new Error('QMP connection closed by QEMU')));
  }

  /**
   * Connects, reads the greeting and negotiates capabilities.
   * @throws Error when the socket cannot be reached or does not speak QMP within `timeoutMs`.
   */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    if (typeof path !== 'string' || path === '') throw new TypeError('`path` must be the path of a QMP unix socket');
    const sock = net.createConnection(path);
    const greeting = await new Promise<string>((resolve, reject) => {
      let acc = '';
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`QMP ${path}: no greeting within ${timeoutMs} ms`));
      }, timeoutMs);
      const onData = (c: Buffer) => {
        acc += c.toString('utf8');
        const nl = acc.indexOf('\n');
        if (nl >= 0) {
          clearTimeout(timer);
          sock.off('data', onData);
          sock.off('error', onErr);
          sock.pause();
          resolve(acc);
        }
      };
      const onErr = (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new Error(`QMP ${path}: cannot connect (${e.code ?? e.message})`));
      };
      sock.on('data', onData);
      sock.on('error', onErr);
    });
    const nl = greeting.indexOf('\n');
    let hello: unknown;
    try {
      hello = JSON.parse(greeting.slice(0, nl));
    } catch {
      sock.destroy();
      throw new Error(`QMP ${path}: the greeting is not JSON`);
    }
    if (!hello || typeof hello !== 'object' || !('QMP' in hello)) {
      sock.destroy();
      throw new Error(`QMP ${path}: not a QMP server (no "QMP" greeting)`);
    }
    const client = new QmpClient(sock);
    client.buf = greeting.slice(nl + 1);
    sock.resume();
    await client.execute('qmp_capabilities');
    return client;
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    if (this.buf.length > 16 << 20) {
      this.sock.destroy(new Error('QMP message longer than 16 MiB'));
      return;
    }
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue; // not ours to interpret
      }
      if (typeof msg.event === 'string') {
        this.events.push({ event: msg.event, data: msg.data });
        if (this.events.length > 100) this.events.shift();
        continue;
      }
      const id = typeof msg.id === 'number' ? msg.id : -1;
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      if ('error' in msg) {
        const e = (msg.error ?? {}) as { class?: string; desc?: string };
        p.reject(new QmpError(p.command, String(e.class ?? 'Error'), String(e.desc ?? '')));
      } else {
        p.resolve(msg.return);
      }
    }
  }

  /** Runs one QMP command and resolves with its "return" value. */
  execute(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        command,
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  /** {running, status} of the VM. */
  async status(): Promise<{ running: boolean; status: string }> {
    const r = (await this.execute('query-status')) as { running?: boolean; status?: string };
    return { running: r.running === true, status: String(r.status ?? 'unknown') };
  }

  close(): void {
    this.sock.end();
    this.sock.destroy();
  }
}

export interface QemuCaptureOptions {
  /** QMP unix socket of the VM. */
  qmp: string;
  /** The file behind its memory-backend-file (share=on). */
  memPath: string;
  pageSize?: number;
}

/** One memory capture of a QEMU VM. */
export interface QemuCapture {
  /** A private copy of guest RAM taken while the VM was stopped. */
  memory: Uint8Array;
  /** Whether the VM was running before (and so was continued after the copy). */
  wasRunning: boolean;
  /** Milliseconds the VM was stopped by us (0 if it was already stopped). */
  stoppedMs: number;
}

/**
 * Refuses a `memPath` that is not the mem-path of one of the VM's memory-backend-file objects, or
 * one without share=on (QEMU's writes would not reach the file): either way the copy would not be
 * the VM's memory. A QEMU that cannot list its objects (QmpError) is taken at its word.
 */
async function checkMemPath(qmp: QmpClient, socket: string, memPath: string): Promise<void> {
  const real = (p: string): string => {
    try {
      return fs.realpathSync(p);
    } catch {
      return p;
    }
  };
  const backends: { id: string; path: string; share: boolean }[] = [];
  try {
    const objects = (await qmp.execute('qom-list', { path: '/objects' })) as { name: string; type: string }[];
    for (const o of Array.isArray(objects) ? objects : []) {
      if (o.type !== 'child<memory-backend-file>') continue;
      const path = String(await qmp.execute('qom-get', { path: `/objects/${o.name}`, property: 'mem-path' }));
      const share = (await qmp.execute('qom-get', { path: `/objects/${o.name}`, property: 'share' })) === true;
      backends.push({ id: o.name, path, share });
    }
  } catch (err) {
    if (err instanceof QmpError) return;
    throw err;
  }
  const target = real(memPath);
  const hit = backends.find((b) => real(b.path) === target);
  if (hit && hit.share) return;
  const theirs = backends.length ? backends.map((b) => `${b.id}=${b.path}, share=${b.share ? 'on' : 'off'}`).join('; ') : 'none';
  throw new RangeError(hit
    ? `\`memPath\` ${memPath} is the mem-path of the VM's memory-backend-file ${hit.id}, but without share=on QEMU's writes do not reach it`
    : `\`memPath\` ${memPath} is not the mem-path of a memory-backend-file of the VM at ${socket} (its: ${theirs})`);
}

/**
 * Stops the VM (if running), copies its RAM from the shared file, and continues it (if it was
 * running). The copy is what gets checkpointed, so the VM runs on while the store writes.
 */
export async function captureQemu(options: QemuCaptureOptions): Promise<QemuCapture> {
  if (options === null || typeof options !== 'object') throw new TypeError('`options` must be an object');
  for (const name of ['qmp', 'memPath'] as const) {
    if (typeof options[name] !== 'string' || options[name] === '') {
      throw new TypeError(`\`${name}\` must be a non-empty string (${name === 'qmp' ? "the VM's QMP unix socket" : "the file behind its memory-backend-file"}), got ${typeof options[name]}`);
    }
  }
  const pageSize = options.pageSize ?? 4096;
  if (!Number.isInteger(pageSize) || pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) {
    throw new RangeError(`\`pageSize\` must be a power of two from 512, got ${pageSize}`);
  }
  const st = fs.statSync(options.memPath);
  if (!st.isFile()) throw new RangeError(`\`memPath\` must be a regular file (QEMU's mem-path), got ${options.memPath}`);
  if (st.size === 0 || st.size % pageSize !== 0) throw new RangeError(`\`memPath\` size ${st.size} is not a non-zero multiple of the page size ${pageSize}`);
  const qmp = await QmpClient.connect(options.qmp);
  let mem: GuestMemory | null = null;
  try {
    await checkMemPath(qmp, options.qmp, options.memPath);
    const { running } = await qmp.status();
    const t0 = performance.now();
    if (running) await qmp.execute('stop');
    let memory: Uint8Array;
    try {
      mem = mapFile(options.memPath, { writable: false });
      memory = Uint8Array.prototype.slice.call(mem.view);
    } finally {
      if (running) await qmp.execute('cont');
    }
    const stoppedMs = running ? performance.now() - t0 : 0;
    return { memory, wasRunning: running, stoppedMs };
  } finally {
    mem?.close();
    qmp.close();
  }
}
