/**
 * `understudy snapshot --to DIR`: snapshots several guests at one instant (--vms N), raw memory
 * images (--image FILE ...), or a running QEMU VM's memory (--qemu SOCKET --mem-path FILE) into
 * one store whose identical pages are stored once; reports stored bytes against the raw images and
 * against one store per VM.
 */
import fs from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parse, intOption, durationOption, CliError, exclusive } from '../util.js';
import { memoryOption } from '../guest-options.js';
import { openStore, guests, guestType, bytes, WORKLOADS } from '../store-util.js';

import { captureQemu } from '../../guest/qemu.js';
import { mapFile, type GuestMemory } from '../../kernels/memory.js';
import { Store, changedPages, type CheckpointInfo } from '../../store/index.js';

export const summary = 'snapshot several guests, raw images or a QEMU VM into one deduplicated store';
export const usage = `usage: understudy snapshot --to DIR --vms N [--workload NAME[,NAME...]] [--seed N] [--steps N]
                         [--memory MiB] [--vcpus N] [--guest kvm|sim|auto] [--after 200ms]
       understudy snapshot --to DIR --image FILE [--image FILE ...]
       understudy snapshot --to DIR --qemu QMP_SOCKET --mem-path FILE
  common: [--namespace NAME | --shared] [--no-compare] [--json]

--vms: starts N guests (seeds S, S+1, ... from --seed S; workloads taken in turn from the list,
  default uniform), lets them run for --after, pauses all of them at one instant, stores each
  one's memory and CPU state as a checkpoint (restorable with \`understudy restore\`), and stops them.
--image: stores raw memory images (dumps from elsewhere) as stopped guests (memory only);
  \`understudy export\` gives each back byte for byte.
--qemu: stops the QEMU VM through its QMP socket, copies its RAM from the memory-backend-file
  (QEMU must run with -object memory-backend-file,id=mem,size=...,mem-path=FILE,share=on
  -machine memory-backend=mem), continues it, and stores the memory. Memory only: QEMU's device
  state is not captured, so such a checkpoint cannot be resumed by understudy. A later snapshot of
  the same mem-path stores only the pages whose fingerprints changed since the previous one.
Pages identical across the snapshots are stored once per namespace (default "default";
--shared uses "shared"); the first guest is stored whole, and a page of another guest that
differs from the first guest's page at the same address is stored as a delta against it where
that is smaller (such checkpoints name the first one as parent). Unless --no-compare, the same images are also written to one temporary
store per VM, to report what deduplication across VMs saved.`;

interface Item {
  label: string;
  memory: Uint8Array;
  cpu: Uint8Array;
  guest: Record<string, unknown>;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse('snapshot', argv, {
    to: { type: 'string' }, vms: { type: 'string' }, workload: { type: 'string' }, seed: { type: 'string' },
    steps: { type: 'string' }, memory: { type: 'string' }, vcpus: { type: 'string' }, guest: { type: 'string' },
    after: { type: 'string' }, image: { type: 'string', multiple: true }, qemu: { type: 'string' },
    'mem-path': { type: 'string' }, namespace: { type: 'string' }, shared: { type: 'boolean' },
    'no-compare': { type: 'boolean' }, json: { type: 'boolean' },
  });
  const dir = values.to as string | undefined;
  if (!dir) throw new CliError('snapshot: --to DIR is required');
  const images = (values.image as string[] | undefined) ?? [];
  const modes = [values.vms !== undefined, images.length > 0, values.qemu !== undefined].filter(Boolean).length;
  if (modes !== 1) throw new CliError('snapshot: give exactly one of --vms N, --image FILE..., --qemu SOCKET; see `understudy snapshot --help`');
  exclusive('snapshot', values, 'namespace', 'shared', '--namespace NAME', '--shared');
  const ns = { namespace: values.namespace as string | undefined, shared: values.shared === true };
  if (values.qemu !== undefined) return snapshotQemu(dir, values.qemu as string, values['mem-path'] as string | undefined, ns, values.json === true);

  const mapped: GuestMemory[] = [];
  try {
    return await snapshotGuests(values, dir, images, ns, mapped);
  } finally {
    for (const m of mapped) m.close();
  }
}

async function snapshotGuests(
  values: Record<string, unknown>,
  dir: string,
  images: string[],
  ns: { namespace?: string; shared: boolean },
  mapped: GuestMemory[],
): Promise<number> {
  const t0 = performance.now();
  const items: Item[] = [];
  let pageSize = 4096;
  if (images.length) {
    for (const file of images) {
      let st: fs.Stats;
      try {
        st = fs.statSync(file);
      } catch {
        throw new CliError(`snapshot: --image ${file}: no such file`, 1);
      }
      if (st.size === 0 || st.size % pageSize !== 0) throw new CliError(`snapshot: --image ${file}: size ${st.size} is not a non-zero multiple of the page size ${pageSize}`, 1);
      // Mapped, not read: an image of any size this Node.js can view (4 GiB on Node 20), paged in
      // as the store reads it; a private mapping, so nothing can reach the file.
      let m: GuestMemory;
      try {
        m = mapFile(file);
      } catch (err) {
        throw new CliError(`snapshot: --image ${file}: ${(err as Error).message}`, err instanceof RangeError ? 2 : 1);
      }
      mapped.push(m);
      items.push({ label: file, memory: m.view, cpu: new Uint8Array(0), guest: { type: 'image', file: resolve(file) } });
    }
  } else {
    const n = intOption('snapshot', 'vms', values.vms as string, 1, 1, 64);
    const list = ((values.workload as string | undefined) ?? 'uniform').split(',');
    for (const w of list) if (!(WORKLOADS as readonly string[]).includes(w)) throw new CliError(`snapshot: --workload must be among ${WORKLOADS.join(', ')}, got ${JSON.stringify(w)}`);
    const seed = intOption('snapshot', 'seed', values.seed as string | undefined, 1, 0);
    const steps = values.steps === undefined ? undefined : intOption('snapshot', 'steps', values.steps as string, 0, 1);
    const type = guestType('snapshot', values.guest as string | undefined);
    const memoryMiB = memoryOption('snapshot', values.memory as string | undefined, 64, type);
    const vcpus = intOption('snapshot', 'vcpus', values.vcpus as string | undefined, 1, 1, 16);
    const afterMs = durationOption('snapshot', 'after', values.after as string | undefined, 200);
    const { createGuest } = await guests();
    const gs = [];
    try {
      for (let i = 0; i < n; i++) {
        const workload = list[i % list.length] as (typeof WORKLOADS)[number];
        gs.push({ workload, seed: seed + i, g: await createGuest({ type, workload, seed: seed + i, ...(steps !== undefined ? { steps } : {}), memoryMiB, vcpus }) });
      }
      for (const { g } of gs) g.start();
      await new Promise((r) => setTimeout(r, afterMs));
      // One instant for the whole group: pause all, then capture all.
      await Promise.all(gs.map(({ g }) => g.pause()));
      for (const { g, workload, seed: s } of gs) {
        g.takeDirty();
        g.takeOutput();
        pageSize = g.pageSize;
        items.push({ label: `vm${items.length} ${workload} seed ${s}`, memory: g.memory.view.slice(), cpu: g.saveCpu(), guest: { type: g.type, workload, seed: s, steps: steps ?? null, memoryMiB, vcpus } });
      }
    } finally {
      await Promise.all(gs.map(({ g }) => g.close()));
    }
  }
  const captureMs = performance.now() - t0;

  const store = openStore('snapshot', dir, true);
  const infos: CheckpointInfo[] = [];
  const t1 = performance.now();
  try {
    // The first guest is stored whole; the others as deltas against its pages where smaller.
    const first = store.writer({ ...ns, incremental: true });
    for (const it of items) {
      const sameSize = first.baseline !== null && first.baseline.byteLength === it.memory.byteLength;
      const w = infos.length === 0 ? first : sameSize ? first.sibling() : store.writer({ ...ns, incremental: false });
      infos.push(w.commit(it.memory, { cpu: it.cpu, label: it.label, guest: it.guest }));
      if (w !== first) w.close();
    }
    first.close();
  } finally {
    store.close();
  }
  const storeMs = performance.now() - t1;
  const raw = items.reduce((a, it) => a + it.memory.byteLength, 0);
  const nonZero = infos.reduce((a, i) => a + (i.stats.dirtyPages - i.stats.zeroPages) * i.pageSize, 0);
  const stored = infos.reduce((a, i) => a + i.bytes, 0);
  let perVm: { bytes: number; ms: number } | null = null;
  if (!values['no-compare']) {
    const tmp = fs.mkdtempSync(join(os.tmpdir(), 'understudy-pervm-'));
    try {
      let total = 0;
      const t2 = performance.now();
      items.forEach((it, i) => {
        const s = Store.open(join(tmp, String(i)), { create: true, pageSize });
        const w = s.writer({ incremental: false });
        total += w.commit(it.memory, { cpu: it.cpu }).bytes;
        w.close();
        s.close();
      });
      perVm = { bytes: total, ms: performance.now() - t2 };
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  const report = {
    checkpoints: infos.map((i) => ({ id: i.id, label: i.label, bytes: i.bytes, dedupPages: i.stats.dedupPages, zeroPages: i.stats.zeroPages })),
    rawBytes: raw, nonZeroBytes: nonZero, storedBytes: stored,
    perVmStoreBytes: perVm?.bytes ?? null, captureMs: +captureMs.toFixed(1), storeMs: +storeMs.toFixed(1), perVmStoreMs: perVm ? +perVm.ms.toFixed(1) : null,
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(report) + '\n');
  } else {
    for (const i of infos) process.stdout.write(`checkpoint ${i.id}: ${i.label}: ${bytes(i.bytes)} (${i.stats.dedupPages} pages deduplicated, ${i.stats.zeroPages} zero)\n`);
    process.stdout.write(`stored ${bytes(stored)} for ${items.length} guest(s): ${((100 * stored) / raw).toFixed(1)}% of ${bytes(raw)} raw, ` +
      `${((100 * stored) / Math.max(1, nonZero)).toFixed(1)}% of ${bytes(nonZero)} non-zero` +
      (perVm ? `, ${((100 * stored) / Math.max(1, perVm.bytes)).toFixed(1)}% of ${bytes(perVm.bytes)} in ${items.length} per-VM stores` : '') +
      `; ${storeMs.toFixed(0)} ms${perVm ? ` (per-VM stores: ${perVm.ms.toFixed(0)} ms)` : ''}\n`);
  }
  return 0;
}

async function snapshotQemu(dir: string, qmp: string, memPath: string | undefined, ns: { namespace?: string; shared: boolean }, json: boolean): Promise<number> {
  if (!memPath) throw new CliError('snapshot: --qemu needs --mem-path FILE (the memory-backend-file of the VM)');
  if (!fs.existsSync(memPath)) throw new CliError(`snapshot: --mem-path ${memPath}: no such file`);
  const abs = fs.realpathSync(memPath);
  const store = openStore('snapshot', dir, true);
  try {
    // The previous snapshot of this VM (same mem-path) is the parent: only changed pages are stored.
    const { checkpoints } = store.list();
    const prev = [...checkpoints].reverse().find((c) => c.guest && c.guest.type === 'qemu' && c.guest.memPath === abs);
    let cap;
    try {
      cap = await captureQemu({ qmp, memPath: abs });
    } catch (err) {
      // A RangeError is about the arguments (a --mem-path that is not this VM's memory): usage.
      if (err instanceof RangeError) throw new CliError(`snapshot: ${err.message.replace(`\`memPath\` ${abs}`, `--mem-path ${memPath}`)}`, 2);
      throw new CliError(`snapshot: ${(err as Error).message}`, 1);
    }
    const w = store.writer({ ...ns, parent: prev ? prev.id : null });
    let dirty: Uint32Array | null = null;
    if (w.baseline && w.baseline.byteLength === cap.memory.byteLength) dirty = changedPages(w.baseline, cap.memory, store.pageSize);
    else if (w.baseline) throw new CliError(`snapshot: the VM's memory is ${cap.memory.byteLength} bytes but its previous snapshot ${prev!.id} had ${w.baseline.byteLength}`, 1);
    const info = w.commit(cap.memory, { dirty, label: `qemu ${abs}`, guest: { type: 'qemu', memPath: abs, qmp: resolve(qmp), memoryOnly: true } });
    w.close();
    if (json) {
      process.stdout.write(JSON.stringify({ id: info.id, parent: info.parent, bytes: info.bytes, changedPages: dirty ? dirty.length : null, stoppedMs: +cap.stoppedMs.toFixed(1), rawBytes: cap.memory.byteLength }) + '\n');
    } else {
      process.stdout.write(`checkpoint ${info.id}${info.parent ? ` (parent ${info.parent}, ${dirty!.length} changed pages)` : ''}: ${bytes(info.bytes)} stored for ${bytes(cap.memory.byteLength)} of guest RAM; VM stopped ${cap.stoppedMs.toFixed(1)} ms (memory only: device state is QEMU's)\n`);
    }
    return 0;
  } finally {
    store.close();
  }
}
