/**
 * The seams replication uses: page kernels (gather, encode, apply), guest creation/restore and the
 * XXH3-64 chain hash. By default they come from the package's own modules (native kernels,
 * lib/guest); tests and embedders may pass their own. Loaded lazily so this layer does not pull
 * a guest backend in before it needs one.
 */
import type { Guest, GuestOptions, RestoreOptions } from '../guest/types.js';

/** The three per-epoch page operations (native batch calls in the default implementation). */
export interface PageKernels {
  /** Copies the listed pages out of guest memory (done while the guest is paused). */
  gatherPages(memory: Uint8Array, pfns: Uint32Array, opts: { pageSize: number; out?: Uint8Array }): Uint8Array;
  /**
   * Optional: the pfns of the pages of `memory` that are not all zero, ascending. A full epoch
   * gathers only these (the backup starts from a zero image); without it, every page.
   */
  nonZeroPfns?(memory: Uint8Array, opts: { pageSize: number }): Uint32Array;
  /** One frame of per-page deltas against `shadow`; updates `shadow` to `pages`. */
  encodePages(shadow: Uint8Array, pages: Uint8Array, pfns: Uint32Array, opts: { pageSize: number; threads?: number }): Promise<Uint8Array>;
  /** Validates the whole frame, then applies it to `replica` (all or nothing; RangeError). */
  applyPages(replica: Uint8Array, frame: Uint8Array, opts: { pageSize: number }): void;
  /**
   * Optional, with scatterPages: the pfns a frame writes (validating it). A backup saves those
   * pages before it applies a delta epoch, so that an epoch whose guest state fails its checks
   * after the apply can be taken back; without them it checks full epochs only.
   */
  inspectFrame?(frame: Uint8Array): { pfns: Uint32Array };
  /**
   * Optional, with scatterPages: applyPages that returns the pages it overwrote (one validation
   * instead of inspectFrame's and applyPages' two); preferred over inspectFrame when present.
   */
  applyPagesWithUndo?(replica: Uint8Array, frame: Uint8Array, opts: { pageSize: number; out?: Uint8Array }): { pfns: Uint32Array; pages: Uint8Array };
  /** Optional: the inverse of gatherPages. */
  scatterPages?(memory: Uint8Array, pfns: Uint32Array, pages: Uint8Array, opts: { pageSize: number }): void;
}

export type CreateGuest = (opts: GuestOptions) => Promise<Guest> | Guest;
export type RestoreGuest = (opts: RestoreOptions) => Promise<Guest> | Guest;
/**
 * Every check a restore makes of an image and CPU blob, without restoring (throws RangeError), and
 * where the state's output stands: `pending` records in the blob, `drained` = the next seq the
 * image's ring hands out, `outChain` = the chain of the last drained record; optionally `type`
 * (the blob's backend) and `final` (the final checksum once the workload has finished, else null).
 */
export type CheckGuestState = (
  memoryImage: Uint8Array,
  cpu: Uint8Array,
) => { type?: string; pending: number; drained: number; outChain: string; final?: string | null };
/** chain(prev 16 hex, data) -> 16 hex: XXH3-64 seed 0 of prev (8 bytes LE) || data. */
export type ChainHash = (prevHex: string, data: Uint8Array) => string;

type AnyModule = Record<string, unknown>;

async function loadRoot(): Promise<AnyModule> {
  return (await import('../index.js')) as AnyModule;
}

function need<T>(mod: AnyModule, name: string, what: string): T {
  const fn = mod[name];
  if (typeof fn !== 'function') throw new Error(`${what}: this build has no \`${name}\` export (the kernels/guest modules are missing)`);
  return fn as T;
}

/** The package's native kernels. */
export async function defaultKernels(): Promise<PageKernels> {
  const root = await loadRoot();
  const zeroPages = need<(d: Uint8Array, o: { pageSize: number }) => Uint8Array>(root, 'zeroPages', 'replication');
  const scanBitmap = need<(b: Uint8Array) => Uint32Array>(root, 'scanBitmap', 'replication');
  return {
    gatherPages: need(root, 'gatherPages', 'replication'),
    encodePages: need(root, 'encodePages', 'replication'),
    applyPages: need(root, 'applyPages', 'replication'),
    inspectFrame: need(root, 'inspectFrame', 'replication'),
    applyPagesWithUndo: need(root, 'applyPagesWithUndo', 'replication'),
    scatterPages: need(root, 'scatterPages', 'replication'),
    nonZeroPfns(memory, { pageSize }) {
      // zeroPages sets the bit of each all-zero page; flip the bits to list the others.
      const bits = zeroPages(memory, { pageSize });
      const pages = memory.length / pageSize;
      for (let i = 0; i < bits.length; i++) bits[i] = ~bits[i]! & 0xff;
      if (pages % 8) bits[bits.length - 1]! &= (1 << (pages % 8)) - 1;
      return scanBitmap(bits);
    },
  };
}

let backend: { create: CreateGuest; restore: RestoreGuest; check?: CheckGuestState } | null = null;

/**
 * Supplies the guest backend the CLI and failover use instead of the package's own (an embedder's
 * adapter for another hypervisor, or a test double). Pass null to go back to the built-in one.
 * With `check`, a backup also checks every epoch's state with it before acknowledging it.
 */
export function registerGuestBackend(b: { create: CreateGuest; restore: RestoreGuest; check?: CheckGuestState } | null): void {
  backend = b;
}

/** The check a backup runs on each epoch's state: the package's own guests', or the registered backend's (if any). */
export async function defaultCheckGuestState(): Promise<CheckGuestState | null> {
  if (backend) return backend.check ?? null;
  const mod = (await import('../guest/index.js')) as AnyModule;
  return need(mod, 'checkGuestState', 'backup');
}

export async function defaultCreateGuest(): Promise<CreateGuest> {
  if (backend) return backend.create;
  const mod = (await import('../index.js')) as AnyModule;
  return need(mod, 'createGuest', 'primary');
}

export async function defaultRestoreGuest(): Promise<RestoreGuest> {
  if (backend) return backend.restore;
  const mod = (await import('../index.js')) as AnyModule;
  return need(mod, 'restoreGuest', 'failover');
}

function chainFrom(xxh3: (buf: Uint8Array) => bigint): ChainHash {
  return (prevHex, data) => {
    const buf = Buffer.allocUnsafe(8 + data.length);
    buf.writeBigUInt64LE(BigInt('0x' + prevHex), 0);
    buf.set(data, 8);
    return xxh3(buf).toString(16).padStart(16, '0');
  };
}

/** XXH3-64 (seed 0) for the client's chain check, from the native kernels. */
export async function defaultChainHash(): Promise<ChainHash> {
  const root = await loadRoot();
  const xxh3 = need<(b: Uint8Array, seed?: bigint) => bigint>(root, 'xxh3', 'client --verify');
  return chainFrom((buf) => xxh3(buf, 0n));
}
