/**
 * `understudy verify DIR`: reads every segment and manifest, reports corrupt records and the
 * checkpoints they hurt. Exit status 0 when everything is intact, 1 otherwise.
 */
import { parse, positionalArgs } from '../util.js';
import { openStore, bytes } from '../store-util.js';

export const summary = 'check every record and manifest of a checkpoint store';
export const usage = `usage: understudy verify DIR [--json]

Reads everything in the store at DIR, checks every record's and manifest's checksum and every
checkpoint's page map, and reports corrupt records and the checkpoints they hurt.
Exit status: 0 all intact, 1 corruption found, 2 usage error.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse('verify', argv, { json: { type: 'boolean' } }, true);
  const [dir] = positionalArgs('verify', positionals, ['DIR']);
  const store = openStore('verify', dir);
  try {
    const r = store.verify();
    if (values.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return r.ok ? 0 : 1;
    }
    const out: string[] = [];
    out.push(`${r.segments} segment(s), ${r.records} record(s), ${bytes(r.bytesRead)} read`);
    for (const g of r.ignored) out.push(`ignored: ${g.file}: ${g.problem}`);
    for (const t of r.tornTails) out.push(`ignored: ${t.bytes} uncommitted byte(s) at the end of segment ${t.segment} (an interrupted checkpoint, or records of a checkpoint whose manifest is damaged)`);
    for (const c of r.corrupt) out.push(`corrupt: ${c.file}${c.offset !== null ? ` @${c.offset}` : ''}: ${c.problem}`);
    for (const c of r.checkpoints) {
      out.push(c.ok ? `checkpoint ${c.id}: ok` : `checkpoint ${c.id}: DAMAGED: ${c.problems.join('; ')}`);
    }
    const bad = r.checkpoints.filter((c) => !c.ok).length;
    out.push(r.ok ? `ok: ${r.checkpoints.length} checkpoint(s) intact` : `FAILED: ${r.corrupt.length} corrupt item(s), ${bad} checkpoint(s) damaged`);
    process.stdout.write(out.join('\n') + '\n');
    return r.ok ? 0 : 1;
  } finally {
    store.close();
  }
}
