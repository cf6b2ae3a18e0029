/**
 * Real dirty pages of a Linux guest under QEMU (TCG), captured as bench/real-pages.ts does but
 * for 3 short intervals: every pair round-trips through encodePages / applyPages byte for byte,
 * and the pairs-file reader rejects truncated and corrupted files. Skipped, with the reason
 * printed, when QEMU or the packages are missing.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { applyPages, encodePages } from '../lib/index.js';
import { qemuMissing } from './helpers/qemu-guest.js';
import { captureRealPages, decodeRealPages, encodeRealPages, loadRealPages, pairsFromImages, readRealPages, writeRealPages, type RealPages } from './helpers/real-pages.js';

const missing = qemuMissing();
if (missing) process.stdout.write(`real-pages: skipped: ${missing}\n`);

describe.skipIf(missing !== null)('real Linux guest pages', () => {
  let pages: RealPages;

  beforeAll(async () => {
    const res = await captureRealPages({ intervals: 3, intervalMs: 100, memMiB: 128, settleMs: 500 });
    pages = res.pages;
    process.stdout.write(`real-pages: ${pages.count} changed pages over 3 intervals (guest booted in ${res.bootMs} ms, ${res.accel})\n`);
  }, 60_000);

  it('captures changed pages, and each pair round-trips through encodePages / applyPages', async () => {
    expect(pages.count).toBeGreaterThan(0); // the workload rewrites files and forks every few ms
    const ps = pages.pageSize;
    const pfns = Uint32Array.from({ length: pages.count }, (_, i) => i);
    const shadow = pages.old.slice();
    const frame = await encodePages(shadow, pages.next, pfns, { pageSize: ps });
    expect(Buffer.compare(shadow, pages.next)).toBe(0); // encodePages updates the shadow
    const replica = pages.old.slice();
    applyPages(replica, frame, { pageSize: ps });
    for (let i = 0; i < pages.count; i++) {
      const got = replica.subarray(i * ps, (i + 1) * ps);
      const want = pages.next.subarray(i * ps, (i + 1) * ps);
      if (Buffer.compare(got, want) !== 0) expect.fail(`pair ${i} (pfn ${pages.pfns[i]}) did not round-trip`);
      // Every kept pair really changed (old != new).
      if (Buffer.compare(pages.old.subarray(i * ps, (i + 1) * ps), want) === 0) expect.fail(`pair ${i} is unchanged`);
    }
  });

  it('writes a file that reads back identically, and rejects truncated or corrupted files', () => {
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'understudy-rp-test-'));
    try {
      const file = join(dir, 'pairs.bin');
      writeRealPages(file, pages);
      const back = readRealPages(file);
      expect([back.pageSize, back.count, back.intervals]).toEqual([pages.pageSize, pages.count, pages.intervals]);
      expect(Buffer.compare(back.old, pages.old)).toBe(0);
      expect(Buffer.compare(back.next, pages.next)).toBe(0);
      expect(Array.from(back.pfns)).toEqual(Array.from(pages.pfns));

      const img = encodeRealPages(pages);
      expect(() => decodeRealPages(img.subarray(0, 20), 'f')).toThrow('f: not a real-pages file: 20 bytes, shorter than the 32-byte header');
      expect(() => decodeRealPages(img.subarray(0, img.length - 1), 'f')).toThrow(/^f: not a real-pages file: \d+ bytes, but \d+ pairs of 4096-byte pages need \d+ \(truncated or padded\)$/);
      const flipped = Buffer.from(img);
      flipped[flipped.length - 100]! ^= 1;
      expect(() => decodeRealPages(flipped, 'f')).toThrow('f: not a real-pages file: checksum mismatch (corrupted)');
      const badMagic = Buffer.from(img);
      badMagic[0] = 0;
      expect(() => decodeRealPages(badMagic, 'f')).toThrow('f: not a real-pages file: bad magic (want "URPG")');
      const badVersion = Buffer.from(img);
      badVersion[4] = 9;
      expect(() => decodeRealPages(badVersion, 'f')).toThrow('f: not a real-pages file: version 9 (this reader knows 1)');
      fs.truncateSync(file, 1000);
      expect(() => readRealPages(file)).toThrow(`${file}: not a real-pages file: 1000 bytes`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pairs from raw memory images (bench --real-pages A.img,B.img)', () => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'understudy-img-'));
  const ps = 4096;
  const images = [new Uint8Array(8 * ps), new Uint8Array(8 * ps), new Uint8Array(8 * ps)];
  images[0]!.fill(1, 2 * ps, 3 * ps);
  images[1]!.set(images[0]!);
  images[1]![5 * ps + 7] = 9; // interval 0: page 5
  images[1]![0] = 3; // interval 0: page 0
  images[2]!.set(images[1]!);
  images[2]![2 * ps + 4095] = 0; // interval 1: page 2
  const files = images.map((img, k) => {
    const f = join(dir, `m${k}.img`);
    fs.writeFileSync(f, img);
    return f;
  });

  it('keeps every page that differs between consecutive images, with its interval and both versions', () => {
    const p = pairsFromImages(files);
    expect([p.count, p.intervals, p.changed, Array.from(p.pfns), Array.from(p.interval)]).toEqual([3, 2, 3, [0, 5, 2], [0, 0, 1]]);
    for (let i = 0; i < 3; i++) {
      const [k, pfn] = [p.interval[i]!, p.pfns[i]!];
      expect(Buffer.compare(p.old.subarray(i * ps, (i + 1) * ps), images[k]!.subarray(pfn * ps, (pfn + 1) * ps))).toBe(0);
      expect(Buffer.compare(p.next.subarray(i * ps, (i + 1) * ps), images[k + 1]!.subarray(pfn * ps, (pfn + 1) * ps))).toBe(0);
    }
    const sampled = pairsFromImages(files, ps, 2); // every 2nd of 3
    expect([sampled.count, Array.from(sampled.pfns)]).toEqual([2, [0, 2]]);
    expect(loadRealPages(files.join(',')).source).toBe('3 memory images');
  });

  it('refuses one image, images of different sizes and partial pages, naming the file', () => {
    expect(() => pairsFromImages(files.slice(0, 1))).toThrow(new RangeError('memory images: need two or more, got 1'));
    const short = join(dir, 'short.img');
    fs.writeFileSync(short, new Uint8Array(7 * ps));
    expect(() => pairsFromImages([files[0]!, short])).toThrow(new RangeError(`${short}: ${7 * ps} bytes, but ${files[0]} has ${8 * ps}: the images must be of one guest`));
    const odd = join(dir, 'odd.img');
    fs.writeFileSync(odd, new Uint8Array(100));
    expect(() => pairsFromImages([odd, odd])).toThrow(new RangeError(`${odd}: 100 bytes is not a whole number of 4096-byte pages`));
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

