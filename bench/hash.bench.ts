/**
 * hashPages / fingerprintPages / zeroPages on 64 MiB of 4 KiB pages, against a per-page call of
 * @node-rs/xxhash (a well-known XXH3 binding) and node:crypto SHA-256, with one XXH3 call over
 * the same bytes as the ceiling; 1 and 2 threads; per ISA.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { xxh3 as rs } from '@node-rs/xxhash';
import { fingerprintPages, hashPages, isa, setIsa, supportedIsas, xxh3, zeroPages } from '../lib/index.js';
import { fmt, measure, type BenchContext } from './harness.js';

export const name = 'hash';

export async function run(ctx: BenchContext): Promise<void> {
  const pageSize = 4096;
  const rows = [];
  const time = ctx.quick ? 150 : 500;
  const start = isa();
  for (const mib of [64, 4]) {
    const bytes = mib * 1024 * 1024;
    const pages = bytes / pageSize;
    const data = randomFillSync(new Uint8Array(bytes));
    const zeros = new Uint8Array(bytes);
    // SHA-256 is slow: measured on the first 1024 pages and scaled (GB/s does not depend on it).
    const shaPages = Math.min(pages, 1024);
    const base = await measure(
      {
        rsPerPage: () => {
          for (let i = 0; i < pages; i++) rs.xxh64(data.subarray(i * pageSize, (i + 1) * pageSize), 0n);
        },
        rsWhole: () => rs.xxh64(data, 0n),
        sha: () => {
          for (let i = 0; i < shaPages; i++) createHash('sha256').update(data.subarray(i * pageSize, (i + 1) * pageSize)).digest();
        },
      },
      { quick: ctx.quick, time },
    );
    for (const name of supportedIsas()) {
      setIsa(name);
      const r = await measure(
        {
          whole: () => xxh3(data, 0n),
          h1: () => hashPages(data, { pageSize, threads: 1 }),
          h2: () => hashPages(data, { pageSize, threads: 2 }),
          h1seed: () => hashPages(data, { pageSize, seed: 12345n, threads: 1 }),
          fp1: () => fingerprintPages(data, { pageSize, threads: 1 }),
          fp2: () => fingerprintPages(data, { pageSize, threads: 2 }),
          z1: () => zeroPages(zeros, { pageSize, threads: 1 }),
          z2: () => zeroPages(zeros, { pageSize, threads: 2 }),
        },
        { quick: ctx.quick, time },
      );
      const g = (ns: number) => fmt.gbps(bytes, ns);
      rows.push({
        input: `${mib} MiB`,
        isa: name,
        'one XXH3 call GB/s': g(r.whole!.timeNs),
        'hashPages 1T GB/s': g(r.h1!.timeNs),
        'hashPages 2T GB/s': g(r.h2!.timeNs),
        'seeded 1T GB/s': g(r.h1seed!.timeNs),
        '1T / one call': fmt.ratio(r.whole!.timeNs, r.h1!.timeNs),
        '2T / 1T': fmt.ratio(r.h1!.timeNs, r.h2!.timeNs),
        'node-rs per page GB/s': g(base.rsPerPage!.timeNs),
        'node-rs one call GB/s': g(base.rsWhole!.timeNs),
        'sha256 per page GB/s': fmt.gbps(shaPages * pageSize, base.sha!.timeNs),
        'fingerprint 1T/2T GB/s': `${g(r.fp1!.timeNs)} / ${g(r.fp2!.timeNs)}`,
        'zeroPages(all zero) 1T/2T GB/s': `${g(r.z1!.timeNs)} / ${g(r.z2!.timeNs)}`,
      });
    }
  }
  setIsa(start);
  ctx.report({
    family: 'hash',
    title: 'hashPages on 4 KiB pages',
    rows,
    notes: [
      '1T / one call: hashPages with 1 thread vs one XXH3-64 call over the same bytes (target >= 0.9).',
      '2T / 1T: speed-up from a second thread (target > 1; memory-bound near 1.5x).',
      'node-rs: @node-rs/xxhash xxh3.xxh64 called once per page from JS, and once over the whole input.',
      'zeroPages on all-zero pages is its worst case (every byte read); a page with data stops at its first nonzero block.',
    ],
  });
}
