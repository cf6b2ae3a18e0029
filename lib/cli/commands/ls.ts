/**
 * `understudy ls DIR [--json]`: the checkpoints of a store in creation order, with their chains,
 * sizes and dedup ratios.
 */
import { parse, positionalArgs } from '../util.js';
import { openStore, bytes } from '../store-util.js';

export const summary = 'list the checkpoints of a store';
export const usage = `usage: understudy ls DIR [--json]

Lists the checkpoints in DIR in creation order: id, parent, when, namespace, label, pages, bytes
stored for it, and how its dirty pages were stored (new records, deltas, deduplicated, zero).
--json prints a JSON array of objects with id, parent, bytes, created, namespace, label, full,
pageCount, pageSize, manifestBytes, stats (the same order).`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse('ls', argv, { json: { type: 'boolean' } }, true);
  const [dir] = positionalArgs('ls', positionals, ['DIR']);
  const store = openStore('ls', dir);
  try {
    const { checkpoints, problems, ignored } = store.list();
    if (values.json) {
      process.stdout.write(JSON.stringify(checkpoints.map((c) => ({ id: c.id, parent: c.parent, bytes: c.bytes, created: c.created, namespace: c.namespace, label: c.label, full: c.full, pageCount: c.pageCount, pageSize: c.pageSize, manifestBytes: c.manifestBytes, stats: c.stats }))) + '\n');
    } else {
      const rows = [['id', 'parent', 'created', 'namespace', 'label', 'pages', 'dirty', 'stored', 'vs dirty', 'new/delta/dedup/zero']];
      for (const c of checkpoints) {
        const s = c.stats;
        rows.push([c.id, c.parent ?? '-', c.created, c.namespace, c.label ?? '-', String(c.pageCount), String(s.dirtyPages), bytes(c.bytes),
          s.rawDirtyBytes ? `${((100 * c.bytes) / s.rawDirtyBytes).toFixed(1)}%` : '-',
          `${s.newPages - s.deltaPages}/${s.deltaPages}/${s.dedupPages}/${s.zeroPages}`]);
      }
      const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      process.stdout.write(rows.map((r) => r.map((x, i) => x.padEnd(w[i]!)).join('  ').trimEnd()).join('\n') + '\n');
      const total = checkpoints.reduce((a, c) => a + c.bytes, 0);
      const raw = checkpoints.reduce((a, c) => a + c.stats.rawDirtyBytes, 0);
      if (checkpoints.length) process.stdout.write(`${checkpoints.length} checkpoint(s), ${bytes(total)} stored for ${bytes(raw)} of dirty pages (${((100 * total) / Math.max(1, raw)).toFixed(1)}%)\n`);
    }
    for (const g of ignored) process.stderr.write(`understudy: ls: ignored ${g.file}: ${g.problem}\n`);
    for (const p of problems) process.stderr.write(`understudy: ls: unreadable manifest ${p.file}: ${p.problem}\n`);
    return problems.length ? 1 : 0;
  } finally {
    store.close();
  }
}
