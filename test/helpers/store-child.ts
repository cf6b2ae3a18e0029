/**
 * Test-only child process for crash tests (killed with SIGKILL at random instants).
 *   write DIR SEED     commits checkpoints forever; after each prints "committed <id> <sha256>"
 *   gc DIR KEEP        prune({keep: KEEP}) then compact(); prints "done"
 */
import { createHash, randomFillSync } from 'node:crypto';
import { Store } from '../../lib/store/index.js';
import { rng, makeImage } from './images.js';

const [mode, dir, arg] = process.argv.slice(2);
const PS = 4096;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

if (mode === 'write') {
  const r = rng(Number(arg));
  const img = makeImage(r, 2048, PS);
  // Small write chunks: records reach the file as they are encoded, so kills leave torn tails.
  const s = Store.open(dir!, { create: true, segmentBytes: 4 << 20, writeBufferBytes: 65536 });
  const ids = s.ids();
  const w = s.writer({ parent: ids.length ? ids[ids.length - 1]! : null });
  if (ids.length) img.set(s.readMemory(ids[ids.length - 1]!).memory);
  process.stdout.write('ready\n');
  // Mutations are cheap (randomFillSync, a few words) so that a kill mostly lands inside commit().
  const pages = img.byteLength / PS;
  for (let c = 0; ; c++) {
    const set = new Set<number>();
    while (set.size < 1000) set.add(Math.floor(r() * pages));
    const dirty = Uint32Array.from([...set].sort((a, b) => a - b));
    for (const p of dirty) {
      if (c % 2) randomFillSync(img, p * PS, PS);
      else randomFillSync(img, p * PS + Math.floor(r() * 500) * 8, 8);
    }
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
