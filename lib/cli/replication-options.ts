/**
 * Options shared by `understudy primary` and `understudy backup`: key or --insecure, timeouts,
 * and a JSON-lines event stream on stdout (--json) that `understudy demo` and tests read.
 */
import { statSync } from 'node:fs';
import { readKeyFile } from '../replication/auth.js';
import { CliError, durationOption } from './util.js';

/** The least epoch length (EpochLoop's own bound, lib/checkpoint/epoch-loop.ts). */
export const MIN_INTERVAL_MS = 5;

/** `--interval D`: the epoch length, at least MIN_INTERVAL_MS. */
export function intervalOption(cmd: string, v: unknown, dfltMs = 25): number {
  const ms = durationOption(cmd, 'interval', v as string | undefined, dfltMs);
  if (ms < MIN_INTERVAL_MS) throw new CliError(`${cmd}: --interval must be at least ${MIN_INTERVAL_MS}ms, got ${ms}ms`);
  return ms;
}

export function keyOption(cmd: string, values: Record<string, unknown>): { key?: Buffer; insecure?: boolean } {
  const file = values.key as string | undefined;
  const insecure = values.insecure === true;
  if (file && insecure) throw new CliError(`${cmd}: give either --key FILE or --insecure, not both`);
  if (insecure) return { insecure: true };
  if (!file) throw new CliError(`${cmd}: --key FILE is required (make one with \`understudy keygen --out FILE\`); --insecure must be asked for explicitly`);
  let key: Buffer;
  try {
    key = readKeyFile(file);
  } catch (err) {
    throw new CliError(`${cmd}: ${(err as Error).message}`);
  }
  // Anyone who can read the key can fence this pair or feed the backup epochs: say so, as ssh
  // does for a private key others can read (keygen writes mode 0600).
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) {
    process.stderr.write(
      `${cmd}: warning: key file ${file} is readable or writable by others (mode ${mode.toString(8).padStart(4, '0')}); \`chmod 600 ${file}\`\n`,
    );
  }
  return { key };
}

/** Writes one JSON event line to stdout (bigints as strings). */
export function emitJson(event: string, data: object): void {
  process.stdout.write(JSON.stringify({ event, ...data }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
}

export function logLine(role: string, line: string): void {
  process.stderr.write(`${role}: ${line}\n`);
}

export function pct(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export const commonOptions = {
  key: { type: 'string' },
  insecure: { type: 'boolean' },
  timeout: { type: 'string' },
  interval: { type: 'string' },
  'on-backup-loss': { type: 'string' },
  retain: { type: 'string' },
  linger: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean' },
} as const;

export function onLossOption(cmd: string, v: unknown): 'continue' | 'pause' {
  if (v === undefined) return 'continue';
  if (v !== 'continue' && v !== 'pause') throw new CliError(`${cmd}: --on-backup-loss must be continue or pause, got ${JSON.stringify(v)}`);
  return v;
}

/** `--retain N`: released output records kept for late clients and new backups. */
export function retainOption(cmd: string, v: unknown): { retainRecords: number } | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v) || !Number.isSafeInteger(n) || n < 1) {
    throw new CliError(`${cmd}: --retain must be a positive integer (records), got ${JSON.stringify(v)}`);
  }
  return { retainRecords: n };
}
