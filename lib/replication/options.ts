/**
 * Checks of the library options of startPrimary / startBackup, done when they are called: a
 * wrong type is a TypeError, a bad value a RangeError, each naming the option and the value. (A
 * backup's `promoted` options are checked at start too, not only when it takes over.)
 */
import { describe } from '../kernels/page-args.js';

export function checkOptionsObject(o: unknown, name: string): void {
  if (typeof o !== 'object' || o === null) throw new TypeError(`\`${name}\` must be an object, got ${describe(o)}`);
}

function num(v: unknown, name: string): number {
  if (typeof v !== 'number') throw new TypeError(`\`${name}\` must be a number, got ${describe(v)}`);
  return v;
}

/** A positive, finite number of milliseconds, at least `min`. */
export function checkMs(v: unknown, name: string, min: number): void {
  if (v === undefined) return;
  const n = num(v, name);
  if (!Number.isFinite(n) || n < min || n <= 0) throw new RangeError(`\`${name}\` must be a finite number of milliseconds, at least ${min || 'above 0'}, got ${n}`);
}

export function checkInt(v: unknown, name: string, min: number, max: number): void {
  if (v === undefined) return;
  const n = num(v, name);
  if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`\`${name}\` must be an integer from ${min} to ${max}, got ${n}`);
}

export function checkKey(key: unknown, insecure: unknown): void {
  if (insecure !== undefined && typeof insecure !== 'boolean') throw new TypeError(`\`insecure\` must be a boolean, got ${describe(insecure)}`);
  if (insecure === true) return;
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    throw new TypeError(`\`key\` (32 bytes) is required unless \`insecure: true\` is asked for explicitly, got ${describe(key)}${key instanceof Uint8Array ? ` of ${key.length} bytes` : ''}`);
  }
}

/** An { host, port } address; a Server / ServicePort (anything else that is an object with the given method) passes. */
export function checkEndpoint(v: unknown, name: string, passIf?: string): void {
  if (v === undefined) return;
  checkOptionsObject(v, name);
  if (passIf && passIf in (v as object)) return;
  const { host, port } = v as { host?: unknown; port?: unknown };
  if (typeof host !== 'string') throw new TypeError(`\`${name}.host\` must be a string, got ${describe(host)}`);
  checkInt(port, `${name}.port`, 0, 65535);
  if (port === undefined) throw new TypeError(`\`${name}.port\` must be a number, got undefined`);
}

/** The tuning a primary takes (also a backup's `promoted`): `prefix` names the object they sit in. */
export function checkPrimaryTuning(o: Record<string, unknown>, prefix = ''): void {
  checkMs(o.intervalMs, `${prefix}intervalMs`, 5);
  checkMs(o.timeoutMs, `${prefix}timeoutMs`, 0);
  checkInt(o.maxInFlight, `${prefix}maxInFlight`, 1, 1024);
  checkInt(o.threads, `${prefix}threads`, 1, 256);
  const loss = o.onBackupLoss;
  if (loss !== undefined && loss !== 'continue' && loss !== 'pause') {
    throw new RangeError(`\`${prefix}onBackupLoss\` must be "continue" or "pause", got ${describe(loss)}`);
  }
}
