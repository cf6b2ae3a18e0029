/**
 * Authentication for the replication link: a pre-shared key (32 random bytes, stored as 64 hex
 * digits in a key file), an HMAC-SHA256 challenge-response that each side answers, and per-frame
 * HMACs under per-direction session keys derived from both nonces.
 *
 * Why not TLS-PSK: node:tls only offers PSK with TLS 1.2 cipher suites, and we need a MAC on every
 * frame anyway to bind the sequence number; HMAC-SHA256 from node:crypto gives both with one
 * mechanism and no certificate handling. The link is authenticated and integrity-protected, not
 * encrypted (guest memory is readable by someone who can sniff the link); see docs/FORMAT.md "replication wire protocol".
 *
 * Handshake (the primary speaks first, whichever side opened the TCP connection):
 *   P -> B  HELLO      version, flags, vmId, generation, nextEpoch, pageSize, pageCount, type, nP
 *   B -> P  CHALLENGE  version, flags, vmId, generation, lastCommitted, nextRecord, nB, proofB
 *   P -> B  PROOF      proofP
 *   B -> P  ACCEPT | REJECT(code, reason)
 * T = SHA-256(HELLO payload || CHALLENGE payload without proofB)
 * proofB = HMAC(K, "understudy/1 backup" || T), proofP = HMAC(K, "understudy/1 primary" || T)
 * kPB = HMAC(K, "understudy/1 p->b" || T), kBP = HMAC(K, "understudy/1 b->p" || T)
 * HELLO and CHALLENGE are MACed with the zero key; every frame after them with kPB / kBP.
 * In --insecure mode K is 32 zero bytes (both sides must say --insecure).
 * Two primaries that meet both send HELLO; the newer then sends PROOF = newerPrimaryProof(K, its
 * HELLO, the older's HELLO), and only a matching one makes the older fence itself.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, writeFileSync, statSync } from 'node:fs';
import { ProtocolError } from '../errors/protocol-error.js';

// 3: epoch bodies may carry page frames of version 5 (XBM repeats), which builds that speak 2
// refuse; the handshake turns that mismatch away up front rather than at the first epoch.
// 4: epoch bodies carry CPU state blobs of version 2 (naming their pause), which builds that speak
// 3 would only refuse when they restore the guest, at failover.
export const PROTOCOL_VERSION = 4;
export const KEY_BYTES = 32;
export const HELLO_BYTES = 88;
export const CHALLENGE_BYTES = 112;
export const FLAG_INSECURE = 1;

export const GuestTypeCode = { other: 0, kvm: 1, sim: 2 } as const;
export type GuestTypeName = keyof typeof GuestTypeCode;

/** A fresh key: 32 random bytes. */
export function generateKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/** Writes a key file (64 hex digits and a newline), mode 0600. */
export function writeKeyFile(path: string, key: Uint8Array = generateKey()): void {
  if (key.length !== KEY_BYTES) throw new RangeError(`\`key\` must be ${KEY_BYTES} bytes, got ${key.length}`);
  writeFileSync(path, Buffer.from(key).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
}

/**
 * Reads a key file: 64 hex digits (whitespace around them ignored).
 * @throws RangeError naming the file when the content is not exactly 32 bytes of hex.
 */
export function readKeyFile(path: string): Buffer {
  const st = statSync(path);
  if (st.isDirectory()) throw new RangeError(`key file ${path} is a directory, not a file of 64 hex digits`);
  if (!st.isFile()) throw new RangeError(`key file ${path} is not a regular file`);
  if (st.size > 4096) throw new RangeError(`key file ${path} must hold 64 hex digits, got ${st.size} bytes`);
  const text = readFileSync(path, 'utf8').trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new RangeError(`key file ${path} must hold 64 hex digits (32 bytes), got ${text.length} characters`);
  return Buffer.from(text, 'hex');
}

export interface Hello {
  version: number;
  flags: number;
  vmId: Buffer; // 16 bytes
  generation: bigint;
  nextEpoch: bigint;
  pageSize: number;
  pageCount: number;
  guestType: GuestTypeName;
  nonce: Buffer; // 32 bytes
}

export interface Challenge {
  version: number;
  flags: number;
  vmId: Buffer; // 16 bytes, zero when unbound
  generation: bigint; // highest generation the backup has seen (0: none)
  lastCommitted: bigint; // 0: no committed epoch
  nextRecord: bigint; // records the backup holds
  nonce: Buffer;
  proof: Buffer;
}

export function encodeHello(h: Hello): Buffer {
  const b = Buffer.alloc(HELLO_BYTES);
  b.writeUInt32LE(h.version, 0);
  b.writeUInt32LE(h.flags, 4);
  h.vmId.copy(b, 8, 0, 16);
  b.writeBigUInt64LE(h.generation, 24);
  b.writeBigUInt64LE(h.nextEpoch, 32);
  b.writeUInt32LE(h.pageSize, 40);
  b.writeUInt32LE(h.pageCount, 44);
  b.writeUInt8(GuestTypeCode[h.guestType], 48);
  h.nonce.copy(b, 56, 0, 32);
  return b;
}

export function decodeHello(b: Buffer): Hello {
  if (b.length !== HELLO_BYTES) throw new ProtocolError('BAD_PAYLOAD', `HELLO payload must be ${HELLO_BYTES} bytes, got ${b.length}`);
  const code = b.readUInt8(48);
  const guestType = (Object.keys(GuestTypeCode) as GuestTypeName[]).find((k) => GuestTypeCode[k] === code);
  if (!guestType) throw new ProtocolError('BAD_PAYLOAD', `HELLO guest type must be 0, 1 or 2, got ${code}`);
  if (!b.subarray(49, 56).every((x) => x === 0)) throw new ProtocolError('BAD_PAYLOAD', 'HELLO reserved bytes must be 0');
  return {
    version: b.readUInt32LE(0),
    flags: b.readUInt32LE(4),
    vmId: Buffer.from(b.subarray(8, 24)),
    generation: b.readBigUInt64LE(24),
    nextEpoch: b.readBigUInt64LE(32),
    pageSize: b.readUInt32LE(40),
    pageCount: b.readUInt32LE(44),
    guestType,
    nonce: Buffer.from(b.subarray(56, 88)),
  };
}

export function encodeChallenge(c: Omit<Challenge, 'proof'>, proof: Buffer | null): Buffer {
  const b = Buffer.alloc(CHALLENGE_BYTES);
  b.writeUInt32LE(c.version, 0);
  b.writeUInt32LE(c.flags, 4);
  c.vmId.copy(b, 8, 0, 16);
  b.writeBigUInt64LE(c.generation, 24);
  b.writeBigUInt64LE(c.lastCommitted, 32);
  b.writeBigUInt64LE(c.nextRecord, 40);
  c.nonce.copy(b, 48, 0, 32);
  if (proof) proof.copy(b, 80, 0, 32);
  return b;
}

export function decodeChallenge(b: Buffer): Challenge {
  if (b.length !== CHALLENGE_BYTES) throw new ProtocolError('BAD_PAYLOAD', `CHALLENGE payload must be ${CHALLENGE_BYTES} bytes, got ${b.length}`);
  return {
    version: b.readUInt32LE(0),
    flags: b.readUInt32LE(4),
    vmId: Buffer.from(b.subarray(8, 24)),
    generation: b.readBigUInt64LE(24),
    lastCommitted: b.readBigUInt64LE(32),
    nextRecord: b.readBigUInt64LE(40),
    nonce: Buffer.from(b.subarray(48, 80)),
    proof: Buffer.from(b.subarray(80, 112)),
  };
}

/** The transcript hash both proofs and both session keys are bound to. */
export function transcript(helloPayload: Buffer, challengePayload: Buffer): Buffer {
  return createHash('sha256').update(helloPayload).update(challengePayload.subarray(0, 80)).digest();
}

function derive(key: Uint8Array, label: string, t: Buffer): Buffer {
  return createHmac('sha256', key).update(label).update(t).digest();
}

export interface SessionKeys {
  proofB: Buffer;
  proofP: Buffer;
  kPB: Buffer;
  kBP: Buffer;
}

export function sessionKeys(key: Uint8Array, t: Buffer): SessionKeys {
  return {
    proofB: derive(key, 'understudy/1 backup', t),
    proofP: derive(key, 'understudy/1 primary', t),
    kPB: derive(key, 'understudy/1 p->b', t),
    kBP: derive(key, 'understudy/1 b->p', t),
  };
}

/**
 * When two primaries meet (a stale one dials the promoted backup), each sends its HELLO; the newer
 * one then proves it holds the key with this value over both HELLOs (its own first), so that a
 * peer without the key cannot make a primary fence itself by claiming a newer generation. The
 * older side's HELLO carries a fresh nonce, so a recorded proof does not replay.
 */
export function newerPrimaryProof(key: Uint8Array, newerHello: Buffer, olderHello: Buffer): Buffer {
  return derive(key, 'understudy/1 newer primary', createHash('sha256').update(newerHello).update(olderHello).digest());
}

/** Constant-time comparison of two 32-byte proofs. */
export function proofMatches(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export const RejectCode = {
  VERSION: 1,
  INSECURE_MISMATCH: 2,
  AUTH_FAILED: 3,
  STALE_GENERATION: 4,
  WRONG_VM: 5,
  BUSY: 6,
  GEOMETRY: 7,
  SUPERSEDED: 8,
} as const;

export function encodeReject(code: number, reason: string): Buffer {
  const text = Buffer.from(reason.slice(0, 400), 'utf8');
  const b = Buffer.alloc(2 + text.length);
  b.writeUInt16LE(code, 0);
  text.copy(b, 2);
  return b;
}

export function decodeReject(b: Buffer): { code: number; reason: string } {
  if (b.length < 2 || b.length > 2 + 1600) throw new ProtocolError('BAD_PAYLOAD', `REJECT payload must be 2 to 1602 bytes, got ${b.length}`);
  return { code: b.readUInt16LE(0), reason: b.subarray(2).toString('utf8') };
}
