/**
 * `understudy checkpoint --guest kvm|sim --workload NAME --to DIR --every 1s`: runs a guest and
 * writes an incremental chain of checkpoints of it into a store, with a progress line.
 */
import { parse, intOption, durationOption, Progress, CliError, exclusive } from '../util.js';
import { openStore, guests, guestType, workloadName, bytes, orBitmap } from '../store-util.js';
import { memoryOption } from '../guest-options.js';
import { CheckpointError } from '../../store/index.js';
import * as root from '../../index.js';

export const summary = 'run a guest and write an incremental chain of checkpoints of it';
export const usage = `usage: understudy checkpoint --workload NAME --to DIR [--every 1s] [--guest kvm|sim|auto]
                           [--seed N] [--steps N] [--memory MiB] [--vcpus N]
                           [--namespace NAME | --shared] [--json]

Runs the workload (as \`understudy run\` does) and every --every (default 1s; also 500ms, 2m;
a bare number is milliseconds) pauses it, takes its dirty pages and CPU state, resumes it, and
commits a checkpoint into the store at DIR (created if missing): the first holds every non-zero
page, each later one only what changed (deltas against the previous version where smaller, zstd
where it pays). Identical pages are stored once within the namespace (default "default";
--shared uses the namespace "shared"). A checkpoint that fails (disk full, I/O error) is
reported and its pages are carried into the next one; earlier checkpoints are never touched,
and the exit status is 1 if the last attempt failed. The first checkpoint is taken as the guest
starts, so even a short workload leaves one. Prints \`final <checksum>\` when the workload ends.`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parse('checkpoint', argv, {
    guest: { type: 'string' }, workload: { type: 'string' }, to: { type: 'string' }, every: { type: 'string' },
    seed: { type: 'string' }, steps: { type: 'string' }, memory: { type: 'string' }, vcpus: { type: 'string' },
    namespace: { type: 'string' }, shared: { type: 'boolean' }, json: { type: 'boolean' },
  });
  // As in snapshot: --shared would silently override the tenant's own namespace.
  exclusive('checkpoint', values, 'namespace', 'shared', '--namespace NAME', '--shared');
  const type = guestType('checkpoint', values.guest as string | undefined);
  const workload = workloadName('checkpoint', values.workload as string | undefined);
  if (!values.to) throw new CliError('checkpoint: --to DIR is required');
  const everyMs = durationOption('checkpoint', 'every', values.every as string | undefined, 1000);
  const seed = intOption('checkpoint', 'seed', values.seed as string | undefined, 1, 0);
  const steps = values.steps === undefined ? undefined : intOption('checkpoint', 'steps', values.steps as string, 0, 1);
  const memoryMiB = memoryOption('checkpoint', values.memory as string | undefined, 64, type);
  const vcpus = intOption('checkpoint', 'vcpus', values.vcpus as string | undefined, 1, 1, 16);
  // The guest first: a guest that cannot be made (too little memory, no /dev/kvm) leaves no
  // store behind it locked.
  const { createGuest } = await guests();
  // Not started yet: the first checkpoint is of its starting state, however short the workload.
  const guest = await createGuest({ type, workload, seed, ...(steps !== undefined ? { steps } : {}), memoryMiB, vcpus, start: false });
  let store: ReturnType<typeof openStore>;
  let writer: ReturnType<ReturnType<typeof openStore>['writer']>;
  try {
    store = openStore('checkpoint', values.to as string, true);
    try {
      writer = store.writer({ namespace: values.namespace as string | undefined, shared: values.shared === true });
    } catch (err) {
      store.close();
      throw new CliError(`checkpoint: ${(err as Error).message}`, err instanceof RangeError ? 2 : 1);
    }
  } catch (err) {
    await guest.close();
    throw err;
  }
  const k = root as unknown as { scanBitmap(b: Uint8Array): Uint32Array; gatherPages(m: Uint8Array, p: Uint32Array, o: { pageSize: number }): Uint8Array };
  const progress = new Progress();
  const ps = guest.pageSize;
  const guestMeta = { type: guest.type, workload, seed, steps: steps ?? null, memoryMiB, vcpus };
  let pending: Uint8Array | null = null;
  let count = 0, failures = 0, stored = 0, raw = 0, lastLine = '';
  let finished = false;
  const done = guest.wait().finally(() => { finished = true; });
  done.catch(() => {});
  try {
    // The first checkpoint is of the guest before it starts (its starting state, every non-zero
    // page), so a run always leaves one to restore, however short the workload; the guest starts
    // right after it, and then one is taken every --every.
    for (let started = false; ; started = true) {
      if (started) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise((r) => { timer = setTimeout(r, everyMs); }), done.catch(() => {})]);
        clearTimeout(timer); // the workload ended first: do not keep the process alive until the tick
        if (finished) break;
      }
      await guest.pause();
      if (finished || guest.result) { guest.resume(); break; }
      const log = guest.takeDirty();
      guest.takeOutput();
      const cpu = guest.saveCpu();
      let bitmap = log.bitmap;
      let pfns = log.pfns;
      if (pending) {
        bitmap = bitmap.slice();
        orBitmap(bitmap, pending);
        pfns = k.scanBitmap(bitmap);
      }
      const view = guest.memory.view;
      const first = writer.head === null;
      const memory = first ? view.slice() : view;
      const pages = first ? undefined : k.gatherPages(view, pfns, { pageSize: ps });
      guest.resume();
      if (!started) guest.start();
      try {
        const info = writer.commit(memory, { dirty: pfns, ...(pages ? { pages } : {}), cpu, guest: guestMeta });
        pending = null;
        count++;
        stored += info.bytes;
        raw += info.stats.rawDirtyBytes;
        lastLine = `checkpoint ${info.id}: ${info.stats.dirtyPages} dirty pages (${bytes(info.stats.rawDirtyBytes)}) -> ${bytes(info.bytes)} ` +
          `[${info.stats.deltaPages} delta, ${info.stats.dedupPages} dedup, ${info.stats.zeroPages} zero]; ${count} checkpoints, ${bytes(stored)} total`;
        progress.update(lastLine, true);
      } catch (err) {
        if (!(err instanceof CheckpointError)) throw err;
        failures++;
        pending = bitmap;
        progress.update(`checkpoint failed: ${err.message}; its ${pfns.length} pages go into the next attempt`, true);
      }
    }
    const result = await done;
    progress.done();
    if (values.json) {
      process.stdout.write(JSON.stringify({ checkpoints: count, failures, storedBytes: stored, rawDirtyBytes: raw, final: result.final }) + '\n');
    } else {
      process.stderr.write(`${count} checkpoint(s) in ${values.to}: ${bytes(stored)} stored for ${bytes(raw)} of dirty pages${failures ? `; ${failures} failed attempt(s)` : ''}\n`);
      process.stdout.write(`final ${result.final}\n`);
    }
    // Failed attempts whose pages a later checkpoint stored cost nothing; a failed last attempt
    // leaves the store behind the guest, and that is a failure of the run.
    if (pending) process.stderr.write(`checkpoint: the last attempt failed, so the newest checkpoint in ${values.to} is older than the guest's last pause\n`);
    return pending || (failures && count === 0) ? 1 : 0;
  } finally {
    writer.close();
    store.close();
    await guest.close();
  }
}
