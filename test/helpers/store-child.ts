/**
 * Test-only child process for crash tests (killed with SIGKILL at random instants).
 *   write DIR SEED     commits checkpoints forever; after each prints "committed <id> <sha256>"
 *   gc DIR KEEP        prune({keep: KEEP}) then compact(); prints "done"
 */
import { createHash } from 'node:crypto';
import { Store } from '../../lib/store/index.js';
import { rng, makeImage, mutate } from './images.js';

const [mode, dir, arg] = process.argv.slice(2);
const PS = 4096;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

if (mode === 'write') {
  const r = rng(Number(arg));
  const img = makeImage(r, 2048, PS);
  const s = Store.open(dir!, { create: true, segmentBytes: 4 << 20 });
  const ids = s.ids();
  const w = s.writer({ parent: ids.length ? ids[ids.length - 1]! : null });
  if (ids.length) img.set(s.readMemory(ids[ids.length - 1]!).memory);
  process.stdout.write('ready\n');
  for (let c = 0; ; c++) {
    const dirty = mutate(r, img, PS, 300, c % 2 ? 'sparse' : 'whole');
    const info = w.commit(img, { dirty, cpu: Uint8Array.of(c & 255) });
    process.stdout.write(`committed ${info.id} ${sha(img)}\n`);
  }
} else if (mode === 'gc') {
  const s = Store.open(dir!);
  process.stdout.write('ready\n');
  s.prune({ keep: Number(arg) });
  s.compact();
  process.stdout.write('done\n');
  s.close();
}
