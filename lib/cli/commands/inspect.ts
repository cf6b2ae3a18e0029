/**
 * `understudy inspect DIR CHECKPOINT [--json]`: one checkpoint in detail: its chain, metadata,
 * CPU state size, and how its pages are stored.
 */
import { parse, CliError, checkpointArg } from '../util.js';
import { openStore, bytes } from '../store-util.js';

export const summary = 'show one checkpoint in detail';
export const usage = `usage: understudy inspect DIR CHECKPOINT [--json]

Shows CHECKPOINT (an id, or \`latest\`): parent chain, creation time, namespace, guest, CPU state
size, stored bytes, and how its pages are held (zero, own records, shared with other checkpoints).`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse('inspect', argv, { json: { type: 'boolean' } }, true);
  if (positionals.length !== 2) throw new CliError('inspect: expected DIR CHECKPOINT; see `understudy inspect --help`');
  const name = checkpointArg('inspect', positionals[1]!);
  const store = openStore('inspect', positionals[0]);
  try {
    let id: string;
    try {
      id = store.resolveId(name);
    } catch (err) {
      throw new CliError(`inspect: ${(err as Error).message}`, 1);
    }
    const info = store.info(id);
    const map = store.pageMap(id);
    let present = 0;
    for (let i = 0; i < map.pageCount; i++) if (map.segments[i] !== 0) present++;
    const chain: string[] = [];
    for (let p = info.parent; p !== null && chain.length < 10000;) {
      chain.push(p);
      try {
        p = store.info(p).parent;
      } catch {
        chain.push('(pruned)');
        break;
      }
    }
    const detail = { ...info, chain, presentPages: present, zeroPagesInImage: map.pageCount - present, cpuBytes: map.cpu.byteLength };
    if (values.json) {
      process.stdout.write(JSON.stringify(detail) + '\n');
      return 0;
    }
    const s = info.stats;
    const lines = [
      `checkpoint ${info.id}${info.label ? ` (${info.label})` : ''}`,
      `  created     ${info.created}`,
      `  parent      ${info.parent ?? '-'}${chain.length ? `  (chain: ${chain.join(' <- ')})` : ''}`,
      `  namespace   ${info.namespace}`,
      `  guest       ${info.guest ? JSON.stringify(info.guest) : '-'}`,
      `  memory      ${map.pageCount} pages of ${info.pageSize} B (${bytes(map.pageCount * info.pageSize)}), ${present} non-zero`,
      `  cpu state   ${map.cpu.byteLength ? `${map.cpu.byteLength} B` : 'none (memory-only checkpoint)'}`,
      `  manifest    ${info.full ? 'whole page map' : 'changes against the parent'}, ${bytes(info.manifestBytes)}`,
      `  dirty       ${s.dirtyPages} pages (${bytes(s.rawDirtyBytes)}): ${s.newPages - s.deltaPages} new, ${s.deltaPages} delta, ${s.dedupPages} deduplicated, ${s.zeroPages} zero, ${s.unchangedPages} unchanged`,
      `  stored      ${bytes(info.bytes)} (${s.rawDirtyBytes ? ((100 * info.bytes) / s.rawDirtyBytes).toFixed(2) : '-'}% of the dirty pages)`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  } finally {
    store.close();
  }
}
