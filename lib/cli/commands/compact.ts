/**
 * `understudy compact DIR`: copies the records kept checkpoints need into fresh segments and
 * deletes the old ones.
 */
import { parse, positionalArgs } from '../util.js';
import { openStore, bytes } from '../store-util.js';

export const summary = 'rewrite a store keeping only the records its checkpoints need';
export const usage = `usage: understudy compact DIR

Copies every record a checkpoint in DIR needs into new segment files, points each manifest at
them (one atomic rename each), and deletes the old segments. Safe to interrupt at any point: every
checkpoint stays readable, and leftovers are removed by the next compact.`;

export async function run(argv: string[]): Promise<number> {
  const { positionals } = parse('compact', argv, {}, true);
  const [dir] = positionalArgs('compact', positionals, ['DIR']);
  const store = openStore('compact', dir);
  try {
    const c = store.compact();
    process.stdout.write(`compacted: ${bytes(c.bytesBefore)} in ${c.segmentsBefore} segment(s) -> ${bytes(c.bytesAfter)} in ${c.segmentsAfter} (${c.records} records)\n`);
    return 0;
  } finally {
    store.close();
  }
}
