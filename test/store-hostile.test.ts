/**
 * The store against stray, misnamed and misplaced files found by a fuzzing review: a high-numbered
 * stray segment, names that alias canonical files, a stray huge manifest id, prune with unreadable
 * manifests, directories where files belong, manifests whose lengths ask for huge reads, a payload
 * edited with its CRC recomputed, and the segment directory's fsync.
 */
import { describe, expect, it, beforeEach, afterEach, vi } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Store, StoreFormatError, CheckpointError } from '../lib/store/index.js';
import { decodeManifestHead, decodeManifestMap, encodeManifest } from '../lib/store/format.js';
import { zstdCompress, zstdDecompressInto } from '../lib/store/codec.js';
import { rng, makeImage, mutate } from './helpers/images.js';
import { cli } from './helpers/cli.js';

const PS = 4096;
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(join(os.tmpdir(), 'ustore-hostile-'));
});
afterEach(() => {
  vi.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
const seg = (n: string) => join(dir, 'segments', `${n}.seg`);
const man = (n: string) => join(dir, 'manifests', `${n}.man`);

/** Three checkpoints: 1 and 2 a chain in segment 1 (2 has deltas), 3 another namespace in segment 2. */
function threeCheckpoints(): Uint8Array[] {
  const r = rng(31);
  const img = makeImage(r, 64, PS, { zero: 0.2, library: 0, text: 0 });
  const s = Store.open(dir, { create: true });
  const w = s.writer();
  const imgs: Uint8Array[] = [];
  w.commit(img);
  imgs.push(img.slice());
  w.commit(img, { dirty: mutate(r, img, PS, 6, 'sparse') });
  imgs.push(img.slice());
  w.close();
  s.close();
  const s2 = Store.open(dir);
  const other = makeImage(rng(32), 64, PS, { zero: 0.2, library: 0, text: 0 });
  s2.writer({ namespace: 'other' }).commit(other);
  imgs.push(other);
  s2.close();
  return imgs;
}

/** `fn` throws a `cls` whose message is exactly `message`. */
function throwsExactly(fn: () => unknown, cls: new (...a: never[]) => Error, message: string): void {
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  expect((err as Error).message).toBe(message);
}

function allExact(s: Store, imgs: Uint8Array[]): boolean[] {
  return imgs.map((img, i) => same(s.readMemory(String(i + 1)).memory, img));
}

describe('segment numbers: canonical names within a bound every field holds', () => {
  it('a stray empty segments/4294967295.seg: a new checkpoint and compact store and keep exact bytes; the stray is reported, never touched', () => {
    const imgs = threeCheckpoints();
    fs.writeFileSync(seg('4294967295'), '');
    const s = Store.open(dir);
    const img = imgs[0]!.slice();
    img.fill(7, 0, PS);
    const info = s.writer({ namespace: 'n4' }).commit(img);
    expect(info.id).toBe('4');
    expect(fs.existsSync(seg('00000003'))).toBe(true);
    expect(same(s.readMemory('4').memory, img)).toBe(true);
    s.compact();
    expect(allExact(s, [...imgs, img])).toEqual([true, true, true, true]);
    expect(fs.readdirSync(join(dir, 'segments')).sort()).toEqual(['00000004.seg', '4294967295.seg']);
    const v = s.verify();
    expect(v.ok).toBe(true);
    expect(v.ignored).toEqual([{ file: seg('4294967295'), offset: null, problem: 'not a segment name this store uses (8 digits, 00000001 to 02097151); ignored' }]);
    s.close();
  });

  it('refuses to create a segment past 02097151, naming the file; compact then changes nothing', () => {
    const imgs = threeCheckpoints();
    fs.writeFileSync(seg('02097151'), '');
    const s = Store.open(dir);
    const msg = `${seg('02097151')}: segment 2097151 is the highest number a store may use (2097151); no segment can be created after it`;
    throwsExactly(() => s.writer({ namespace: 'n4' }).commit(imgs[0]!), CheckpointError, `checkpoint failed: ${msg}`);
    s.unlock();
    expect(() => s.compact()).toThrow(new StoreFormatError(seg('02097151'), msg.slice(seg('02097151').length + 2)));
    expect(s.ids()).toEqual(['1', '2', '3']);
    expect(allExact(s, imgs)).toEqual([true, true, true]);
    s.close();
  });

  it('a manifest naming a segment past the bound is refused by name', () => {
    threeCheckpoints();
    const m1 = man('00000001');
    const head = decodeManifestHead(m1, fs.readFileSync(m1));
    const map = decodeManifestMap(m1, head, (b) => {
      const out = new Uint8Array(head.entries * 12);
      zstdDecompressInto(out, b);
      return out;
    });
    map.segments[0] = 2 ** 21;
    fs.writeFileSync(m1, encodeManifest({ ...head, ...map }, (b) => zstdCompress(b)));
    const s = Store.open(dir);
    expect(() => s.readMemory('1')).toThrow(new StoreFormatError(m1, 'map entry 0 names segment 2097152, past the highest segment number (2097151)'));
    s.close();
  });

  it('names with 9 digits do not alias the canonical files: compact keeps everything, each checkpoint is listed once', () => {
    const imgs = threeCheckpoints();
    fs.writeFileSync(seg('000000001'), '');
    fs.writeFileSync(man('000000001'), '');
    const s = Store.open(dir);
    expect(s.ids()).toEqual(['1', '2', '3']);
    expect(s.segmentNumbers()).toEqual([1, 2]);
    const l = s.list();
    expect(l.checkpoints.map((c) => c.id)).toEqual(['1', '2', '3']);
    expect(l.problems).toEqual([]);
    expect(l.ignored.map((g) => g.file)).toEqual([seg('000000001'), man('000000001')]);
    s.compact();
    expect(allExact(s, imgs)).toEqual([true, true, true]);
    expect(s.verify().ok).toBe(true);
    s.close();
    const ls = cli(['ls', dir]);
    expect(ls.status).toBe(0);
    expect(ls.stdout.split('\n').filter((x) => /^[0-9]+ {2}/.test(x)).map((x) => x.split(' ')[0])).toEqual(['1', '2', '3']);
    expect(ls.stderr).toBe(`understudy: ls: ignored ${seg('000000001')}: not a segment name this store uses (8 digits, 00000001 to 02097151); ignored\n`
      + `understudy: ls: ignored ${man('000000001')}: not a manifest name this store uses (the id in at least 8 digits, no other leading zeros, 1 to 999999999999999); ignored\n`);
  });
});

describe('checkpoint ids', () => {
  it('a stray 16-digit manifest name is ignored: new checkpoints get distinct ids and read back', () => {
    const imgs = threeCheckpoints();
    fs.writeFileSync(man('9999999999999999'), '');
    const s = Store.open(dir);
    const w = s.writer({ parent: '2' });
    const img = imgs[1]!.slice();
    const a = w.commit(img, { dirty: mutate(rng(5), img, PS, 3, 'sparse') });
    const imgA = img.slice();
    const b = w.commit(img, { dirty: mutate(rng(6), img, PS, 3, 'sparse') });
    w.close();
    expect([a.id, b.id]).toEqual(['4', '5']);
    expect(same(s.readMemory('4').memory, imgA)).toBe(true);
    expect(same(s.readMemory('5').memory, img)).toBe(true);
    s.close();
  });

  it('refuses to number a checkpoint past 999999999999999, and never replaces an existing manifest', () => {
    const imgs = threeCheckpoints();
    const top = man('999999999999999');
    fs.writeFileSync(top, '');
    const s = Store.open(dir);
    const w = s.writer({ namespace: 'n4' });
    throwsExactly(() => w.commit(imgs[0]!), CheckpointError,
      `checkpoint failed: ${top}: checkpoint id 999999999999999 is the highest a store may use (999999999999999); no checkpoint can be numbered after it; earlier checkpoints are intact`);
    fs.rmSync(top);
    vi.spyOn(s, '_nextId').mockReturnValue('2');
    throwsExactly(() => w.commit(imgs[0]!), CheckpointError,
      `checkpoint failed: ${man('00000002')}: checkpoint 2 already exists; refusing to replace its manifest; earlier checkpoints are intact`);
    w.close();
    expect(s.ids()).toEqual(['1', '2', '3']);
    expect(allExact(s, imgs)).toEqual([true, true, true]);
    s.close();
  });
});

describe('prune with manifests it cannot read', () => {
  it('a damaged newest manifest: prune --keep 1 refuses, naming it, and deletes nothing', () => {
    const imgs = threeCheckpoints();
    const m3 = man('00000003');
    const b = fs.readFileSync(m3);
    b[100] = 0xff;
    fs.writeFileSync(m3, b);
    const s = Store.open(dir);
    expect(() => s.prune({ keep: 1 })).toThrow(new StoreFormatError(m3,
      'manifest checksum mismatch; prune changed nothing (it does not run while a manifest is unreadable: see `understudy verify`)'));
    expect(s.ids()).toEqual(['1', '2', '3']);
    expect(allExact(s, imgs.slice(0, 2))).toEqual([true, true]);
    s.close();
  });

  it('an alias file is not counted among the kept', () => {
    const imgs = threeCheckpoints();
    fs.writeFileSync(man('000000001'), '');
    const s = Store.open(dir);
    expect(s.prune({ keep: 3 })).toEqual({ removed: [], rewritten: [] });
    expect(allExact(s, imgs)).toEqual([true, true, true]);
    s.close();
  });
});

describe('a directory where a file belongs', () => {
  const openFds = () => fs.readdirSync('/proc/self/fd').length;

  it('segment: readers name the file and leak no descriptor; verify reports it and the intact checkpoint', () => {
    threeCheckpoints();
    fs.rmSync(seg('00000001'));
    fs.mkdirSync(seg('00000001'));
    const s = Store.open(dir);
    const err = new StoreFormatError(seg('00000001'), 'segment is not a regular file (a directory)');
    const fds = openFds();
    for (let i = 0; i < 5; i++) expect(() => s.readMemory('1')).toThrow(err);
    expect(openFds()).toBe(fds);
    const v = s.verify();
    expect(v.corrupt).toEqual([{ file: seg('00000001'), offset: null, problem: 'segment is not a regular file (a directory)' }]);
    expect(v.checkpoints.map((c) => c.ok)).toEqual([false, false, true]);
    expect(() => s.compact()).toThrow(new StoreFormatError(seg('00000001'), 'segment is not a regular file (a directory); compact changed nothing'));
    s.close();
    const out = cli(['verify', dir]);
    expect(out.status).toBe(1);
    expect(out.stdout).toContain(`corrupt: ${seg('00000001')}: segment is not a regular file (a directory)\n`);
    expect(out.stdout).toContain('checkpoint 3: ok\n');
  });

  it('an unreferenced segment directory: compact refuses before changing anything', () => {
    const imgs = threeCheckpoints();
    fs.mkdirSync(seg('00000009'));
    const s = Store.open(dir);
    const before = fs.readdirSync(join(dir, 'manifests')).map((f) => fs.readFileSync(join(dir, 'manifests', f)));
    expect(() => s.compact()).toThrow(new StoreFormatError(seg('00000009'), 'segment is not a regular file (a directory); compact changed nothing'));
    expect(fs.readdirSync(join(dir, 'manifests')).map((f) => fs.readFileSync(join(dir, 'manifests', f)))).toEqual(before);
    expect(allExact(s, imgs)).toEqual([true, true, true]);
    s.close();
  });

  it('manifest and LOCK', () => {
    threeCheckpoints();
    fs.rmSync(man('00000003'));
    fs.mkdirSync(man('00000003'));
    const s = Store.open(dir);
    expect(() => s.info('3')).toThrow(new StoreFormatError(man('00000003'), 'manifest is not a regular file (a directory)'));
    expect(s.verify().checkpoints.map((c) => c.ok)).toEqual([true, true, false]);
    fs.mkdirSync(join(dir, 'LOCK'));
    expect(() => s.compact()).toThrow(new StoreFormatError(join(dir, 'LOCK'), 'lock file is not a regular file (a directory)'));
    s.close();
  });
});

describe('manifest lengths are checked before the bytes are read', () => {
  it('a CPU state length past the limit is refused from the header (the file is sparse)', () => {
    threeCheckpoints();
    const m1 = man('00000001');
    const b = fs.readFileSync(m1);
    const cpuLen = 100 << 20;
    b.writeUInt32LE(b.readUInt32LE(32) + cpuLen, 32);
    fs.writeFileSync(m1, b);
    fs.truncateSync(m1, b.length + cpuLen);
    const s = Store.open(dir);
    expect(() => s.info('1')).toThrow(new StoreFormatError(m1, `manifest CPU state length ${cpuLen} is more than the limit (67108864)`));
    expect(s.list().problems).toEqual([{ file: m1, offset: null, problem: `manifest CPU state length ${cpuLen} is more than the limit (67108864)` }]);
    s.close();
    const ls = cli(['ls', dir]);
    expect([ls.status, ls.stderr]).toEqual([1, `understudy: ls: unreadable manifest ${m1}: manifest CPU state length ${cpuLen} is more than the limit (67108864)\n`]);
  });

  it('a map entry count its bytes cannot hold is refused before any allocation', () => {
    threeCheckpoints();
    const m1 = man('00000001');
    const b = fs.readFileSync(m1);
    b.writeUInt32LE(2 ** 26, 20);
    b.writeUInt32LE(2 ** 26, 24);
    b.writeUInt32LE(crc32(b.subarray(48), crc32(b.subarray(0, 44))) >>> 0, 44);
    fs.writeFileSync(m1, b);
    const mapLen = b.readUInt32LE(36);
    const s = Store.open(dir);
    expect(() => s.readMemory('1')).toThrow(new StoreFormatError(m1, `map of ${mapLen} bytes cannot hold 67108864 entries`));
    s.close();
  });
});

describe('durability', () => {
  it('a new segment file is fsynced into segments/ before a manifest names it', () => {
    const s = Store.open(dir, { create: true });
    const events: string[] = [];
    const paths = new Map<number, string>();
    const open = fs.openSync;
    vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
      const fd = (open as (...a: unknown[]) => number)(p, ...rest);
      paths.set(fd, String(p));
      return fd;
    }) as typeof fs.openSync);
    const fsync = fs.fsyncSync;
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd: number) => {
      events.push(`fsync ${paths.get(fd)}`);
      fsync(fd);
    });
    const rename = fs.renameSync;
    vi.spyOn(fs, 'renameSync').mockImplementation((a: fs.PathLike, b: fs.PathLike) => {
      events.push(`rename ${String(b)}`);
      rename(a, b);
    });
    s.writer().commit(makeImage(rng(3), 16, PS));
    const segDir = events.indexOf(`fsync ${join(dir, 'segments')}`);
    expect(segDir).toBeGreaterThanOrEqual(0);
    expect(segDir).toBeLessThan(events.indexOf(`rename ${man('00000001')}`));
    s.close();
  });
});

describe('pages are checked against their record fingerprints', () => {
  const FP = 'does not yield the page its fingerprint names';

  it('a raw page payload edited with its CRC recomputed: reads and verify name the record', () => {
    const img = makeImage(rng(41), 8, PS, { zero: 0, library: 0, text: 0 });
    const s = Store.open(dir, { create: true });
    s.writer().commit(img);
    s.close();
    const f = seg('00000001');
    const b = fs.readFileSync(f);
    expect([b[32 + 4], b[32 + 5], b.readUInt32LE(32 + 8)]).toEqual([1, 0, PS]); // a raw page record at 32
    b[32 + 48 + 10]! ^= 0x55;
    b.writeUInt32LE(crc32(b.subarray(80, 80 + PS), crc32(b.subarray(56, 80), crc32(b.subarray(36, 52)))) >>> 0, 52);
    fs.writeFileSync(f, b);
    const s2 = Store.open(dir);
    const why = `record at offset 32 ${FP} (its bytes were altered, or come from another store)`;
    throwsExactly(() => s2.readMemory('1'), StoreFormatError, `${f}: record at offset 32 ${FP} (page 0 of checkpoint 1) (its bytes were altered, or come from another store)`);
    throwsExactly(() => s2.readPage(1, 32, new Uint8Array(PS)), StoreFormatError, `${f}: ${why}`);
    const v = s2.verify();
    expect(v.ok).toBe(false);
    expect(v.corrupt).toEqual([{ file: f, offset: 32, problem: why }]);
    expect(v.checkpoints).toEqual([{ id: '1', ok: false, problems: [`1 page(s): 1 record(s) of ${f} at offset 32 missing or corrupt`] }]);
    s2.close();
  });

  it('a segment swapped in from another store: deltas against its pages fail their fingerprints', () => {
    const build = (d: string, seed: number) => {
      const r = rng(seed);
      const img = makeImage(r, 32, PS, { zero: 0, library: 0, text: 0 });
      // small segments: the second commit goes to segment 2, its deltas against segment 1
      const s = Store.open(d, { create: true, segmentBytes: 65536 });
      const w = s.writer();
      w.commit(img);
      expect(w.commit(img, { dirty: mutate(r, img, PS, 4, 'sparse') }).stats.deltaPages).toBe(4);
      s.close();
    };
    // B starts as a copy of A's STORE (a copied store: the same store id), then holds other data.
    const other = join(dir, 'B');
    const mine = join(dir, 'A');
    build(mine, 51);
    fs.mkdirSync(join(other, 'segments'), { recursive: true });
    fs.mkdirSync(join(other, 'manifests'));
    fs.copyFileSync(join(mine, 'STORE'), join(other, 'STORE'));
    build(other, 52);
    fs.copyFileSync(join(other, 'segments', '00000001.seg'), join(mine, 'segments', '00000001.seg'));
    const s = Store.open(mine);
    const map = s.pageMap('2');
    let pfn = 0;
    while (map.segments[pfn] !== 2) pfn++;
    const f = join(mine, 'segments', '00000002.seg');
    throwsExactly(() => s.readMemory('2'), StoreFormatError,
      `${f}: record at offset ${map.offsets[pfn]} ${FP} (page ${pfn} of checkpoint 2) (its bytes were altered, or come from another store)`);
    const v = s.verify();
    expect(v.checkpoints[1]!.ok).toBe(false);
    expect(v.corrupt.every((c) => c.file === f && c.problem === `record at offset ${c.offset} ${FP} (its bytes were altered, or come from another store)`)).toBe(true);
    expect(v.corrupt.length).toBeGreaterThan(0);
    s.close();
  });
});

describe('store ids tie segments and manifests to their store', () => {
  function small(d: string, seed: number): Uint8Array {
    const img = makeImage(rng(seed), 16, PS, { zero: 0, library: 0, text: 0 });
    const s = Store.open(d, { create: true });
    s.writer().commit(img);
    s.close();
    return img;
  }

  it('a segment or manifest from another store is named as foreign; verify reports it, the other checkpoints stay ok', () => {
    const a = join(dir, 'A');
    const b = join(dir, 'B');
    small(a, 61);
    small(b, 62);
    const img2 = makeImage(rng(63), 16, PS, { zero: 0, library: 0, text: 0 });
    const sa = Store.open(a);
    sa.writer({ namespace: 'x' }).commit(img2);
    sa.close();
    const header = fs.readFileSync(join(a, 'STORE'));
    expect([header.length, header.readUInt16LE(8)]).toEqual([40, 2]);
    const idA = header.subarray(24, 32).toString('hex');
    const idB = fs.readFileSync(join(b, 'STORE')).subarray(24, 32).toString('hex');
    fs.copyFileSync(join(b, 'segments', '00000001.seg'), join(a, 'segments', '00000001.seg'));
    const s = Store.open(a);
    const f = join(a, 'segments', '00000001.seg');
    const why = `segment belongs to another store (store id ${idB}, this store's ${idA})`;
    throwsExactly(() => s.readMemory('1'), StoreFormatError, `${f}: ${why}`);
    const v = s.verify();
    expect(v.corrupt[0]).toEqual({ file: f, offset: 0, problem: `${why}; the ${fs.statSync(f).size} committed bytes from there on are unreadable` });
    expect(v.checkpoints.map((c) => c.ok)).toEqual([false, true]);
    s.close();
    fs.copyFileSync(join(b, 'manifests', '00000001.man'), join(a, 'manifests', '00000001.man'));
    const s2 = Store.open(a);
    const m = join(a, 'manifests', '00000001.man');
    throwsExactly(() => s2.info('1'), StoreFormatError, `${m}: manifest belongs to another store (store id ${idB}, this store's ${idA})`);
    s2.close();
  });

  it('a store made before ids (STORE version 1) still opens, reads, verifies and takes new checkpoints without an id', () => {
    const files: Record<string, string> = {
      'STORE': 'VVNUU1RPUkUBACAAAAIAAEvhdESiAQAAAAAAAL0XxF4=',
      'segments/00000001.seg': 'VVNUU0VHTVQBACAAAAIAAAEAAAAAAAAAAAAAAKgyTA9VUkMxAQEAABQBAAAAAAAAAAAAADxKMSGRetucCFVigaw0HMx7Wqk/9v5RRx8voewotS/9YAABVQgABBAABw4VHCMqMTg/Rk1UW2JpcHd+hYyTmqGor7a9xMvS2eDn7vX8AwoRGB8mLTQ7QklQV15lbHN6gYiPlp2kq7K5wMfO1dzj6vH4/wYNFBsiKTA3PkVMU1phaG92fYSLkpmgp661vMPK0djf5u30+wIJEBceJSwzOkFIT1ZdZGtyeYCHjpWco6qxuL/GzdTb4unw9/4FDBMaISgvNj1ES1JZYGdudXyDipGYn6attLvCydDX3uXs8/oBCA8WHSQrMjlAR05VXGNqcXh/ho2Um6KpsLe+xczT2uHo7/b9BAsSGSAnLjU8Q0pRWF9mbXR7gomQl56lrLO6wcjP1t3k6/L5AQAA/QFqTQFVUkMxAQEAABQBAAAAAAAAAAAAAAa1fb6RetucCFVigTg5ZL+ecf1yN0MReibqTXEotS/9YAABVQgABBABCA8WHSQrMjlAR05VXGNqcXh/ho2Um6KpsLe+xczT2uHo7/b9BAsSGSAnLjU8Q0pRWF9mbXR7gomQl56lrLO6wcjP1t3k6/L5AAcOFRwjKjE4P0ZNVFtiaXB3foWMk5qhqK+2vcTL0tng5+71/AMKERgfJi00O0JJUFdeZWxzeoGIj5adpKuyucDHztXc4+rx+P8GDRQbIikwNz5FTFNaYWhvdn2Ei5KZoKeutbzDytHY3+bt9PsCCRAXHiUsMzpBSE9WXWRrcnmAh46VnKOqsbi/xs3U2+Lp8Pf+BQwTGiEoLzY9REtSWWBnbnV8g4qRmJ+mrbS7wsnQ197l7PP6AQAA/QFqTQFVUkMxAQEAABQBAAAAAAAAAAAAACuZHKiRetucCFVigRrz0DZ7paDE9YICuNkBnR0otS/9YAABVQgABBADChEYHyYtNDtCSVBXXmVsc3qBiI+WnaSrsrnAx87V3OPq8fj/Bg0UGyIpMDc+RUxTWmFob3Z9hIuSmaCnrrW8w8rR2N/m7fT7AgkQFx4lLDM6QUhPVl1ka3J5gIeOlZyjqrG4v8bN1Nvi6fD3/gUMExohKC82PURLUllgZ251fIOKkZifpq20u8LJ0Nfe5ezz+gEIDxYdJCsyOUBHTlVcY2pxeH+GjZSboqmwt77FzNPa4ejv9v0ECxIZICcuNTxDSlFYX2ZtdHuCiZCXnqWss7rByM/W3eTr8vkABw4VHCMqMTg/Rk1UW2JpcHd+hYyTmqGor7a9xMvS2eDn7vX8AQAA/QFqTQFVUkMxAgABABoAAAABAAAAIAAAAL7dGw6RetucCFVigRL+KL73oy6MtenDXYwIN5lVRExUAQIAAAACAAACAAAA66kLYf8itFIVAVVSQzECAAEAGgAAAAEAAACoAgAAd7/6C5F625wIVWKBzKV0qWFj6FV6ONGLB6FHcVVETFQBAgAAAAIAAAIAAACApGONEbzP6xlo',
      'manifests/00000001.man': 'VVNUTUFOSUYBADAAAQAAAAACAAAEAAAAAwAAAAEBAAAAAAAAJwAAAAAAAAAGNHAleyJpZCI6IjEiLCJwYXJlbnQiOm51bGwsImNyZWF0ZWQiOiIyMDI2LTEyLTA1VDA0OjI3OjIwLjI3MloiLCJuYW1lc3BhY2UiOiJkZWZhdWx0IiwibGFiZWwiOiJ2MSIsImV4dGVudHMiOnsiMSI6MTAwNH0sInN0YXRzIjp7ImRpcnR5UGFnZXMiOjQsIm5ld1BhZ2VzIjozLCJkZWx0YVBhZ2VzIjowLCJkZWR1cFBhZ2VzIjowLCJ6ZXJvUGFnZXMiOjEsInVuY2hhbmdlZFBhZ2VzIjowLCJyYXdEaXJ0eUJ5dGVzIjoyMDQ4LCJyZWNvcmRCeXRlcyI6OTcyfX0otS/9ICT1AACwAAAAAAEAAAADASAAAABkAQAAqAIAAAIAIItl5Qg=',
      'manifests/00000002.man': 'VVNUTUFOSUYBADAAAAAAAAACAAAEAAAAAgAAAPMAAAAAAAAAIQAAAAAAAACvqrb/eyJpZCI6IjIiLCJwYXJlbnQiOiIxIiwiY3JlYXRlZCI6IjIwMjYtMTItMDVUMDQ6Mjc6MjAuMjczWiIsIm5hbWVzcGFjZSI6ImRlZmF1bHQiLCJleHRlbnRzIjp7IjEiOjExNTJ9LCJzdGF0cyI6eyJkaXJ0eVBhZ2VzIjoyLCJuZXdQYWdlcyI6MiwiZGVsdGFQYWdlcyI6MiwiZGVkdXBQYWdlcyI6MCwiemVyb1BhZ2VzIjowLCJ1bmNoYW5nZWRQYWdlcyI6MCwicmF3RGlydHlCeXRlcyI6MTAyNCwicmVjb3JkQnl0ZXMiOjE0OH19KLUv/SAYwQAAAAAAAAMAAAABAAAAAQAAAOwDAAA2BAAA'
    };
    fs.mkdirSync(join(dir, 'segments'));
    fs.mkdirSync(join(dir, 'manifests'));
    for (const [name, b64] of Object.entries(files)) fs.writeFileSync(join(dir, name), Buffer.from(b64, 'base64'));
    const img = new Uint8Array(4 * 512);
    for (let i = 0; i < img.length; i++) img[i] = (i * 7 + (i >> 9)) & 0xff;
    img.fill(0, 1024, 1536);
    const first = img.slice();
    img[5] ^= 1;
    img[3 * 512 + 9] = 42;
    const s = Store.open(dir);
    expect(s.storeId).toBe(null);
    expect(same(s.readMemory('1').memory, first)).toBe(true);
    expect(same(s.readMemory('2').memory, img)).toBe(true);
    expect(s.verify().ok).toBe(true);
    const w = s.writer({ parent: '2' });
    img[100] = 1;
    expect(w.commit(img, { dirty: new Uint32Array([0]) }).id).toBe('3');
    w.close();
    expect(same(s.readMemory('3').memory, img)).toBe(true);
    expect(s.info('3').stats.dirtyPages).toBe(1);
    const seg2 = fs.readFileSync(join(dir, 'segments', '00000002.seg'));
    expect([...seg2.subarray(20, 28)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodeManifestHead('m', fs.readFileSync(join(dir, 'manifests', '00000003.man'))).meta.store).toBe(undefined);
    s.close();
    // a segment with an id is foreign in a store without one
    const other = join(os.tmpdir(), `ustore-v2-${process.pid}`);
    fs.rmSync(other, { recursive: true, force: true });
    const s2 = Store.open(other, { create: true, pageSize: 512 });
    s2.writer().commit(img);
    s2.close();
    const idOther = fs.readFileSync(join(other, 'STORE')).subarray(24, 32).toString('hex');
    fs.copyFileSync(join(other, 'segments', '00000001.seg'), join(dir, 'segments', '00000001.seg'));
    fs.rmSync(other, { recursive: true, force: true });
    const s3 = Store.open(dir);
    throwsExactly(() => s3.readMemory('1'), StoreFormatError, `${join(dir, 'segments', '00000001.seg')}: segment belongs to another store (store id ${idOther}, this store's none)`);
    s3.close();
  });
});
