/**
 * Helpers shared by the store commands (checkpoint, snapshot, restore, export, verify, ls, inspect,
 * prune, compact): opening a store with CLI-grade errors, sizes for humans, and loading the guest
 * backends on demand.
 */
import fs from 'node:fs';
import { Store, StoreFormatError } from '../store/index.js';
import type { Guest, GuestOptions, RestoreOptions } from '../guest/types.js';
import { CliError } from './util.js';

export function openStore(cmd: string, dir: string | undefined, create = false): Store {
  if (!dir) throw new CliError(`${cmd}: a store directory is required; see \`understudy ${cmd} --help\``);
  if (!create && !fs.existsSync(dir)) throw new CliError(`${cmd}: ${dir}: no such directory`, 1);
  try {
    return Store.open(dir, { create });
  } catch (err) {
    if (err instanceof StoreFormatError) throw new CliError(`${cmd}: ${err.message}`, 1);
    throw err;
  }
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export interface GuestModule {
  createGuest(options: GuestOptions): Promise<Guest> | Guest;
  restoreGuest(options: RestoreOptions): Promise<Guest> | Guest;
}

/** The guest backends (lib/guest/index.ts), loaded only by the commands that run guests. */
export async function guests(): Promise<GuestModule> {
  const spec = '../guest/index.js';
  try {
    return (await import(spec)) as GuestModule;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_MODULE_NOT_FOUND') throw new CliError('guests are not available in this build (lib/guest/index.js is missing)', 1);
    throw err;
  }
}

export const WORKLOADS = ['uniform', 'hotset', 'sequential', 'sparse', 'memcheck', 'kv'] as const;

export function guestType(cmd: string, v: string | undefined): 'kvm' | 'sim' | 'auto' {
  const t = v ?? 'auto';
  if (t !== 'kvm' && t !== 'sim' && t !== 'auto') throw new CliError(`${cmd}: --guest must be kvm, sim or auto, got ${JSON.stringify(t)}`);
  return t;
}

export function workloadName(cmd: string, v: string | undefined): (typeof WORKLOADS)[number] {
  if (!v) throw new CliError(`${cmd}: --workload NAME is required (${WORKLOADS.join(', ')})`);
  if (!(WORKLOADS as readonly string[]).includes(v)) throw new CliError(`${cmd}: --workload must be one of ${WORKLOADS.join(', ')}, got ${JSON.stringify(v)}`);
  return v as (typeof WORKLOADS)[number];
}

/** ORs `b` into `a` (dirty bitmaps; one step per byte = 8 pages). */
export function orBitmap(a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < a.length; i++) a[i]! |= b[i]!;
}
