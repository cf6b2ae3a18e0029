/**
 * Unit tests of the replication wire, handshake/auth, epoch body and output commit: exact bytes,
 * exact errors, hostile frames (truncated, bit flips, oversized length, wrong version/type,
 * replays), stale generation, wrong key, missing key.
 */
import { describe, it, expect } from 'vitest';
import { createServer, connect, type Socket } from 'node:net';
import { chmodSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeFrame, FrameDecoder, FrameType, ZERO_KEY, HEADER_BYTES, MAC_BYTES, WIRE_MAGIC } from '../lib/replication/wire.js';
import { decodeReject, encodeHello, encodeReject, generateKey, PROTOCOL_VERSION, readKeyFile, RejectCode, writeKeyFile } from '../lib/replication/auth.js';
import { Link, StallGuard } from '../lib/replication/link.js';
import { keyOption } from '../lib/cli/replication-options.js';
import { primaryHandshake, backupHandshake, SupersededError } from '../lib/replication/handshake.js';
import { encodeEpochBody, decodeEpochBody, FLAG_FINAL } from '../lib/replication/epoch-body.js';
import { OutputLog } from '../lib/checkpoint/output-buffer.js';
import { PageBufferPool } from '../lib/checkpoint/epoch-loop.js';
import { defaultKernels } from '../lib/replication/kernels.js';
import { startServicePort } from '../lib/checkpoint/service-port.js';
import { followStream, StreamVerifier } from '../lib/replication/client.js';
import { startPrimary } from '../lib/replication/primary.js';
import { startBackup } from '../lib/replication/backup.js';
import { ProtocolError } from '../lib/errors/protocol-error.js';
import { chainHex } from './helpers/fake-guest.js';

const key = Buffer.alloc(32, 7);

function frame(over: Partial<{ type: number; seq: bigint; payload: Buffer }> = {}, k: Uint8Array = key): Buffer {
  return encodeFrame({ type: (over.type ?? FrameType.HEARTBEAT) as 0x30, seq: over.seq ?? 0n, generation: 3n, epoch: 9n, payload: over.payload ?? Buffer.from('abc') }, k);
}

function decoder(k: Uint8Array = key, max?: number): FrameDecoder {
  const d = new FrameDecoder(max);
  d.key = k;
  return d;
}

describe('wire framing', () => {
  it('lays out the header exactly', () => {
    const f = frame();
    expect(f.length).toBe(HEADER_BYTES + 3 + MAC_BYTES);
    expect(f.subarray(0, 16).toString('hex')).toBe('55535250' + '01' + '30' + '0000' + '03000000' + '00000000');
    expect(f.readUInt32LE(0)).toBe(WIRE_MAGIC);
    expect(f.readBigUInt64LE(16)).toBe(0n);
    expect(f.readBigUInt64LE(24)).toBe(3n);
    expect(f.readBigUInt64LE(32)).toBe(9n);
    expect(f.subarray(40, 43).toString()).toBe('abc');
  });

  it('decodes frames split at every byte boundary', () => {
    const all = Buffer.concat([frame({ seq: 0n }), frame({ seq: 1n, payload: Buffer.alloc(1000, 1) })]);
    const d = decoder();
    const got = [];
    for (let i = 0; i < all.length; i++) got.push(...d.push(all.subarray(i, i + 1)));
    expect(got.map((f) => [f.seq, f.payload.length])).toEqual([[0n, 3], [1n, 1000]]);
    expect(d.pending).toBe(0);
  });

  it('holds a truncated frame without returning it', () => {
    const f = frame();
    const d = decoder();
    expect(d.push(f.subarray(0, f.length - 1))).toEqual([]);
    expect(d.pending).toBe(f.length - 1);
  });

  it('refuses a flipped bit anywhere in the frame', () => {
    const f = frame({ payload: Buffer.alloc(64, 0x5a) });
    for (const bit of [8 * 16 + 3, 8 * 24, 8 * 40 + 1, 8 * 100, 8 * (f.length - 1)]) {
      const g = Buffer.from(f);
      g[bit >> 3]! ^= 1 << (bit & 7);
      expect(() => decoder().push(g), `bit ${bit}`).toThrow(ProtocolError);
    }
    const g = Buffer.from(f);
    g[50]! ^= 4;
    expect(() => decoder().push(g)).toThrow('frame MAC mismatch (type HEARTBEAT, seq 0): corrupted or forged');
  });

  it('refuses an oversized length before buffering the payload', () => {
    const f = frame();
    f.writeUInt32LE(5_000_000, 8);
    const d = decoder(key, 1024 * 1024);
    expect(() => d.push(f.subarray(0, HEADER_BYTES))).toThrow('frame payload length must be at most 1048576, got 5000000');
  });

  it('refuses bad magic, version, type, flags', () => {
    const cases: [number, number, string][] = [
      [0, 0x00, 'frame magic must be 0x50525355, got 0x50525300'],
      [4, 2, 'frame version must be 1, got 2'],
      [5, 0x7f, 'unknown frame type 0x7f'],
      [6, 1, 'frame flags and reserved bytes must be 0, got 1 and 0'],
    ];
    for (const [off, val, msg] of cases) {
      const f = frame();
      f[off] = val;
      expect(() => decoder().push(f)).toThrow(msg);
    }
  });

  it('refuses a replayed frame (sequence number)', () => {
    const d = decoder();
    d.push(frame({ seq: 0n }));
    d.push(frame({ seq: 1n }));
    expect(() => d.push(frame({ seq: 1n }))).toThrow('frame sequence must be 2, got 1: replayed, dropped or reordered frame');
  });

  it('refuses a frame MACed with another key, and stays failed', () => {
    const d = decoder();
    expect(() => d.push(frame({}, ZERO_KEY))).toThrow(/MAC mismatch/);
    expect(() => d.push(frame())).toThrow('stream already failed; drop the connection');
  });
});

describe('key files', () => {
  it('keygen writes 64 hex digits with mode 0600 and reads back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'us-key-'));
    const k = generateKey();
    writeKeyFile(join(dir, 'k'), k);
    expect(statSync(join(dir, 'k')).mode & 0o777).toBe(0o600);
    expect(readKeyFile(join(dir, 'k')).equals(k)).toBe(true);
    expect(() => writeKeyFile(join(dir, 'k'), k)).toThrow(/EEXIST/);
    writeFileSync(join(dir, 'bad'), 'abcd\n');
    expect(() => readKeyFile(join(dir, 'bad'))).toThrow(`key file ${join(dir, 'bad')} must hold 64 hex digits (32 bytes), got 4 characters`);
    expect(() => readKeyFile(dir)).toThrow(new RangeError(`key file ${dir} is a directory, not a file of 64 hex digits`));
  });

  it('primary and backup warn about a key file others can read, and take it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'us-key-'));
    const file = join(dir, 'k');
    writeKeyFile(file, generateKey());
    const warnings: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((s: string) => (warnings.push(String(s)), true)) as typeof process.stderr.write;
    try {
      expect(keyOption('backup', { key: file }).key?.length).toBe(32);
      chmodSync(file, 0o644);
      expect(keyOption('primary', { key: file }).key?.length).toBe(32);
    } finally {
      process.stderr.write = write;
    }
    expect(warnings).toEqual([`primary: warning: key file ${file} is readable or writable by others (mode 0644); \`chmod 600 ${file}\`\n`]);
  });
});

async function pair(): Promise<[Link, Link, () => void]> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const c = connect(port, '127.0.0.1');
  const s = await accepted;
  return [new Link(c), new Link(s), () => server.close()];
}

const id = (k: Buffer | null, generation = 2n) => ({
  key: k, vmId: Buffer.alloc(16, 1), generation, nextEpoch: 1n, pageSize: 4096, pageCount: 16, guestType: 'sim' as const,
});
const st = (k: Buffer | null, generation = 0n) => ({ key: k, vmId: null, generation, lastCommitted: 0n, nextRecord: 0, decide: () => null });

describe('watchdogs', () => {
  it('a check that runs long after its period (our own stall) is told to wait a turn, once', () => {
    const g = new StallGuard(10);
    expect(g.stalled()).toBe(false);
    const until = performance.now() + 120; // a synchronous job blocks the event loop for 120 ms
    while (performance.now() < until);
    expect(g.stalled()).toBe(true);
    expect(g.stalled()).toBe(false);
  });
});

describe('handshake', () => {
  it('agrees on session keys with the same key', async () => {
    const [p, b, done] = await pair();
    const [ch, hello] = await Promise.all([primaryHandshake(p, id(key), 2000), backupHandshake(b, st(key), 2000)]);
    expect(hello.generation).toBe(2n);
    expect(ch.lastCommitted).toBe(0n);
    expect(Buffer.from(p.txKey).equals(Buffer.from(b.decoder.key))).toBe(true);
    expect(Buffer.from(p.txKey).equals(Buffer.from(p.decoder.key))).toBe(false);
    p.fail(null);
    done();
  });

  it('refuses a wrong key on both sides', async () => {
    const [p, b, done] = await pair();
    const brp = backupHandshake(b, st(Buffer.alloc(32, 8)), 1000);
    // the primary refuses first and drops the connection, as Primary does
    const [pr] = await Promise.allSettled([primaryHandshake(p, id(key), 1000).finally(() => p.fail(null))]);
    const [br] = await Promise.allSettled([brp]);
    expect((pr as PromiseRejectedResult).reason.message).toBe('backup failed authentication (wrong key?)');
    expect((br as PromiseRejectedResult).reason.message).toBe('primary closed the connection instead of answering our CHALLENGE (wrong key?)');
    done();
  });

  it('a handshake that fails on a bad frame says which (magic, length before authentication), not only that none came', async () => {
    let [p, b, done] = await pair();
    p.socket.write(Buffer.alloc(64, 0x41));
    let [br] = await Promise.allSettled([backupHandshake(b, st(key), 1000)]);
    expect((br as PromiseRejectedResult).reason.message).toBe(`handshake: waiting for HELLO: frame magic must be 0x${WIRE_MAGIC.toString(16)}, got 0x41414141`);
    p.fail(null);
    done();
    // A header announcing 4 MiB before anyone has proved anything: refused at the header.
    [p, b, done] = await pair();
    const big = encodeFrame({ type: FrameType.HELLO, seq: 0n, generation: 1n, epoch: 0n, payload: Buffer.alloc(5000) }, ZERO_KEY);
    p.socket.write(big.subarray(0, HEADER_BYTES));
    [br] = await Promise.allSettled([backupHandshake(b, st(key), 1000)]);
    expect((br as PromiseRejectedResult).reason.message).toBe('handshake: waiting for HELLO: frame payload length must be at most 4096 before the handshake completes, got 5000');
    p.fail(null);
    done();
  });

  it('refuses a primary without a key unless the backup is insecure too', async () => {
    const [p, b, done] = await pair();
    const [pr, br] = await Promise.allSettled([primaryHandshake(p, id(null), 1000), backupHandshake(b, st(key), 1000)]);
    expect((br as PromiseRejectedResult).reason.message).toBe('this backup requires a key; primary runs --insecure');
    expect((pr as PromiseRejectedResult).reason.message).toBe('backup refused us: this backup requires a key; primary runs --insecure');
    done();
    const [p2, b2, done2] = await pair();
    const [ok1, ok2] = await Promise.allSettled([primaryHandshake(p2, id(null), 1000), backupHandshake(b2, st(null), 1000)]);
    expect([ok1.status, ok2.status]).toEqual(['fulfilled', 'fulfilled']);
    p2.fail(null);
    done2();
  });

  it('refuses a primary of protocol 3 (its CPU blobs are of version 1, and it could not read version 2) and tells it why', async () => {
    expect(PROTOCOL_VERSION).toBe(4);
    const [p, b, done] = await pair();
    const hello = { version: 3, flags: 0, vmId: Buffer.alloc(16), generation: 2n, nextEpoch: 0n, pageSize: 4096, pageCount: 16, guestType: 'sim' as const, nonce: Buffer.alloc(32, 1) };
    p.send(FrameType.HELLO, 2n, 0n, encodeHello(hello));
    const [br, reply] = await Promise.allSettled([backupHandshake(b, st(key), 1000), p.next(1000)]);
    expect((br as PromiseRejectedResult).reason.message).toBe('protocol version 3 not supported (we speak 4)');
    const f = (reply as PromiseFulfilledResult<{ type: number; payload: Buffer } | null>).value;
    expect(f?.type).toBe(FrameType.REJECT);
    expect(decodeReject(f!.payload).reason).toBe('protocol version 3 not supported (we speak 4)');
    p.fail(null);
    done();
  });

  it('refuses a stale primary and tells it so', async () => {
    const [p, b, done] = await pair();
    const [pr, br] = await Promise.allSettled([primaryHandshake(p, id(key, 2n), 1000), backupHandshake(b, st(key, 5n), 1000)]);
    expect((br as PromiseRejectedResult).reason.message).toBe('stale primary: generation 2 < 5');
    expect((pr as PromiseRejectedResult).reason).toBeInstanceOf(SupersededError);
    done();
  });

  it('two primaries that meet: the newer proves it holds the key, and only then does the older fence itself', async () => {
    const [a, b, done] = await pair();
    const [older, newer] = await Promise.allSettled([primaryHandshake(a, id(key, 1n), 2000), primaryHandshake(b, id(key, 2n), 2000)]);
    expect((older as PromiseRejectedResult).reason).toBeInstanceOf(SupersededError);
    expect((older as PromiseRejectedResult).reason.message).toBe('peer is a primary of generation 2 > ours (1): we are stale');
    expect((newer as PromiseRejectedResult).reason.message).toBe('refused a primary of generation 1 (ours is 2): stale primary');
    done();
  });

  it('a peer without the key cannot make a primary fence itself (a forged newer HELLO, a forged early REJECT)', async () => {
    // The forger holds another key: its proof over the HELLOs does not match ours.
    let [a, b, done] = await pair();
    let [older, newer] = await Promise.allSettled([primaryHandshake(a, id(key, 1n), 2000), primaryHandshake(b, id(Buffer.alloc(32, 9), 999n), 2000)]);
    expect((older as PromiseRejectedResult).reason).not.toBeInstanceOf(SupersededError);
    expect((older as PromiseRejectedResult).reason.message).toBe(
      'a peer claims to be a primary of generation 999 > ours (1) but did not prove it holds the key: not fenced',
    );
    expect((newer as PromiseRejectedResult).reason).toBeInstanceOf(ProtocolError);
    done();
    // A HELLO with no proof after it at all.
    [a, b, done] = await pair();
    const hello = { version: PROTOCOL_VERSION, flags: 0, vmId: Buffer.alloc(16), generation: 50n, nextEpoch: 0n, pageSize: 4096, pageCount: 16, guestType: 'sim' as const, nonce: Buffer.alloc(32, 1) };
    b.send(FrameType.HELLO, 50n, 0n, encodeHello(hello));
    [older] = await Promise.allSettled([primaryHandshake(a, id(key, 1n), 300)]);
    expect((older as PromiseRejectedResult).reason).not.toBeInstanceOf(SupersededError);
    b.fail(null);
    done();
    // A REJECT saying "stale" before any CHALLENGE: unauthenticated, so only this connection fails.
    [a, b, done] = await pair();
    b.send(FrameType.REJECT, 50n, 0n, encodeReject(RejectCode.STALE_GENERATION, 'you are stale (forged)'));
    [older] = await Promise.allSettled([primaryHandshake(a, id(key, 1n), 2000)]);
    expect((older as PromiseRejectedResult).reason).not.toBeInstanceOf(SupersededError);
    expect((older as PromiseRejectedResult).reason.message).toBe('backup refused us: you are stale (forged)');
    b.fail(null);
    done();
  });

  it('library refuses to start without a key unless insecure is explicit', async () => {
    await expect(startBackup({ listen: { host: '127.0.0.1', port: 0 } })).rejects.toThrow('`key` (32 bytes) is required unless `insecure: true` is asked for explicitly');
    await expect(startPrimary({ guest: null, connect: { host: '127.0.0.1', port: 1 } })).rejects.toThrow(TypeError);
  });

  it('library refuses bad options when called, naming them (a NaN timeout used to turn failover off silently)', async () => {
    const key = generateKey();
    const L = { host: '127.0.0.1', port: 0 };
    type Any = never;
    const backup = (o: Record<string, unknown>) => startBackup({ key, listen: L, ...o } as Any);
    const primary = (o: Record<string, unknown>) => startPrimary({ guest: null, key, ...o } as Any);
    await expect(startBackup(undefined as Any)).rejects.toThrow(new TypeError('`options` must be an object, got undefined'));
    await expect(startBackup({ key: 'k'.repeat(32), listen: L } as Any)).rejects.toThrow(TypeError);
    await expect(backup({ timeoutMs: Number.NaN })).rejects.toThrow(new RangeError('`timeoutMs` must be a finite number of milliseconds, at least above 0, got NaN'));
    await expect(backup({ timeoutMs: '500' })).rejects.toThrow(new TypeError('`timeoutMs` must be a number, got string "500"'));
    await expect(backup({ timeoutMs: -5 })).rejects.toThrow(RangeError);
    await expect(backup({ promoted: { intervalMs: 1 } })).rejects.toThrow(new RangeError('`promoted.intervalMs` must be a finite number of milliseconds, at least 5, got 1'));
    await expect(backup({ listen: { host: '127.0.0.1', port: 'x' } })).rejects.toThrow(new TypeError('`listen.port` must be a number, got string "x"'));
    await expect(backup({ serve: { host: '127.0.0.1', port: 70000 } })).rejects.toThrow(new RangeError('`serve.port` must be an integer from 0 to 65535, got 70000'));
    await expect(backup({ fenceCmd: 5 })).rejects.toThrow(new TypeError('`fenceCmd` must be a string, got number'));
    await expect(backup({ maxEpochBytes: -1 })).rejects.toThrow(RangeError);
    await expect(primary({ intervalMs: '10' })).rejects.toThrow(new TypeError('`intervalMs` must be a number, got string "10"'));
    await expect(primary({ intervalMs: Infinity })).rejects.toThrow(RangeError);
    await expect(primary({ maxInFlight: 0 })).rejects.toThrow(new RangeError('`maxInFlight` must be an integer from 1 to 1024, got 0'));
    await expect(primary({ onBackupLoss: 'pasue' })).rejects.toThrow(new RangeError('`onBackupLoss` must be "continue" or "pause", got string "pasue"'));
    await expect(primary({ connect: { host: '127.0.0.1', port: 1.5 } })).rejects.toThrow(new RangeError('`connect.port` must be an integer from 0 to 65535, got 1.5'));
    // Good options still start (and stop) cleanly.
    const b = await backup({ timeoutMs: 300, promoted: { intervalMs: 10, onBackupLoss: 'pause' } });
    await b.close();
  });
});

describe('epoch body', () => {
  const rec = (seq: number) => ({ seq, data: Uint8Array.of(seq, 1, 2), chain: '00000000000000' + seq.toString(16).padStart(2, '0') });
  it('round-trips and rejects every inconsistency', () => {
    const body = encodeEpochBody({
      flags: FLAG_FINAL, pageSize: 4096, pageCount: 16, cpu: Uint8Array.of(9, 9), records: [rec(5), rec(6)], firstRecordSeq: 5,
      releasedRecords: 4, final: '0123456789abcdef', captureMs: 1234, frame: Uint8Array.of(1, 2, 3, 4),
    });
    expect(body.length).toBe(64 + 2 + 2 * 23 + 4);
    const d = decodeEpochBody(body);
    expect([d.final, d.firstRecordSeq, d.releasedRecords, d.records.map((r) => r.seq), [...d.cpu], [...d.frame]]).toEqual(['0123456789abcdef', 5, 4, [5, 6], [9, 9], [1, 2, 3, 4]]);
    const badReleased = Buffer.from(body);
    badReleased.writeBigUInt64LE(8n, 56);
    expect(() => decodeEpochBody(badReleased)).toThrow('epoch body: releasedRecords 8 is past the records it carries (7)');
    const huge = Buffer.from(body);
    huge.writeBigUInt64LE(BigInt(Number.MAX_SAFE_INTEGER) - 1n, 32); // + 2 records passes 2^53 - 1
    expect(() => decodeEpochBody(huge)).toThrow('epoch body: firstRecordSeq too large: 9007199254740990');
    const short = body.subarray(0, body.length - 1);
    expect(() => decodeEpochBody(short)).toThrow('epoch body: section lengths 2 + 46 + 4 do not add up to 51');
    const badSeq = Buffer.from(body);
    badSeq.writeBigUInt64LE(7n, 64 + 2 + 23);
    expect(() => decodeEpochBody(badSeq)).toThrow('epoch body: record 1 seq must be 6, got 7');
    const badLen = Buffer.from(body);
    badLen.writeUInt32LE(9999, 64 + 2 + 16);
    expect(() => decodeEpochBody(badLen)).toThrow('epoch body: record 0 length 9999 runs past the records section');
  });
});

describe('output commit', () => {
  it('serves only released records, from any after, then the end', async () => {
    const log = new OutputLog();
    let chain = '0000000000000000';
    const recs = [0, 1, 2, 3].map((seq) => {
      const data = Uint8Array.of(seq);
      chain = chainHex(chain, data);
      return { seq, data, chain };
    });
    log.append(recs);
    log.setFinal('00000000000000ff');
    const port = await startServicePort(log, '127.0.0.1', 0);
    const read = (after: number, until: (s: string) => boolean) => new Promise<string>((resolve) => {
      const s = connect(port.address().port, '127.0.0.1');
      let buf = '';
      s.on('connect', () => s.write(JSON.stringify({ after }) + '\n'));
      s.on('data', (d) => {
        buf += d;
        if (until(buf)) {
          s.destroy();
          resolve(buf);
        }
      });
      s.on('close', () => resolve(buf));
    });
    log.release(2);
    const first = await read(-1, (b) => b.split('\n').length > 2);
    expect(first).toBe(`{"seq":0,"data":"00","chain":"${recs[0]!.chain}"}\n{"seq":1,"data":"01","chain":"${recs[1]!.chain}"}\n`);
    const tail = read(1, (b) => b.includes('"end"'));
    setTimeout(() => log.releaseFinal(), 30);
    expect(await tail).toBe(`{"seq":2,"data":"02","chain":"${recs[2]!.chain}"}\n{"seq":3,"data":"03","chain":"${recs[3]!.chain}"}\n{"end":true,"final":"00000000000000ff"}\n`);
    expect(() => log.release(9)).toThrow('`upTo` must be an integer from 0 to 4, got 9');
    await port.close();
  });

  it('keeps only the newest released records within its retention, never an unreleased one', async () => {
    const log = new OutputLog({ retainRecords: 3 });
    const rec = (seq: number) => ({ seq, data: Uint8Array.of(seq, seq), chain: '0000000000000000' });
    log.append([0, 1, 2, 3, 4, 5].map(rec));
    expect([log.firstKept, log.length]).toEqual([0, 6]); // nothing released: all kept
    log.release(5);
    // Records become droppable one release after their own (so a burst reaches clients first).
    expect([log.firstKept, log.length, log.released]).toEqual([0, 6, 5]);
    log.release(6);
    // 3 released records kept below the previous watermark (5), plus record 5.
    expect([log.firstKept, log.length, log.released]).toEqual([2, 6, 6]);
    expect(log.slice(2, 6).map((r) => r.seq)).toEqual([2, 3, 4, 5]);
    expect(log.slice(1, 1)).toEqual([]);
    expect(() => log.get(1)).toThrow(new RangeError('record 1 is no longer kept: this log keeps records from seq 2 on (retention limit)'));
    expect(() => log.slice(0, 4)).toThrow(new RangeError('record 0 is no longer kept: this log keeps records from seq 2 on (retention limit)'));
    expect(() => log.get(6)).toThrow(new RangeError('`seq` must be an integer from 2 to 5, got 6'));
    expect(() => log.append([rec(7)])).toThrow(new RangeError('output record seq must be 6, got 7'));
    const bytes = new OutputLog({ retainBytes: 5 });
    bytes.append([0, 1, 2, 3, 4].map(rec));
    bytes.release(4);
    bytes.release(5);
    expect(bytes.firstKept).toBe(2); // below the cap (4): 2 records of 2 bytes fit in 5 bytes
    expect(() => new OutputLog({ retainRecords: 0 })).toThrow(new RangeError('`retainRecords` must be a positive integer, got 0'));
    // A client asking for history that is gone gets one error line naming where it may start.
    const port = await startServicePort(log, '127.0.0.1', 0);
    const answer = await new Promise<string>((resolve) => {
      const s = connect(port.address().port, '127.0.0.1');
      let buf = '';
      s.on('connect', () => s.write('{"after":-1}\n'));
      s.on('data', (d) => (buf += d));
      s.on('close', () => resolve(buf));
    });
    expect(answer).toBe('{"error":"records before seq 2 are no longer kept; ask for {\\"after\\":1} or later"}\n');
    await port.close();
    // A backup given a full resync that starts past what it holds restarts its history there.
    const fresh = new OutputLog();
    fresh.restartAt(40);
    expect([fresh.firstKept, fresh.length, fresh.released]).toEqual([40, 40, 40]);
    expect(() => fresh.restartAt(39)).toThrow(new RangeError('`seq` must be an integer of at least 40, got 39'));
  });

  it('the service port closes a client that sends no request line, refuses clients past its cap and an "after" past 2^53', async () => {
    const log = new OutputLog();
    const port = await startServicePort(log, '127.0.0.1', 0, { requestDeadlineMs: 200, maxClients: 2 });
    const ask = (line: string | null) =>
      new Promise<string>((resolve) => {
        const s = connect(port.address().port, '127.0.0.1');
        let buf = '';
        s.on('connect', () => line !== null && s.write(line));
        s.on('data', (d) => (buf += d));
        s.on('close', () => resolve(buf));
      });
    expect(await ask(null)).toBe('{"error":"no request line within 200 ms"}\n');
    expect(await ask('{"after":1e300}\n')).toBe('{"error":"\\"after\\" must be an integer from -1 to 9007199254740991, got 1e+300"}\n');
    // two silent clients hold both places; a third is told so
    const held = [ask(null), ask(null)];
    await new Promise((r) => setTimeout(r, 50));
    expect(await ask('{"after":-1}\n')).toBe('{"error":"this server already serves 2 clients; try again later"}\n');
    await Promise.all(held);
    await port.close();
  });

  it('a client waits on a live server that has nothing to release yet (a primary with no backup holds its output)', async () => {
    const log = new OutputLog();
    const data = (i: number) => new Uint8Array([i, i + 1]);
    let chain = '0000000000000000';
    const recs = Array.from({ length: 3 }, (_, i) => {
      chain = chainHex(chain, Buffer.from(data(i)));
      return { seq: i, data: data(i), chain };
    });
    log.append(recs);
    log.release(1); // one record out, then nothing for longer than the client's timeout
    const port = await startServicePort(log, '127.0.0.1', 0);
    setTimeout(() => {
      log.release(3);
      log.setFinal('00000000000000bb');
      log.releaseFinal();
    }, 2500);
    const v = new StreamVerifier(chainHex);
    const r = await followStream({ addresses: [port.address()], verifier: v, timeoutMs: 1000 });
    expect([r.ok, r.records, r.final, r.problems]).toEqual([true, 3, '00000000000000bb', []]);
    await port.close();
  });

  it('a client leaves an address that stays open but silent (a frozen primary) for the next one', async () => {
    // first address: accepts and never says anything
    const conns: Socket[] = [];
    const silent = createServer((c) => conns.push(c));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const log = new OutputLog();
    log.setFinal('00000000000000aa');
    log.releaseFinal();
    const port = await startServicePort(log, '127.0.0.1', 0);
    const v = new StreamVerifier(chainHex);
    const r = await followStream({
      addresses: [{ host: '127.0.0.1', port: (silent.address() as { port: number }).port }, port.address()],
      verifier: v, timeoutMs: 1500,
    });
    expect([r.ok, r.final, r.problems]).toEqual([true, '00000000000000aa', []]);
    await port.close();
    for (const c of conns) c.destroy();
    await new Promise<void>((res) => silent.close(() => res()));
    expect(conns.length).toBeGreaterThan(0); // it was tried, and left
  });

  it('a burst larger than a slow client can take at once still reaches it whole (retention waits for connected clients)', async () => {
    const log = new OutputLog({ retainRecords: 200 });
    const rec = (seq: number) => ({ seq, data: new Uint8Array(4096).fill(seq & 0xff), chain: '0000000000000000' });
    log.append(Array.from({ length: 300 }, (_, i) => rec(i)));
    const port = await startServicePort(log, '127.0.0.1', 0);
    const sock = connect(port.address().port, '127.0.0.1');
    let buf = '';
    sock.on('data', (d) => (buf += d));
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    await new Promise<void>((r) => sock.on('connect', () => r()));
    sock.pause(); // a client that is slow to read: the server's writes back up
    sock.write('{"after":-1}\n');
    await new Promise((r) => setTimeout(r, 50));
    log.release(300); // the burst: 300 records of 8 KiB lines, far more than one 256 KiB write
    for (let n = 300; n < 340; n += 10) {
      log.append(Array.from({ length: 10 }, (_, i) => rec(n + i)));
      log.release(n + 10); // without the client's pin these would drop everything below ~n - 200
      await new Promise((r) => setTimeout(r, 5));
    }
    log.setFinal('00000000000000aa');
    log.releaseFinal();
    sock.resume();
    await closed;
    const lines = buf.trim().split('\n').map((l) => JSON.parse(l) as { seq?: number; error?: string; end?: boolean });
    expect(lines.filter((l) => l.error)).toEqual([]);
    expect(lines.filter((l) => l.seq !== undefined).map((l) => l.seq)).toEqual(Array.from({ length: 340 }, (_, i) => i));
    expect(lines.at(-1)).toEqual({ end: true, final: '00000000000000aa' });
    // With no client connected, retention applies in full again: 200 released records below the cap.
    log.append([rec(340)]);
    log.release(341);
    expect(log.firstKept).toBe(140);
    await port.close();
  });

  it('the verifier catches gaps, duplicates and a broken chain', () => {
    const v = new StreamVerifier(chainHex);
    const d0 = '00';
    const c0 = chainHex('0000000000000000', Buffer.from(d0, 'hex'));
    expect(v.record({ seq: 0, data: d0, chain: c0 })).toBe(true);
    expect(v.record({ seq: 0, data: d0, chain: c0 })).toBe(false);
    expect(v.problems).toEqual(['duplicate: record 0 after 0']);
    const g = new StreamVerifier(chainHex);
    g.record({ seq: 1, data: d0, chain: c0 });
    expect(g.problems).toEqual(['gap: record 1 after -1']);
    const h = new StreamVerifier(chainHex);
    h.record({ seq: 0, data: '01', chain: c0 });
    expect(h.problems[0]).toMatch(/^hash chain broken at record 0: expected [0-9a-f]{16}, got /);
  });
});

describe('page buffer pool', () => {
  it('recycles only its own buffers, best fit first, bounded', () => {
    const pool = new PageBufferPool(2, 1 << 20);
    const a = pool.take(8192)!;
    expect(a.length).toBe(8192);
    a.fill(7);
    pool.give(a);
    const b = pool.take(4096)!;
    expect(b.buffer).toBe(a.buffer); // reused, not fresh memory
    expect(b.length).toBe(4096);
    const big = pool.take(2 << 20)!; // over maxBytes: a one-off buffer, never pooled
    expect([big.length, big.buffer instanceof SharedArrayBuffer]).toEqual([2 << 20, true]);
    pool.give(big); // ignored: the free list is empty, so a pooled big would come back here
    expect(pool.take(4096)!.buffer).not.toBe(big.buffer);
    expect(pool.take(0)).toBeUndefined();
    expect(a.buffer instanceof SharedArrayBuffer).toBe(true); // encoded in the background on any Node
    const foreign = Buffer.from('not the pool\'s');
    pool.give(foreign); // ignored: never written into
    expect(pool.take(8)!.buffer).not.toBe(foreign.buffer);
    pool.give(b);
    pool.give(b); // twice: kept once
    const c = pool.take(4096)!;
    const d = pool.take(4096)!;
    expect(c.buffer).toBe(a.buffer);
    expect(d.buffer).not.toBe(a.buffer);
  });
});

describe('full epochs skip zero pages', () => {
  it('nonZeroPfns lists exactly the pages that are not all zero (page count not a multiple of 8)', async () => {
    const k = await defaultKernels();
    const mem = new Uint8Array(21 * 4096);
    for (const [pfn, off] of [[0, 0], [3, 4095], [8, 17], [20, 2048]] as const) mem[pfn * 4096 + off] = 1;
    expect([...k.nonZeroPfns!(mem, { pageSize: 4096 })]).toEqual([0, 3, 8, 20]);
    expect([...k.nonZeroPfns!(new Uint8Array(3 * 4096), { pageSize: 4096 })]).toEqual([]);
  });
});
