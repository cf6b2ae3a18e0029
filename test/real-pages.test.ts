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
import { captureRealPages, decodeRealPages, encodeRealPages, readRealPages, writeRealPages, type RealPages } from './helpers/real-pages.js';

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
