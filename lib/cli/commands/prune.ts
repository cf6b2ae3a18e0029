/**
 * `understudy prune DIR --keep N | --older-than AGE`: deletes old checkpoints, then compacts.
 */
import { parse, intOption, durationOption, CliError, exclusive, positionalArgs } from '../util.js';
import { openStore, bytes } from '../store-util.js';

export const summary = 'delete old checkpoints and reclaim their space';
export const usage = `usage: understudy prune DIR (--keep N | --older-than AGE) [--no-compact]

Deletes all but the newest N checkpoints (--keep), or those older than AGE (--older-than 30m,
2h, 1d, 1s, 500ms; a bare number is milliseconds). Kept checkpoints never lose a page: those
that were stored as changes against a deleted one are first rewritten with their whole page map. Then the store is compacted (see
\`understudy compact\`) unless --no-compact. Safe to interrupt at any point.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse('prune', argv, {
    keep: { type: 'string' }, 'older-than': { type: 'string' }, 'no-compact': { type: 'boolean' },
  }, true);
  const [dir] = positionalArgs('prune', positionals, ['DIR']);
  if (values.keep === undefined && values['older-than'] === undefined) throw new CliError('prune: --keep N or --older-than AGE is required');
  exclusive('prune', values, 'keep', 'older-than', '--keep N', '--older-than AGE');
  const keep = values.keep === undefined ? undefined : intOption('prune', 'keep', values.keep as string, 0, 0);
  const olderThanMs = values['older-than'] === undefined ? undefined : durationOption('prune', 'older-than', values['older-than'] as string, 0);
  const store = openStore('prune', dir);
  try {
    const r = store.prune({ keep, olderThanMs });
    process.stdout.write(`removed ${r.removed.length} checkpoint(s)${r.removed.length ? `: ${r.removed.join(' ')}` : ''}; rewrote ${r.rewritten.length} manifest(s) whole\n`);
    if (!values['no-compact']) {
      const c = store.compact();
      process.stdout.write(`compacted: ${bytes(c.bytesBefore)} in ${c.segmentsBefore} segment(s) -> ${bytes(c.bytesAfter)} in ${c.segmentsAfter}\n`);
    }
    return 0;
  } finally {
    store.close();
  }
}
