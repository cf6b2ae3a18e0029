/**
 * `understudy export DIR CHECKPOINT --out FILE`: writes a checkpoint's memory back as a raw image,
 * byte-identical to what was stored.
 */
import fs from 'node:fs';
import { parse, CliError } from '../util.js';
import { openStore, bytes } from '../store-util.js';

export const summary = "write a checkpoint's memory as a raw image file";
export const usage = `usage: understudy export DIR CHECKPOINT --out FILE

Writes the guest memory of CHECKPOINT (an id from \`understudy ls\`, or \`latest\`) in the store at
DIR to FILE as a raw image (page 0 first, zero pages included), byte-identical to what was
stored. The file appears whole or not at all (written to FILE.tmp, fsynced, renamed).`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse('export', argv, { out: { type: 'string', short: 'o' } }, true);
  const out = values.out as string | undefined;
  if (!out) throw new CliError('export: --out FILE is required');
  if (positionals.length !== 2) throw new CliError('export: expected DIR CHECKPOINT; see `understudy export --help`');
  const store = openStore('export', positionals[0]);
  try {
    let id: string;
    try {
      id = store.resolveId(positionals[1]!);
    } catch (err) {
      throw new CliError(`export: ${(err as Error).message}`, 1);
    }
    const { memory } = store.readMemory(id);
    const tmp = `${out}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      let o = 0;
      while (o < memory.byteLength) o += fs.writeSync(fd, memory, o, Math.min(memory.byteLength - o, 1 << 30));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, out);
    process.stderr.write(`exported checkpoint ${id}: ${bytes(memory.byteLength)} to ${out}\n`);
    return 0;
  } finally {
    store.close();
  }
}
