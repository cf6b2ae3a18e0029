/**
 * `understudy restore DIR CHECKPOINT --guest kvm|sim`: rebuilds a guest from a checkpoint's memory
 * and CPU state, runs it to the end, and prints `final <checksum>` as `understudy run` does.
 */
import { parse, CliError, checkpointArg } from '../util.js';
import { openStore, guests, guestType } from '../store-util.js';

export const summary = 'resume a guest from a checkpoint and run it to the end';
export const usage = `usage: understudy restore DIR CHECKPOINT [--guest kvm|sim|auto] [--json]

Reads CHECKPOINT (an id from \`understudy ls\`, or \`latest\`) from the store at DIR, builds a
guest from its memory and CPU state (--guest auto: kvm where it works, else sim), runs it to the
end and prints \`final <checksum>\`: the same line and value as an uninterrupted \`understudy run\`.
Checkpoints without CPU state (raw images, QEMU memory-only snapshots) cannot be resumed: use
\`understudy export\` for those.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse('restore', argv, { guest: { type: 'string' }, json: { type: 'boolean' } }, true);
  if (positionals.length !== 2) throw new CliError('restore: expected DIR CHECKPOINT; see `understudy restore --help`');
  const type = guestType('restore', values.guest as string | undefined);
  const name = checkpointArg('restore', positionals[1]!);
  const store = openStore('restore', positionals[0]);
  let image: { memory: Uint8Array; cpu: Uint8Array; id: string };
  try {
    let id: string;
    try {
      id = store.resolveId(name);
    } catch (err) {
      throw new CliError(`restore: ${(err as Error).message}`, 1);
    }
    const r = store.readMemory(id);
    image = { memory: r.memory, cpu: r.cpu, id };
  } finally {
    store.close();
  }
  if (image.cpu.byteLength === 0) {
    throw new CliError(`restore: checkpoint ${image.id} holds memory only (no CPU state), so it cannot be resumed; use \`understudy export\``, 1);
  }
  const { restoreGuest } = await guests();
  let guest: Awaited<ReturnType<typeof restoreGuest>>;
  try {
    guest = await restoreGuest({ type, memoryImage: image.memory, cpu: image.cpu });
  } catch (err) {
    // The library names its own arguments (`cpu`, `memoryImage`); say which checkpoint it was.
    if (!(err instanceof RangeError || err instanceof TypeError)) throw err;
    const msg = err.message.replace(/^`cpu`/, 'its CPU state').replace(/^`memoryImage`/, 'its memory');
    throw new CliError(`restore: checkpoint ${image.id} cannot be resumed${type === 'auto' ? '' : ` on --guest ${type}`}: ${msg}`, 1);
  }
  process.stderr.write(`restored checkpoint ${image.id} into a ${guest.type} guest (${guest.pageCount} pages, ${guest.vcpus} vCPU(s))\n`);
  const drain = setInterval(() => guest.takeOutput(), 50);
  try {
    guest.start();
    const result = await guest.wait();
    guest.takeOutput();
    if (values.json) process.stdout.write(JSON.stringify({ checkpoint: image.id, guest: guest.type, final: result.final }) + '\n');
    else process.stdout.write(`final ${result.final}\n`);
    return 0;
  } finally {
    clearInterval(drain);
    await guest.close();
  }
}
