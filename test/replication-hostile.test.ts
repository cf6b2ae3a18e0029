/**
 * A primary that holds the key but sends epochs that are well framed and wrong (a buggy or
 * hostile primary), against a real backup, with epochs captured from a real sim guest. The
 * backup must refuse each before it acknowledges it, say why, and keep its last committed state
 * byte for byte: a later failover must be able to resume from it.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connect } from 'node:net';
import { createHash } from 'node:crypto';
import { Link } from '../lib/replication/link.js';
import { primaryHandshake } from '../lib/replication/handshake.js';
import { FrameType, type Frame } from '../lib/replication/wire.js';
import { encodeEpochBody, FLAG_FINAL, FLAG_FULL, type EpochBody } from '../lib/replication/epoch-body.js';
import { defaultKernels, type PageKernels } from '../lib/replication/kernels.js';
import { captureEpoch } from '../lib/checkpoint/epoch-loop.js';
import { startBackup, type Backup } from '../lib/replication/backup.js';
import { createGuest, restoreGuest } from '../lib/guest/index.js';
import type { Guest, OutputRecord } from '../lib/guest/types.js';

const KEY = Buffer.alloc(32, 0x5a);
const VM = Buffer.alloc(16, 7);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The primary side of one connection: the real handshake, then whatever frames a case sends. */
class FakePrimary {
  readonly got: Frame[] = [];
  closeReason: string | null = null;
  private constructor(readonly link: Link, readonly generation: bigint) {}

  static async open(port: number, pageCount: number, generation = 1n): Promise<FakePrimary> {
    const sock = connect(port, '127.0.0.1');
    await new Promise((res, rej) => {
      sock.once('connect', res);
      sock.once('error', rej);
    });
    const link = new Link(sock);
    await primaryHandshake(link, { key: KEY, vmId: VM, generation, nextEpoch: 1n, pageSize: 4096, pageCount, guestType: 'sim' }, 3000);
    link.established();
    // Heartbeats, as a real primary sends them: a backup with a short timeout (the takeover test)
    // must not take a slow capture on a loaded machine for a dead primary.
    link.startHeartbeat(50, () => generation);
    const p = new FakePrimary(link, generation);
    link.on('frame', (f: Frame) => p.got.push(f));
    link.on('close', (e: Error | null) => (p.closeReason = e?.message ?? 'closed'));
    return p;
  }

  send(epoch: bigint, body: Buffer, reserved = 0n): void {
    const begin = Buffer.alloc(16);
    begin.writeBigUInt64LE(BigInt(body.length), 0);
    begin.writeBigUInt64LE(reserved, 8);
    this.link.send(FrameType.EPOCH_BEGIN, this.generation, epoch, begin);
    for (let off = 0; off < body.length; off += 256 * 1024) {
      this.link.send(FrameType.EPOCH_DATA, this.generation, epoch, body.subarray(off, Math.min(body.length, off + 256 * 1024)));
    }
    this.link.send(FrameType.EPOCH_END, this.generation, epoch, createHash('sha256').update(body).digest());
  }

  /** 'ack' or 'closed', whichever comes first. */
  async outcome(epoch: bigint): Promise<'ack' | 'closed'> {
    for (let i = 0; i < 500; i++) {
      if (this.got.some((f) => f.type === FrameType.ACK && f.epoch === epoch)) return 'ack';
      if (this.link.closed) return 'closed';
      await sleep(10);
    }
    throw new Error(`neither an ACK of epoch ${epoch} nor a close within 5 s`);
  }
}

/** Epoch bodies of a real sim guest, as a primary would build them (captureEpoch + encodePages). */
class Source {
  private shadow!: Uint8Array;
  private records: OutputRecord[] = [];
  private sent = 0;
  private constructor(readonly guest: Guest, readonly kernels: PageKernels) {}

  static async create(steps: number): Promise<Source> {
    const guest = await createGuest({ type: 'sim', workload: 'kv', seed: 5, steps, memoryMiB: 8, start: false });
    const s = new Source(guest, await defaultKernels());
    s.shadow = new Uint8Array(guest.pageSize * guest.pageCount);
    guest.start();
    return s;
  }

  async capture(full: boolean): Promise<EpochBody> {
    this.guest.resume();
    await sleep(15);
    const c = await captureEpoch(this.guest, this.kernels, { full, gather: true });
    await this.guest.pause();
    if (full) this.shadow.fill(0);
    const frame = await this.kernels.encodePages(this.shadow, c.pages!, c.pfns, { pageSize: 4096 });
    for (const r of c.records) this.records.push(r);
    const first = this.sent;
    this.sent = this.records.length;
    return {
      flags: (full ? FLAG_FULL : 0) | (c.final !== null ? FLAG_FINAL : 0), pageSize: 4096, pageCount: this.guest.pageCount,
      cpu: c.cpu, records: this.records.slice(first), firstRecordSeq: first, releasedRecords: first, final: c.final, captureMs: c.wallMs, frame,
    };
  }
}

interface Case {
  backup: Backup;
  src: Source;
  p: FakePrimary;
  dropped: string[];
  logs: string[];
  /** The backup's state after the two good epochs. */
  replica: Uint8Array;
  records: number;
}

async function twoGoodEpochs(steps = 1e9, kernels?: PageKernels): Promise<Case> {
  const backup = await startBackup({ key: KEY, listen: { host: '127.0.0.1', port: 0 }, timeoutMs: 60_000, takeover: false, kernels });
  const dropped: string[] = [];
  const logs: string[] = [];
  backup.on('dropped', (d) => dropped.push(d.reason));
  backup.on('log', (l) => logs.push(l));
  const src = await Source.create(steps);
  const p = await FakePrimary.open(backup.address!.port, src.guest.pageCount);
  p.send(1n, encodeEpochBody(await src.capture(true)));
  expect(await p.outcome(1n)).toBe('ack');
  p.send(2n, encodeEpochBody(await src.capture(false)));
  expect(await p.outcome(2n)).toBe('ack');
  return { backup, src, p, dropped, logs, replica: backup.replica!.slice(), records: backup.log.length };
}

async function done(c: Case): Promise<void> {
  c.p.link.fail(null);
  await c.backup.close();
  await c.src.guest.close();
}

/** The bad epoch was refused for `reason`, and the backup holds exactly what it held before. */
function expectUnchanged(c: Case, reason: string, dropped = true): void {
  expect(c.p.closeReason).not.toBeNull();
  expect(c.logs.filter((l) => l.startsWith('primary link dropped'))).toEqual([`primary link dropped: ${reason}`]);
  expect(c.dropped).toEqual(dropped ? [reason] : []);
  c.logs.length = 0;
  c.dropped.length = 0;
  expect(c.backup.committedEpoch).toBe(2n);
  expect(c.backup.log.length).toBe(c.records);
  expect(Buffer.compare(c.backup.replica!, c.replica)).toBe(0);
}

describe('a primary with the key that sends bad epochs (sim guest, real backup)', () => {
  it('a CPU blob with a flipped bit is refused before the ACK', async () => {
    const c = await twoGoodEpochs();
    const e = await c.src.capture(false);
    const cpu = e.cpu.slice();
    cpu[40]! ^= 1;
    c.p.send(3n, encodeEpochBody({ ...e, cpu }));
    expect(await c.p.outcome(3n)).toBe('closed');
    expectUnchanged(c, 'epoch 3 holds a guest state that cannot be resumed: `cpu` is corrupt (checksum mismatch)');
    await done(c);
  });

  it.each([
    ['applyPagesWithUndo', undefined],
    ['inspectFrame + gatherPages (kernels without applyPagesWithUndo)', 'no-undo'],
  ] as const)('a CPU blob from an earlier pause is refused, and the delta it came with is taken back (%s)', async (_, how) => {
    let kernels: PageKernels | undefined;
    if (how === 'no-undo') {
      const { applyPagesWithUndo, ...rest } = await defaultKernels();
      expect(typeof applyPagesWithUndo).toBe('function');
      kernels = rest;
    }
    const c = await twoGoodEpochs(1e9, kernels);
    const e = await c.src.capture(false);
    const stale = c.backup.cpu!.slice(); // epoch 2's CPU state, with epoch 3's memory
    c.p.send(3n, encodeEpochBody({ ...e, cpu: stale }));
    expect(await c.p.outcome(3n)).toBe('closed');
    const pauseOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(28, true);
    expect(pauseOf(e.cpu)).toBeGreaterThan(pauseOf(stale));
    expectUnchanged(
      c,
      `epoch 3 holds a guest state that cannot be resumed: \`cpu\` does not match the memory image: it was saved at pause ${pauseOf(stale)} of the guest and the image at pause ${pauseOf(e.cpu)} (low 32 bits of the count)`,
    );
    await done(c);
  });

  it('records whose hash chain breaks, and records that disagree with the image, are refused', async () => {
    const c = await twoGoodEpochs();
    const e = await c.src.capture(false);
    expect(e.records.length).toBeGreaterThan(1);
    const altered = e.records.map((r, i) => (i === 1 ? { ...r, data: Uint8Array.from(r.data, (b, j) => (j === 0 ? b ^ 1 : b)) } : r));
    c.p.send(3n, encodeEpochBody({ ...e, records: altered }));
    expect(await c.p.outcome(3n)).toBe('closed');
    expectUnchanged(c, `epoch 3: output record ${e.records[1]!.seq} breaks the hash chain`);
    // The same epoch, its last record left out (the chain of the rest holds): the image has handed out one more.
    c.p = await FakePrimary.open(c.backup.address!.port, c.src.guest.pageCount);
    const full = await c.src.capture(true);
    const firstSeq = full.firstRecordSeq - e.records.length; // what the backup holds: records from c.records
    expect(firstSeq).toBe(c.records);
    const all = [...e.records, ...full.records];
    c.p.send(3n, encodeEpochBody({ ...full, records: all.slice(0, -1), firstRecordSeq: c.records, releasedRecords: c.records }));
    expect(await c.p.outcome(3n)).toBe('closed');
    expect(c.dropped).toEqual([
      `epoch 3: the output log would hold ${c.records + all.length - 1} records and the CPU state 0 more, but the image has handed out ${c.records + all.length}`,
    ]);
    expect(c.backup.committedEpoch).toBe(2n);
    expect(Buffer.compare(c.backup.replica!, c.replica)).toBe(0);
    await done(c);
  });

  it('framing a primary may not use: reserved bytes, an epoch past 2^53 - 1, a delta first on a connection, BYE mid-run', async () => {
    const c = await twoGoodEpochs();
    const e = encodeEpochBody(await c.src.capture(false));
    c.p.send(3n, e, 1n);
    expect(await c.p.outcome(3n)).toBe('closed');
    expectUnchanged(c, 'EPOCH_BEGIN 3 has non-zero reserved bytes', false);
    c.p = await FakePrimary.open(c.backup.address!.port, c.src.guest.pageCount);
    c.p.send(2n ** 53n, e);
    expect(await c.p.outcome(2n ** 53n)).toBe('closed');
    expectUnchanged(c, 'epoch 9007199254740992 is past the largest epoch number, 2^53 - 1', false);
    // A new connection starts with a delta: its base is the primary's shadow, unknown to match.
    c.p = await FakePrimary.open(c.backup.address!.port, c.src.guest.pageCount);
    c.p.send(3n, e);
    expect(await c.p.outcome(3n)).toBe('closed');
    expectUnchanged(c, 'epoch 3 is a delta but this connection has not begun with a full epoch');
    c.p = await FakePrimary.open(c.backup.address!.port, c.src.guest.pageCount);
    c.p.link.send(FrameType.BYE, 1n, 0n);
    for (let i = 0; i < 300 && !c.p.link.closed; i++) await sleep(10);
    expectUnchanged(c, 'BYE before the final epoch was committed', false);
    expect(c.backup.primaryDone).toBe(false);
    await done(c);
  });

  it('a FINAL flag on a run that has not finished, and any epoch after a real final one', async () => {
    const c = await twoGoodEpochs(400_000);
    const e = await c.src.capture(false);
    c.p.send(3n, encodeEpochBody({ ...e, flags: FLAG_FINAL, final: 'abcdefabcdefabcd' }));
    expect(await c.p.outcome(3n)).toBe('closed');
    expectUnchanged(c, "epoch 3 is final with checksum abcdefabcdefabcd, but its image's is not final (the workload has not finished)");
    // The run really finishes; the final epoch commits; nothing may follow it.
    c.p = await FakePrimary.open(c.backup.address!.port, c.src.guest.pageCount);
    let last = await c.src.capture(true);
    last = { ...last, records: [...e.records, ...last.records], firstRecordSeq: c.records, releasedRecords: c.records };
    let epoch = 3n;
    c.p.send(epoch, encodeEpochBody(last));
    expect(await c.p.outcome(epoch)).toBe('ack');
    while (last.final === null) {
      c.src.guest.resume();
      await c.src.guest.wait();
      last = await c.src.capture(false);
      c.p.send(++epoch, encodeEpochBody(last));
      expect(await c.p.outcome(epoch)).toBe('ack');
    }
    expect(c.backup.log.final).toBe(last.final);
    // A primary lingering for its clients sends the final state once more to a backup that
    // reconnects (a full FINAL epoch, nothing new): accepted. Anything else is refused.
    c.p.link.fail(null);
    c.p = await FakePrimary.open(c.backup.address!.port, c.src.guest.pageCount);
    const again = await c.src.capture(true);
    expect(again.final).toBe(last.final);
    c.p.send(++epoch, encodeEpochBody({ ...again, records: [], firstRecordSeq: c.backup.log.length, releasedRecords: c.backup.log.length }));
    expect(await c.p.outcome(epoch)).toBe('ack');
    c.p.send(epoch + 1n, encodeEpochBody({ ...last, flags: 0, final: null, records: [], firstRecordSeq: c.backup.log.length }));
    expect(await c.p.outcome(epoch + 1n)).toBe('closed');
    expect(c.logs).toContain(`primary link dropped: epoch ${epoch + 1n} after the final epoch ${epoch}: the run is over`);
    expect(c.backup.committedEpoch).toBe(epoch);
    await done(c);
  });
});

describe('BYE', () => {
  it('is taken from a primary before anything was committed (a promoted primary whose run had finished)', async () => {
    const backup = await startBackup({ key: KEY, listen: { host: '127.0.0.1', port: 0 }, timeoutMs: 60_000, takeover: false });
    const p = await FakePrimary.open(backup.address!.port, 2048);
    p.link.send(FrameType.BYE, 1n, 0n);
    for (let i = 0; i < 300 && !backup.primaryDone; i++) await sleep(10);
    expect([backup.primaryDone, p.link.closed]).toEqual([true, false]);
    p.link.fail(null);
    await backup.close();
  });
});

describe('a failed takeover', () => {
  it('is reported once, not retried on every tick, and the next primary that dies is taken over', async () => {
    let calls = 0;
    const flaky = async (o: Parameters<typeof restoreGuest>[0]) => {
      if (++calls === 1) throw new Error('restore failed (test)');
      return restoreGuest(o);
    };
    const backup = await startBackup({ key: KEY, listen: { host: '127.0.0.1', port: 0 }, timeoutMs: 300, restore: flaky });
    const errors: string[] = [];
    backup.on('error', (e) => errors.push(e.message));
    let failovers = 0;
    backup.on('failover', () => failovers++);
    const src = await Source.create(1e9);
    let p = await FakePrimary.open(backup.address!.port, src.guest.pageCount);
    p.send(1n, encodeEpochBody(await src.capture(true)));
    expect(await p.outcome(1n)).toBe('ack');
    p.link.fail(null); // the primary dies
    for (let i = 0; i < 300 && errors.length === 0; i++) await sleep(10);
    await sleep(1000); // ~13 watchdog ticks
    expect([errors, calls, failovers]).toEqual([['restore failed (test)'], 1, 0]);
    // A primary connects again, commits, and dies: this time the takeover goes through.
    p = await FakePrimary.open(backup.address!.port, src.guest.pageCount);
    const e = await src.capture(true);
    p.send(2n, encodeEpochBody({ ...e, records: e.records, firstRecordSeq: e.firstRecordSeq, releasedRecords: e.firstRecordSeq }));
    expect(await p.outcome(2n)).toBe('ack');
    p.link.fail(null);
    for (let i = 0; i < 500 && failovers === 0; i++) await sleep(10);
    expect([calls, failovers, errors.length]).toEqual([2, 1, 1]);
    await backup.close();
    await src.guest.close();
  });
});

describe('takeover after refused epochs', () => {
  let c: Case;
  beforeAll(async () => {
    c = await twoGoodEpochs();
  });
  afterAll(async () => {
    await c.backup.close();
    await c.src.guest.close();
  });
  it('resumes from the last committed epoch and carries on', async () => {
    const e = await c.src.capture(false);
    c.p.send(3n, encodeEpochBody({ ...e, cpu: new Uint8Array(0) }));
    expect(await c.p.outcome(3n)).toBe('closed');
    await c.backup.takeOver();
    expect(c.backup.primary).not.toBeNull();
    expect(c.backup.log.length).toBe(c.records);
    // The promoted primary runs the workload on from epoch 2's state: its output continues the log.
    for (let i = 0; i < 200 && c.backup.log.length <= c.records; i++) await sleep(10);
    expect(c.backup.log.length).toBeGreaterThan(c.records);
  });
});
