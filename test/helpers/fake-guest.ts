/**
 * TEST STAND-IN ONLY. A Guest over a plain Uint8Array running a deterministic TS workload, and
 * plain TS page kernels, so the replication protocol, the output-commit invariant and failover can
 * be tested before (and independently of) the native guests and kernels.
 *
 * Workload: xorshift64 picks a page and a word; the step reads the word into a running checksum
 * and writes a new value derived from both, so the result depends on every byte the backup must
 * replicate. Every 25 steps a record (step, checksum) is output with its XXH3-64 chain.
 */
import { EventEmitter } from 'node:events';
import { xxh3 } from '@node-rs/xxhash';
import type { Guest, DirtyLog, OutputRecord, GuestResult, RestoreOptions } from '../../lib/guest/types.js';
import type { PageKernels } from '../../lib/replication/kernels.js';

const PAGE = 4096;
const CPU_BYTES = 56;
const MASK = (1n << 64n) - 1n;

export interface FakeOptions {
  memoryMiB?: number;
  seed?: number;
  steps?: number;
  batch?: number;
}

export function chainHex(prevHex: string, data: Uint8Array): string {
  const b = Buffer.alloc(8 + data.length);
  b.writeBigUInt64LE(BigInt('0x' + prevHex), 0);
  b.set(data, 8);
  return xxh3.xxh64(b, 0n).toString(16).padStart(16, '0');
}

export class FakeGuest extends EventEmitter implements Guest {
  readonly type = 'sim' as const;
  readonly workload = 'uniform' as const;
  readonly pageSize = PAGE;
  readonly pageCount: number;
  readonly vcpus = 1;
  readonly memory: Guest['memory'];
  private view: Uint8Array;
  private dv: DataView;
  private dirty: Uint8Array;
  private step = 0n;
  private rng: bigint;
  private sum = 0n;
  private nextSeq = 0n;
  private chain = '0000000000000000';
  private steps: bigint;
  private out: OutputRecord[] = [];
  private paused = false;
  private running = false;
  private timer: NodeJS.Immediate | null = null;
  result: GuestResult | null = null;
  private closed = false;
  private readonly batch: number;

  constructor(opts: FakeOptions & { image?: Uint8Array; cpu?: Uint8Array }) {
    super();
    const bytes = opts.image ? opts.image.length : (opts.memoryMiB ?? 4) * 1024 * 1024;
    this.view = opts.image ? Uint8Array.from(opts.image) : new Uint8Array(bytes);
    this.dv = new DataView(this.view.buffer);
    this.pageCount = bytes / PAGE;
    this.dirty = new Uint8Array(Math.ceil(this.pageCount / 8));
    this.memory = { view: this.view, byteLength: bytes } as unknown as Guest['memory'];
    this.rng = BigInt(opts.seed ?? 1) | 1n;
    this.steps = BigInt(opts.steps ?? 5000);
    this.batch = opts.batch ?? 50;
    if (opts.cpu) {
      const c = Buffer.from(opts.cpu);
      if (c.length !== CPU_BYTES) throw new RangeError(`cpu blob must be ${CPU_BYTES} bytes, got ${c.length}`);
      this.step = c.readBigUInt64LE(0);
      this.rng = c.readBigUInt64LE(8);
      this.sum = c.readBigUInt64LE(16);
      this.nextSeq = c.readBigUInt64LE(24);
      this.chain = c.subarray(32, 40).toString('hex');
      this.steps = c.readBigUInt64LE(40);
    }
  }

  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.closed || this.result) return;
    this.timer = setImmediate(() => {
      this.timer = null;
      if (this.paused || !this.running) return;
      this.runBatch();
      this.schedule();
    });
  }

  private runBatch(): void {
    for (let i = 0; i < this.batch && this.step < this.steps; i++) {
      let x = this.rng;
      x ^= (x << 13n) & MASK;
      x ^= x >> 7n;
      x ^= (x << 17n) & MASK;
      this.rng = x;
      const page = Number(x % BigInt(this.pageCount - 1)) + 1;
      const off = page * PAGE + Number((x >> 20n) % 512n) * 8;
      const v = this.dv.getBigUint64(off, true);
      this.sum = ((this.sum * 0x100000001b3n) ^ v ^ x) & MASK;
      this.dv.setBigUint64(off, (x ^ this.sum) & MASK, true);
      this.dirty[page >> 3]! |= 1 << (page & 7);
      this.step++;
      if (this.step % 25n === 0n) {
        const data = new Uint8Array(16);
        const d = new DataView(data.buffer);
        d.setBigUint64(0, this.step, true);
        d.setBigUint64(8, this.sum, true);
        this.chain = chainHex(this.chain, data);
        this.out.push({ seq: Number(this.nextSeq++), data, chain: this.chain });
      }
    }
    if (this.step >= this.steps && !this.result) {
      this.result = { final: this.sum.toString(16).padStart(16, '0') };
      this.emit('exit', this.result);
    }
  }

  async pause(): Promise<void> {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    if (this.running) this.schedule();
  }

  setClock(): void {}

  takeDirty(): DirtyLog {
    const pfns: number[] = [];
    for (let i = 0; i < this.pageCount; i++) if (this.dirty[i >> 3]! & (1 << (i & 7))) pfns.push(i);
    const bitmap = this.dirty;
    this.dirty = new Uint8Array(bitmap.length);
    return { bitmap, pfns: Uint32Array.from(pfns) };
  }

  takeOutput(): OutputRecord[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  saveCpu(): Uint8Array {
    const c = Buffer.alloc(CPU_BYTES);
    c.writeBigUInt64LE(this.step, 0);
    c.writeBigUInt64LE(this.rng, 8);
    c.writeBigUInt64LE(this.sum, 16);
    c.writeBigUInt64LE(this.nextSeq, 24);
    Buffer.from(this.chain, 'hex').copy(c, 32);
    c.writeBigUInt64LE(this.steps, 40);
    return new Uint8Array(c);
  }

  wait(): Promise<GuestResult> {
    if (this.result) return Promise.resolve(this.result);
    return new Promise((r) => this.once('exit', r));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.running = false;
    if (this.timer) clearImmediate(this.timer);
  }
}

export function createFakeGuest(opts: FakeOptions): FakeGuest {
  return new FakeGuest(opts);
}

export function restoreFakeGuest(opts: RestoreOptions, batch?: number): Guest {
  return new FakeGuest({ image: opts.memoryImage, cpu: opts.cpu, batch });
}

/** Runs the workload alone to completion: the reference stream and final checksum. */
export async function referenceRun(opts: FakeOptions): Promise<{ lines: string[]; final: string }> {
  const g = new FakeGuest({ ...opts, batch: 100000 });
  g.start();
  const res = await g.wait();
  const lines = g.takeOutput().map((r) => `{"seq":${r.seq},"data":"${Buffer.from(r.data).toString('hex')}","chain":"${r.chain}"}`);
  return { lines, final: res.final };
}

/**
 * Plain TS page kernels. Frame: u32 count, then per page u32 pfn + pageSize bytes of XOR against
 * the shadow. applyPages validates the whole frame before writing.
 */
export const fakeKernels: PageKernels = {
  gatherPages(memory, pfns, { pageSize }) {
    const out = new Uint8Array(pfns.length * pageSize);
    pfns.forEach((p, i) => out.set(memory.subarray(p * pageSize, (p + 1) * pageSize), i * pageSize));
    return out;
  },
  async encodePages(shadow, pages, pfns, { pageSize }) {
    const out = Buffer.alloc(4 + pfns.length * (4 + pageSize));
    out.writeUInt32LE(pfns.length, 0);
    let off = 4;
    pfns.forEach((p, i) => {
      out.writeUInt32LE(p, off);
      const s = shadow.subarray(p * pageSize, (p + 1) * pageSize);
      const n = pages.subarray(i * pageSize, (i + 1) * pageSize);
      for (let k = 0; k < pageSize; k++) out[off + 4 + k] = s[k]! ^ n[k]!;
      s.set(n);
      off += 4 + pageSize;
    });
    return out;
  },
  applyPages(replica, frame, { pageSize }) {
    const f = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    if (f.length < 4) throw new RangeError('`frame` is truncated');
    const n = f.readUInt32LE(0);
    if (f.length !== 4 + n * (4 + pageSize)) throw new RangeError(`\`frame\` length must be ${4 + n * (4 + pageSize)}, got ${f.length}`);
    for (let i = 0; i < n; i++) {
      const p = f.readUInt32LE(4 + i * (4 + pageSize));
      if ((p + 1) * pageSize > replica.length) throw new RangeError(`\`frame\` page ${p} is out of range`);
    }
    for (let i = 0; i < n; i++) {
      const off = 4 + i * (4 + pageSize);
      const p = f.readUInt32LE(off);
      const r = replica.subarray(p * pageSize, (p + 1) * pageSize);
      for (let k = 0; k < pageSize; k++) r[k]! ^= f[off + 4 + k]!;
    }
  },
};
