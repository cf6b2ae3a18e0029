/**
 * The checkpoint store on raw memory images: round trips, incremental chains with deltas, dedup
 * scoped to namespaces, a crafted fingerprint collision, corruption (bit flips, truncation) of
 * segments and manifests, prune and compact.
 */
import { describe, expect, it, beforeEach, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { constants as bufferConstants } from 'node:buffer';
import { Store, StoreFormatError } from '../lib/store/index.js';
import { decodeManifestHead, decodeManifestMap, encodeManifest } from '../lib/store/format.js';
import { zstdCompress, zstdDecompressInto } from '../lib/store/codec.js';
import { rng, makeImage, mutate } from './helpers/images.js';

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
    // ids are strings, as list() gives them; a number is a type error that says so
    expect(() => r.readMemory(1 as unknown as string)).toThrow(new TypeError("`checkpoint` must be a checkpoint id string such as '12' (as list() gives them), got number 1"));
    expect(() => r.readMemory('01')).toThrow(new RangeError('`checkpoint` must be a checkpoint id (a decimal number), got "01"'));
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

function segFiles(d: string): string[] {
  return fs.readdirSync(join(d, 'segments')).sort().map((f) => join(d, 'segments', f));
}

describe('commit checks what the manifest will hold', () => {
  it('a CPU state or metadata past the readers\' limits is refused before anything is written, not committed unreadable', async () => {
    const { MAX_MANIFEST_CPU_BYTES, MAX_MANIFEST_META_BYTES } = await import('../lib/store/format.js');
    const img = makeImage(rng(913), 24, PS);
    const s = Store.open(dir, { create: true });
    const w = s.writer();
    w.commit(img, { cpu: Uint8Array.from([9, 8, 7]) });
    img[5 * PS + 17]! ^= 0x5a;
    const dirty = Uint32Array.of(5);
    expect(() => w.commit(img, { dirty, cpu: new Uint8Array(MAX_MANIFEST_CPU_BYTES + 1) })).toThrow(RangeError);
    expect(() => w.commit(img, { dirty, cpu: new Uint8Array(MAX_MANIFEST_CPU_BYTES + 1) })).toThrow(/`cpu` is 67108865 bytes, more than a manifest holds \(67108864\)/);
    expect(() => w.commit(img, { dirty, label: 'x'.repeat(MAX_MANIFEST_META_BYTES + 1) })).toThrow(/`label` and `guest` take \d+ bytes of metadata/);
    expect(() => w.commit(img, { dirty, cpu: 'abc' as unknown as Uint8Array })).toThrow(TypeError);
    expect(() => w.commit(img, { dirty, label: 7 as unknown as string })).toThrow(TypeError);
    expect(() => w.commit(img, { dirty, guest: 'kvm' as unknown as Record<string, unknown> })).toThrow(TypeError);
    // Nothing was committed by the refused calls, and the writer goes on.
    const next = w.commit(img, { dirty, cpu: Uint8Array.from([1]) });
    expect(next.id).toBe('2');
    w.close();
    s.close();
    const r = Store.open(dir);
    expect(r.list().checkpoints.map((c) => c.id)).toEqual(['1', '2']);
    expect(r.verify().ok).toBe(true);
    expect(same(r.readMemory('2').memory, img)).toBe(true);
    r.close();
  });
});

describe('dedup', () => {
  it('is scoped to a namespace unless the shared namespace is asked for', () => {
    const img = makeImage(rng(3), 64, PS, { zero: 0, library: 0, text: 1 });
    const s = Store.open(dir, { create: true });
    const a = s.writer({ namespace: 'tenant-a', incremental: false }).commit(img);
    const b = s.writer({ namespace: 'tenant-b', incremental: false }).commit(img);
    const a2 = s.writer({ namespace: 'tenant-a', incremental: false }).commit(img);
    expect([a.stats.dedupPages, b.stats.dedupPages, a2.stats.dedupPages]).toEqual([0, 0, 64]);
    const d = s.writer({ incremental: false }).commit(img);
    expect(d.namespace).toBe('default');
    expect(d.stats.dedupPages).toBe(0);
    const sh1 = s.writer({ shared: true, incremental: false }).commit(img);
    const sh2 = s.writer({ shared: true, incremental: false }).commit(img);
    expect([sh1.namespace, sh1.stats.dedupPages, sh2.stats.dedupPages]).toEqual(['shared', 0, 64]);
    for (const id of ['1', '2', '3', '4', '5', '6']) expect(same(s.readMemory(id).memory, img)).toBe(true);
    expect(() => s.writer({ namespace: 'no/slash' })).toThrow(RangeError);
    s.close();
  });

  it('never deduplicates a crafted fingerprint collision', () => {
    const P = new Uint8Array(PS).fill(0x11);
    const Q = new Uint8Array(PS).fill(0x22);
    const s = Store.open(dir, { create: true });
    const q = s.writer({ incremental: false }).commit(Q);
    expect(q.stats.newPages).toBe(1);
    s.close();
    // Forge: the record holding Q now claims P's fingerprint (CRC fixed up, so it looks valid).
    const seg = segFiles(dir)[0]!;
    const bytes = new Uint8Array(fs.readFileSync(seg));
    const off = 32;
    const fpP = (() => {
      const s2 = Store.open(dir);
      const w = s2.writer({ namespace: 'probe', incremental: false });
      w.commit(P);
      w.close();
      const b2 = new Uint8Array(fs.readFileSync(segFiles(dir)[1]!));
      s2.close();
      return b2.slice(32 + 32, 32 + 48);
    })();
    fs.rmSync(join(dir, 'manifests', '00000002.man'));
    fs.rmSync(segFiles(dir)[1]!);
    bytes.set(fpP, off + 32);
    const dv = new DataView(bytes.buffer);
    const plen = dv.getUint32(off + 8, true);
    const c = crc32(bytes.subarray(off + 24, off + 48), crc32(bytes.subarray(off + 4, off + 20)));
    dv.setUint32(off + 20, crc32(bytes.subarray(off + 48, off + 48 + plen), c), true);
    fs.writeFileSync(seg, bytes);
    const s3 = Store.open(dir);
    const p = s3.writer({ incremental: false }).commit(P);
    expect([p.stats.dedupPages, p.stats.newPages]).toEqual([0, 1]);
    expect(same(s3.readMemory(p.id).memory, P)).toBe(true);
    // The forged record no longer yields the page its fingerprint names: reads refuse it by name.
    expect(() => s3.readMemory('1')).toThrow(new StoreFormatError(seg,
      'record at offset 32 does not yield the page its fingerprint names (page 0 of checkpoint 1) (its bytes were altered, or come from another store)'));
    s3.close();
  });
});

describe('corruption', () => {
  function twoCheckpoints(): { imgs: Uint8Array[] } {
    const r = rng(4);
    const img = makeImage(r, 64, PS, { zero: 0.2, library: 0, text: 0 });
    const s = Store.open(dir, { create: true });
    const w = s.writer();
    w.commit(img);
    const first = img.slice();
    w.close();
    s.close();
    // a second session (its own segment) with whole-page changes
    const s2 = Store.open(dir);
    const w2 = s2.writer({ parent: '1' });
    const dirty = mutate(r, img, PS, 8, 'whole');
    w2.commit(img, { dirty });
    w2.close();
    s2.close();
    return { imgs: [first, img.slice()] };
  }

  it('a flipped bit in a record is reported with the checkpoints it hurts; older ones stay intact', () => {
    const { imgs } = twoCheckpoints();
    const seg2 = segFiles(dir)[1]!;
    const b = fs.readFileSync(seg2);
    b[32 + 48 + 100]! ^= 0x04; // inside the first record's payload of segment 2
    fs.writeFileSync(seg2, b);
    const s = Store.open(dir);
    const r = s.verify();
    expect(r.ok).toBe(false);
    expect(r.corrupt).toEqual([{ file: seg2, offset: 32, problem: 'record at offset 32 fails its checksum' }]);
    expect(r.checkpoints[0]).toEqual({ id: '1', ok: true, problems: [] });
    expect(r.checkpoints[1]!.ok).toBe(false);
    expect(r.checkpoints[1]!.problems).toEqual([`1 page(s): 1 record(s) of ${seg2} at offset 32 missing or corrupt`]);
    expect(same(s.readMemory('1').memory, imgs[0]!)).toBe(true);
    expect(() => s.readMemory('2')).toThrow(new StoreFormatError(seg2, 'record at offset 32 fails its checksum'));
    s.close();
  });

  it('a truncated segment is reported; the earlier checkpoint restores', () => {
    const { imgs } = twoCheckpoints();
    const seg2 = segFiles(dir)[1]!;
    const size = fs.statSync(seg2).size;
    fs.truncateSync(seg2, size - 10);
    const s = Store.open(dir);
    const r = s.verify();
    expect(r.ok).toBe(false);
    expect(r.corrupt.map((c) => c.problem)).toContain(`segment is ${size - 10} bytes but ${size} were committed (truncated)`);
    expect(r.checkpoints.map((c) => c.ok)).toEqual([true, false]);
    expect(same(s.readMemory('1').memory, imgs[0]!)).toBe(true);
    s.close();
  });

  it('a segment cut short or deleted is one problem per segment, not one per record', () => {
    const { imgs } = twoCheckpoints();
    const seg2 = segFiles(dir)[1]!;
    const size = fs.statSync(seg2).size;
    // cut to its header: every record of checkpoint 2 is gone (8 pages, all whole, in one segment)
    fs.truncateSync(seg2, 32);
    let s = Store.open(dir);
    let r = s.verify();
    const pages = r.checkpoints[1]!.problems;
    expect(pages.length).toBe(1);
    expect(pages[0]).toMatch(new RegExp(`^8 page\\(s\\): 8 record\\(s\\) of ${seg2.replace(/[.]/g, '\\.')} at offsets 32 to \\d+ missing or corrupt$`));
    s.close();
    fs.rmSync(seg2);
    s = Store.open(dir);
    r = s.verify();
    expect(r.corrupt).toEqual([{ file: seg2, offset: null, problem: `segment is missing (${size} committed bytes)` }]);
    expect(r.checkpoints.map((c) => c.ok)).toEqual([true, false]);
    expect(same(s.readMemory('1').memory, imgs[0]!)).toBe(true);
    s.close();
  });

  // Node 20 holds 4 GiB in one buffer, less than a manifest may describe (2^26 pages); from Node 22
  // on a buffer may be larger than any manifest, and the case cannot arise.
  const bufferPages = Math.floor(bufferConstants.MAX_LENGTH / PS);
  it.skipIf(bufferPages >= 2 ** 26)(`a well-checksummed manifest larger than this Node.js can hold is refused by name (skipped where one buffer holds ${bufferPages} pages, more than a manifest can name)`, () => {
    twoCheckpoints();
    const m1 = join(dir, 'manifests', '00000001.man');
    const head = decodeManifestHead(m1, fs.readFileSync(m1));
    const map = decodeManifestMap(m1, head, (b) => {
      const out = new Uint8Array(head.entries * 12);
      zstdDecompressInto(out, b);
      return out;
    });
    const pageCount = bufferPages + 1;
    fs.writeFileSync(m1, encodeManifest({ ...head, pageCount, ...map }, (b) => zstdCompress(b)));
    const s = Store.open(dir);
    expect(() => s.readMemory('1')).toThrow(
      new RangeError(`checkpoint 1 holds ${pageCount * PS} bytes of memory, more than one buffer may hold in this Node.js (${bufferConstants.MAX_LENGTH})`),
    );
    s.close();
  });

  it('corrupt and truncated manifests give clear errors and hurt only their checkpoint', () => {
    const { imgs } = twoCheckpoints();
    const m2 = join(dir, 'manifests', '00000002.man');
    const b = fs.readFileSync(m2);
    b[60]! ^= 1;
    fs.writeFileSync(m2, b);
    const s = Store.open(dir);
    expect(() => s.readMemory('2')).toThrow(new StoreFormatError(m2, 'manifest checksum mismatch'));
    let r = s.verify();
    expect(r.ok).toBe(false);
    expect(r.corrupt).toEqual([{ file: m2, offset: null, problem: 'manifest checksum mismatch' }]);
    expect(r.checkpoints.map((c) => c.ok)).toEqual([true, false]);
    fs.writeFileSync(m2, b.subarray(0, 30));
    expect(() => s.readMemory('2')).toThrow(new StoreFormatError(m2, 'manifest is truncated (30 bytes, header needs 48)'));
    fs.writeFileSync(m2, b.subarray(0, b.length - 5));
    expect(() => s.info('2')).toThrow(new StoreFormatError(m2, `manifest is ${b.length - 5} bytes but its header describes ${b.length} (truncated or corrupt)`));
    r = s.verify();
    expect(r.checkpoints.map((c) => c.ok)).toEqual([true, false]);
    expect(same(s.readMemory('1').memory, imgs[0]!)).toBe(true);
    const listed = s.list();
    expect(listed.checkpoints.map((c) => c.id)).toEqual(['1']);
    expect(listed.problems.length).toBe(1);
    s.close();
  });

  it('rejects foreign and future-version files', () => {
    fs.writeFileSync(join(dir, 'STORE'), Buffer.alloc(32));
    expect(() => Store.open(dir)).toThrow(new StoreFormatError(join(dir, 'STORE'), 'not an understudy store (bad magic)'));
    expect(() => Store.open(join(dir, 'nope'))).toThrow(new StoreFormatError(join(dir, 'nope'), 'no store here (missing STORE file)'));
  });
});

describe('prune and compact', () => {
  it('keeps every page the kept checkpoints need and reclaims the rest', () => {
    const r = rng(5);
    const img = makeImage(r, 96, PS);
    const s = Store.open(dir, { create: true });
    const w = s.writer();
    const images: Uint8Array[] = [];
    w.commit(img);
    images.push(img.slice());
    for (let c = 0; c < 11; c++) {
      w.commit(img, { dirty: mutate(r, img, PS, 12, c % 3 ? 'sparse' : 'whole') });
      images.push(img.slice());
    }
    w.close();
    const before = segFiles(dir).reduce((a, f) => a + fs.statSync(f).size, 0);
    const p = s.prune({ keep: 3 });
    expect(p.removed).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(p.rewritten).toEqual(['10']);
    expect(s.ids()).toEqual(['10', '11', '12']);
    const c = s.compact();
    expect(c.bytesBefore).toBe(before);
    expect(c.bytesAfter).toBeLessThan(before);
    for (const id of ['10', '11', '12']) expect(same(s.readMemory(id).memory, images[Number(id) - 1]!)).toBe(true);
    expect(s.verify().ok).toBe(true);
    // a new writer continues the chain after compaction
    const w2 = s.writer({ parent: '12' });
    const info = w2.commit(img, { dirty: mutate(r, img, PS, 5, 'sparse') });
    expect(info.id).toBe('13');
    expect(same(s.readMemory('13').memory, img)).toBe(true);
    s.close();
  });
});

describe('snapshot groups', () => {
  it('siblings store pages as deltas against the first guest, and each restores exactly', () => {
    const r = rng(31);
    const base = makeImage(r, 128, PS, { zero: 0.2, library: 0, text: 0.8 });
    const imgs = [base.slice(), base.slice(), base.slice()];
    const changed = mutate(r, imgs[1]!, PS, 40, 'sparse');
    mutate(r, imgs[2]!, PS, 40, 'whole');
    // pages that were zero in the first guest have nothing to be a delta against
    const overData = [...changed].filter((p) => base.subarray(p * PS, (p + 1) * PS).some((b) => b !== 0)).length;
    const s = Store.open(dir, { create: true });
    const first = s.writer();
    const infos = [first.commit(imgs[0]!)];
    for (const img of imgs.slice(1)) {
      const w = first.sibling();
      infos.push(w.commit(img));
      w.close();
    }
    expect(infos.map((i) => [i.id, i.parent, i.full])).toEqual([['1', null, true], ['2', '1', true], ['3', '1', true]]);
    expect(infos[1]!.stats.deltaPages).toBe(overData);
    expect(infos[1]!.stats.newPages).toBe(40);
    expect(infos[1]!.stats.unchangedPages).toBe(128 - 40 - infos[1]!.stats.zeroPages);
    expect(infos[2]!.stats.deltaPages).toBe(0); // whole random pages: a delta does not pay
    imgs.forEach((img, i) => expect(same(s.readMemory(String(i + 1)).memory, img)).toBe(true));
    // the siblings' full maps survive pruning the reference
    s.prune({ keep: 2 });
    s.compact();
    expect(same(s.readMemory('2').memory, imgs[1]!)).toBe(true);
    expect(s.verify().ok).toBe(true);
    s.close();
  });
});
