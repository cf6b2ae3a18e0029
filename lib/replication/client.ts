/**
 * A client of the service port: reads the released output stream, fails over between the
 * addresses it was given (reconnecting with {"after": lastSeq}), and checks the stream: no gap,
 * no duplicate, hash chain unbroken, and (with a reference from `understudy run --records`) equal
 * to an unreplicated run, final checksum included.
 */
import { connect as netConnect } from 'node:net';
import { readFileSync } from 'node:fs';
import type { ChainHash } from './kernels.js';
import type { Endpoint } from './primary.js';

export interface StreamRecord {
  seq: number;
  data: string;
  chain: string;
}

export interface Reference {
  records: StreamRecord[];
  final: string | null;
}

/** Parses `understudy run --records` output (or a saved stream). */
export function readReference(path: string): Reference {
  const records: StreamRecord[] = [];
  let final: string | null = null;
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new RangeError(`reference ${path} line ${i + 1} is not JSON`);
    }
    if (o.end === true && typeof o.final === 'string') final = o.final;
    else if (typeof o.seq === 'number' && typeof o.data === 'string' && typeof o.chain === 'string') records.push({ seq: o.seq, data: o.data, chain: o.chain });
  });
  return { records, final };
}

/** Checks a record stream incrementally; `problems` collects what is wrong. */
export class StreamVerifier {
  lastSeq: number;
  lastChain: string | null;
  final: string | null = null;
  readonly problems: string[] = [];
  records = 0;

  constructor(private readonly chain: ChainHash | null, private readonly reference: Reference | null = null, after = -1) {
    this.lastSeq = after;
    this.lastChain = after < 0 ? '0000000000000000' : null;
  }

  get ok(): boolean {
    return this.problems.length === 0;
  }

  record(r: StreamRecord): boolean {
    if (r.seq <= this.lastSeq) this.problems.push(`duplicate: record ${r.seq} after ${this.lastSeq}`);
    else if (r.seq !== this.lastSeq + 1) this.problems.push(`gap: record ${r.seq} after ${this.lastSeq}`);
    else if (!/^[0-9a-f]*$/.test(r.data) || r.data.length % 2 !== 0 || !/^[0-9a-f]{16}$/.test(r.chain)) this.problems.push(`record ${r.seq} is malformed`);
    else {
      if (this.chain && this.lastChain !== null) {
        const want = this.chain(this.lastChain, Buffer.from(r.data, 'hex'));
        if (want !== r.chain) this.problems.push(`hash chain broken at record ${r.seq}: expected ${want}, got ${r.chain}`);
      }
      if (this.reference) {
        const ref = this.reference.records[r.seq];
        if (!ref) this.problems.push(`record ${r.seq} is beyond the reference's ${this.reference.records.length} records`);
        else if (ref.data !== r.data || ref.chain !== r.chain) this.problems.push(`record ${r.seq} differs from the reference`);
      }
      this.lastSeq = r.seq;
      this.lastChain = r.chain;
      this.records++;
    }
    return this.ok;
  }

  end(final: string): boolean {
    this.final = final;
    if (this.reference) {
      if (this.reference.records.length !== this.lastSeq + 1) this.problems.push(`stream ended after ${this.lastSeq + 1} records, the reference has ${this.reference.records.length}`);
      if (this.reference.final !== null && this.reference.final !== final) this.problems.push(`final checksum ${final} differs from the reference's ${this.reference.final}`);
    }
    return this.ok;
  }
}

export interface FollowOptions {
  addresses: Endpoint[];
  after?: number;
  verifier: StreamVerifier;
  /** Give up when no address answers for this long (default 30 s). */
  timeoutMs?: number;
  /** Drop a connection that sends nothing for this long and try the next address (default: a third of timeoutMs, at least 500). */
  idleMs?: number;
  onRecord?(r: StreamRecord): void;
  onReconnect?(addr: Endpoint, after: number): void;
}

export interface FollowResult {
  ok: boolean;
  records: number;
  reconnects: number;
  final: string | null;
  problems: string[];
}

/** The longest record line a client accepts (a record is a few hundred bytes). */
const MAX_LINE_BYTES = 1 << 20;

/** Follows the stream to its end (or to the first problem, or the timeout). */
export async function followStream(o: FollowOptions): Promise<FollowResult> {
  if (o.addresses.length === 0) throw new RangeError('`addresses` must name at least one HOST:PORT');
  const v = o.verifier;
  const timeout = o.timeoutMs ?? 30_000;
  let idx = 0;
  let reconnects = -1;
  let lastProgress = Date.now();
  let announce = false;
  // A connection that stays open but goes silent (a frozen primary) is dropped after this long,
  // so the next address (a promoted backup) gets its turn.
  const idleMs = o.idleMs ?? Math.max(500, Math.floor(timeout / 3));
  // Every address is tried at least once after the last progress before the client gives up.
  let triedSinceProgress = 0;
  // A server that accepts the request is alive even while it has nothing to release (a primary
  // with no backup holds its output): the client waits on it, only leaving it now and then in
  // case another address (a promoted backup) has more.
  let lastAnswer = 0;
  for (;;) {
    if (v.final !== null || !v.ok) break;
    if (Date.now() - Math.max(lastProgress, lastAnswer) > timeout && triedSinceProgress >= o.addresses.length) {
      v.problems.push(`no address delivered the rest of the stream within ${timeout} ms`);
      break;
    }
    const addr = o.addresses[idx % o.addresses.length]!;
    idx++;
    triedSinceProgress++;
    reconnects++;
    if (reconnects > 0 && announce) o.onReconnect?.(addr, v.lastSeq);
    announce = false;
    const progressed = await new Promise<boolean>((resolve) => {
      let buf = '';
      let got = false;
      let connected = false;
      let refused = false;
      const sock = netConnect(addr.port, addr.host);
      sock.setNoDelay(true);
      sock.setTimeout(idleMs, () => sock.destroy());
      sock.on('connect', () => {
        sock.write(JSON.stringify({ after: v.lastSeq }) + '\n');
        connected = true;
      });
      sock.on('data', (d: Buffer) => {
        buf += d.toString('utf8');
        if (buf.length > MAX_LINE_BYTES && buf.indexOf('\n') < 0) {
          v.problems.push(`server sent a line longer than ${MAX_LINE_BYTES} bytes`);
          sock.destroy();
          return;
        }
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          let m: Record<string, unknown>;
          try {
            m = JSON.parse(line) as Record<string, unknown>;
          } catch {
            v.problems.push(`server sent a line that is not JSON: ${line.slice(0, 80)}`);
            sock.destroy();
            return;
          }
          if (typeof m.error === 'string') {
            // A server at its client limit says so; that is a refusal for now, not a broken stream.
            if (!/try again later/.test(m.error)) v.problems.push(`server error: ${m.error}`);
            refused = true;
            sock.destroy();
            return;
          }
          got = true;
          lastProgress = Date.now();
          triedSinceProgress = 0;
          if (m.end === true && typeof m.final === 'string') {
            v.end(m.final);
            sock.destroy();
            return;
          }
          const r = { seq: m.seq as number, data: m.data as string, chain: m.chain as string };
          if (typeof r.seq !== 'number' || typeof r.data !== 'string' || typeof r.chain !== 'string') {
            v.problems.push(`server sent a malformed record line: ${line.slice(0, 80)}`);
            sock.destroy();
            return;
          }
          if (!v.record(r)) {
            sock.destroy();
            return;
          }
          o.onRecord?.(r);
        }
      });
      sock.on('error', () => undefined);
      sock.on('close', () => {
        if (connected && !refused) lastAnswer = Date.now();
        resolve(got);
      });
    });
    if (progressed) announce = true;
    else await new Promise((r) => setTimeout(r, 100));
  }
  return { ok: v.ok && v.final !== null, records: v.records, reconnects: Math.max(0, reconnects), final: v.final, problems: v.problems };
}
