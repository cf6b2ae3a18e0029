/**
 * The two halves of the handshake described in auth.ts. Each returns only once the peer has
 * proved it holds the key (or both sides agreed on --insecure) and the session keys are in place.
 */
import { randomBytes } from 'node:crypto';
import { ProtocolError } from '../errors/protocol-error.js';
import {
  PROTOCOL_VERSION, FLAG_INSECURE, RejectCode, encodeHello, decodeHello, encodeChallenge, decodeChallenge,
  transcript, sessionKeys, proofMatches, encodeReject, decodeReject, newerPrimaryProof, type Hello, type Challenge, type GuestTypeName,
} from './auth.js';
import { FrameType, ZERO_KEY } from './wire.js';
import { expectType, type Link } from './link.js';

export interface PrimaryIdentity {
  key: Uint8Array | null; // null: insecure
  vmId: Buffer;
  generation: bigint;
  nextEpoch: bigint;
  pageSize: number;
  pageCount: number;
  guestType: GuestTypeName;
}

/** Thrown to a primary that learns a newer generation exists: it must fence itself. */
export class SupersededError extends ProtocolError {
  constructor(readonly newerGeneration: bigint, message: string) {
    super('STALE_GENERATION', message);
  }
}

export async function primaryHandshake(link: Link, id: PrimaryIdentity, timeoutMs: number): Promise<Challenge> {
  const key = id.key ?? ZERO_KEY;
  const hello: Hello = {
    version: PROTOCOL_VERSION, flags: id.key ? 0 : FLAG_INSECURE, vmId: id.vmId, generation: id.generation,
    nextEpoch: id.nextEpoch, pageSize: id.pageSize, pageCount: id.pageCount, guestType: id.guestType, nonce: randomBytes(32),
  };
  const helloPayload = encodeHello(hello);
  link.send(FrameType.HELLO, id.generation, id.nextEpoch, helloPayload);
  const f = await link.next(timeoutMs);
  if (f && f.type === FrameType.HELLO) {
    // Another primary. Nothing it says is authenticated yet: the newer of the two proves it holds
    // the key over both HELLOs before the older one fences itself (a forged claim only closes
    // this connection).
    const other = decodeHello(f.payload);
    if (other.generation > id.generation) {
      const pf = await link.next(timeoutMs);
      if (pf && pf.type === FrameType.PROOF && proofMatches(pf.payload, newerPrimaryProof(key, f.payload, helloPayload))) {
        throw new SupersededError(other.generation, `peer is a primary of generation ${other.generation} > ours (${id.generation}): we are stale`);
      }
      throw new ProtocolError('AUTH_FAILED', `a peer claims to be a primary of generation ${other.generation} > ours (${id.generation}) but did not prove it holds the key: not fenced`);
    }
    if (other.generation < id.generation) {
      link.send(FrameType.PROOF, id.generation, 0n, newerPrimaryProof(key, helloPayload, f.payload));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        link.socket.end(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    throw new ProtocolError('STALE_GENERATION', `refused a primary of generation ${other.generation} (ours is ${id.generation}): stale primary`);
  }
  if (f && f.type === FrameType.REJECT) {
    // Before the CHALLENGE nothing is authenticated, and a backup refuses a stale primary only
    // after checking its proof (below): a REJECT here never fences us.
    const r = decodeReject(f.payload);
    throw new ProtocolError('REJECTED', `backup refused us: ${r.reason}`);
  }
  const cf = expectType(f, FrameType.CHALLENGE, 'handshake', link);
  const ch = decodeChallenge(cf.payload);
  if (ch.version !== PROTOCOL_VERSION) throw new ProtocolError('BAD_VERSION', `backup speaks protocol ${ch.version}, we speak ${PROTOCOL_VERSION}`);
  if ((ch.flags & FLAG_INSECURE) !== (hello.flags & FLAG_INSECURE)) {
    throw new ProtocolError('AUTH_FAILED', ch.flags & FLAG_INSECURE ? 'backup runs --insecure but we have a key: refused' : 'backup requires a key but we run --insecure: refused');
  }
  const t = transcript(helloPayload, cf.payload);
  const ks = sessionKeys(key, t);
  if (!proofMatches(ch.proof, ks.proofB)) throw new ProtocolError('AUTH_FAILED', 'backup failed authentication (wrong key?)');
  link.txKey = ks.kPB;
  link.decoder.key = ks.kBP;
  link.send(FrameType.PROOF, id.generation, 0n, ks.proofP);
  const af = await link.next(timeoutMs);
  if (af && af.type === FrameType.REJECT) {
    const r = decodeReject(af.payload);
    if (r.code === RejectCode.STALE_GENERATION) throw new SupersededError(af.generation, `backup refused us: ${r.reason}`);
    throw new ProtocolError('REJECTED', `backup refused us: ${r.reason}`);
  }
  expectType(af, FrameType.ACCEPT, 'handshake', link);
  return ch;
}

export interface BackupState {
  key: Uint8Array | null;
  vmId: Buffer | null;
  generation: bigint;
  lastCommitted: bigint;
  nextRecord: number;
  /** Extra refusal (busy, wrong VM, geometry): [code, reason] or null. */
  decide(hello: Hello): [number, string] | null;
}

export async function backupHandshake(link: Link, st: BackupState, timeoutMs: number): Promise<Hello> {
  const key = st.key ?? ZERO_KEY;
  const hf = expectType(await link.next(timeoutMs), FrameType.HELLO, 'handshake', link);
  const hello = decodeHello(hf.payload);
  const reject = (code: number, reason: string, errCode: 'REJECTED' | 'STALE_GENERATION' | 'AUTH_FAILED' | 'BAD_VERSION'): never => {
    link.send(FrameType.REJECT, st.generation, 0n, encodeReject(code, reason));
    link.socket.end();
    throw new ProtocolError(errCode, reason);
  };
  if (hello.version !== PROTOCOL_VERSION) reject(RejectCode.VERSION, `protocol version ${hello.version} not supported (we speak ${PROTOCOL_VERSION})`, 'BAD_VERSION');
  const ourFlags = st.key ? 0 : FLAG_INSECURE;
  if ((hello.flags & FLAG_INSECURE) !== ourFlags) {
    reject(RejectCode.INSECURE_MISMATCH, ourFlags ? 'primary has a key but this backup runs --insecure' : 'this backup requires a key; primary runs --insecure', 'AUTH_FAILED');
  }
  const chFields = {
    version: PROTOCOL_VERSION, flags: ourFlags, vmId: st.vmId ?? Buffer.alloc(16), generation: st.generation,
    lastCommitted: st.lastCommitted, nextRecord: BigInt(st.nextRecord), nonce: randomBytes(32),
  };
  const t = transcript(hf.payload, encodeChallenge(chFields, null));
  const ks = sessionKeys(key, t);
  link.send(FrameType.CHALLENGE, st.generation, st.lastCommitted, encodeChallenge(chFields, ks.proofB));
  link.decoder.key = ks.kPB;
  const pn = await link.next(timeoutMs);
  // The PROOF is the first frame under the session key: a primary with another key fails its MAC.
  if (!pn && link.failure instanceof ProtocolError && link.failure.code === 'BAD_MAC') {
    throw new ProtocolError('AUTH_FAILED', 'primary failed authentication (wrong key?): its PROOF frame fails the session MAC');
  }
  // A primary that cannot check our proof (another key) closes instead of answering.
  if (!pn && link.closed && link.failure === null) {
    throw new ProtocolError('AUTH_FAILED', 'primary closed the connection instead of answering our CHALLENGE (wrong key?)');
  }
  const pf = expectType(pn, FrameType.PROOF, 'handshake', link);
  link.txKey = ks.kBP;
  if (!proofMatches(pf.payload, ks.proofP)) reject(RejectCode.AUTH_FAILED, 'primary failed authentication (wrong key?)', 'AUTH_FAILED');
  if (hello.generation < st.generation) {
    reject(RejectCode.STALE_GENERATION, `stale primary: generation ${hello.generation} < ${st.generation}`, 'STALE_GENERATION');
  }
  const extra = st.decide(hello);
  if (extra) reject(extra[0], extra[1], 'REJECTED');
  link.send(FrameType.ACCEPT, st.generation, 0n);
  return hello;
}
