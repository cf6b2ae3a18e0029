/**
 * `understudy keygen`: writes a replication key (32 random bytes as hex), mode 0600.
 */
import { generateKey, writeKeyFile } from '../../replication/auth.js';
import { CliError, parse } from '../util.js';

export const summary = 'write a pre-shared key for primary and backup';
export const usage = `usage: understudy keygen [--out FILE]

Writes 32 random bytes as 64 hex digits to FILE (mode 0600; an existing file is not
overwritten), or to stdout without --out. Give the same file to \`primary --key\` and
\`backup --key\`.`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parse('keygen', argv, { out: { type: 'string' } });
  const out = values.out as string | undefined;
  if (!out) {
    process.stdout.write(generateKey().toString('hex') + '\n');
    return 0;
  }
  try {
    writeKeyFile(out);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST') throw new CliError(`keygen: ${out} already exists; not overwriting a key`, 1);
    throw err;
  }
  process.stderr.write(`understudy: wrote a key to ${out} (mode 0600)\n`);
  return 0;
}
