/**
 * The checkpoint store on raw memory images: round trips, incremental chains with deltas, dedup
 * scoped to namespaces, a crafted fingerprint collision, corruption (bit flips, truncation) of
 * segments and manifests, prune and compact.
 */
import { describe, expect, it, vi, beforeEach, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Store, StoreFormatError } from '../lib/store/index.js';
import { rng, makeImage, mutate } from './helpers/images.js';

vi.mock('../lib/store/kernels.js', async (orig) => (await import('./helpers/kernels-mock.js')).mockKernels(await orig()));

const PS = 4096;
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(join(os.tmpdir(), 'ustore-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

describe('store round trips', () => {
  it('stores an image and reads back exactly its bytes; zero pages cost nothing', () => {
    const img = makeImage(rng(1), 256, PS);
    const s = Store.open(dir, { create: true });
    const w = s.writer();
    const cpu = Uint8Array.from([1, 2, 3, 4, 5]);
    const info = w.commit(img, { cpu, label: 'vm0' });
    expect(info.id).toBe('1');
    expect(info.parent).toBe(null);
    expect(info.full).toBe(true);
    w.close();
    s.close();
    const r = Store.open(dir);
    const back = r.readMemory('1');
    expect(same(back.memory, img)).toBe(true);
    expect([...back.cpu]).toEqual([1, 2, 3, 4, 5]);
    const zeros = info.stats.zeroPages;
    expect(zeros).toBeGreaterThan(0);
    expect(info.stats.newPages + info.stats.dedupPages + zeros).toBe(256);
    const rep = r.verify();
    expect(rep.ok).toBe(true);
    expect(rep.checkpoints).toEqual([{ id: '1', ok: true, problems: [] }]);
    r.close();
  });

  it('an incremental chain stores deltas and every checkpoint restores to its own image', () => {
    const r = rng(2);
    let img = makeImage(r, 128, PS);
    const s = Store.open(dir, { create: true });
    const w = s.writer();
    const images: Uint8Array[] = [img.slice()];
    w.commit(img);
    const infos = [];
    for (let c = 0; c < 40; c++) {
      const dirty = mutate(r, img, PS, 10, 'sparse');
      infos.push(w.commit(img, { dirty }));
      images.push(img.slice());
    }
    w.close();
    // 40 commits: one full map at the 32nd, the others change-only
    expect(infos.filter((i) => i.full).length).toBe(1);
    const deltas = infos.reduce((a, i) => a + i.stats.deltaPages, 0);
    expect(deltas).toBeGreaterThan(200);
    for (let c = 0; c < images.length; c++) expect(same(s.readMemory(String(c + 1)).memory, images[c]!)).toBe(true);
    const raw = infos.reduce((a, i) => a + i.stats.rawDirtyBytes, 0);
    const stored = infos.reduce((a, i) => a + i.bytes, 0);
    expect(stored * 5).toBeLessThan(raw);
    expect(s.verify().ok).toBe(true);
    s.close();
  });
});
