/**
 * `understudy export DIR CHECKPOINT --out FILE`: writes a checkpoint's memory back as a raw image,
 * byte-identical to what was stored.
 */
import fs from 'node:fs';
import { parse, CliError, checkpointArg } from '../util.js';
import { openStore, bytes } from '../store-util.js';

export const summary = "write a checkpoint's memory as a raw image file";
export const usage = `usage: understudy export DIR CHECKPOINT --out FILE

Writes the guest memory of CHECKPOINT (an id from \`understudy ls\`, or \`latest\`) in the store at
DIR to FILE as a raw image (page 0 first, zero pages included), byte-identical to what was
stored. The file appears whole or not at all (written to FILE.tmp, fsynced, renamed; FILE.tmp is
removed if anything fails).`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse('export', argv, { out: { type: 'string', short: 'o' } }, true);
  const out = values.out as string | undefined;
  if (!out) throw new CliError('export: --out FILE is required');
  if (positionals.length !== 2) throw new CliError('export: expected DIR CHECKPOINT; see `understudy export --help`');
  const name = checkpointArg('export', positionals[1]!);
  // A directory cannot take the image: say so before writing it.
  let isDirectory = false;
  try {
    isDirectory = fs.statSync(out).isDirectory();
  } catch {
    // absent (the usual case) or unreachable: writing it will say why
  }
  if (isDirectory) throw new CliError(`export: --out ${out} is a directory`, 1);
  const store = openStore('export', positionals[0]);
  try {
    let id: string;
    try {
      id = store.resolveId(name);
    } catch (err) {
      throw new CliError(`export: ${(err as Error).message}`, 1);
    }
    const { memory } = store.readMemory(id);
    writeWhole(out, memory);
    process.stderr.write(`exported checkpoint ${id}: ${bytes(memory.byteLength)} to ${out}\n`);
    return 0;
  } finally {
    store.close();
  }
}

/** Writes FILE.tmp, fsyncs it and renames it to FILE; on any failure FILE.tmp is removed. */
function writeWhole(out: string, memory: Uint8Array): void {
  const tmp = `${out}.tmp`;
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'w');
  } catch (err) {
    throw new CliError(`export: --out ${out}: cannot create ${tmp}: ${reason(err)}`, 1);
  }
  try {
    try {
      let o = 0;
      while (o < memory.byteLength) o += fs.writeSync(fd, memory, o, Math.min(memory.byteLength - o, 1 << 30));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, out);
  } catch (err) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw new CliError(`export: --out ${out}: ${reason(err)}`, 1);
  }
}

/** A system error without the paths Node appends ("EISDIR: illegal operation on a directory"). */
function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code && e.syscall ? e.message.replace(/, \w+ '.*$/s, '') : e.message;
}
