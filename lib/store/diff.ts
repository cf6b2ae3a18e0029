/**
 * Dirty pages of a source without a dirty log (a QEMU VM seen from outside, a series of raw
 * images): the pages whose 128-bit fingerprints differ between two images of the same size.
 */
import { kernels } from './kernels.js';

/**
 * Pages whose XXH3-128 fingerprints differ between `prev` and `next`, ascending. Hashing is one
 * native batch call per image; the loop only compares the 16-byte digests.
 * @throws RangeError if the images differ in size or are not whole pages.
 */
export function changedPages(prev: Uint8Array, next: Uint8Array, pageSize = 4096): Uint32Array {
  if (prev.byteLength !== next.byteLength) throw new RangeError(`\`prev\` (${prev.byteLength} bytes) and \`next\` (${next.byteLength} bytes) differ in size`);
  if (prev.byteLength % pageSize !== 0) throw new RangeError(`image size ${prev.byteLength} is not a multiple of the page size ${pageSize}`);
  const k = kernels();
  const aligned = (u: Uint8Array) => (u.byteOffset % 8 ? Uint8Array.prototype.slice.call(u) : u);
  const a = aligned(k.fingerprintPages(prev, { pageSize }));
  const b = aligned(k.fingerprintPages(next, { pageSize }));
  const wa = new BigUint64Array(a.buffer, a.byteOffset, a.byteLength / 8);
  const wb = new BigUint64Array(b.buffer, b.byteOffset, b.byteLength / 8);
  const n = prev.byteLength / pageSize;
  const out = new Uint32Array(n);
  let c = 0;
  for (let i = 0; i < n; i++) if (wa[2 * i] !== wb[2 * i] || wa[2 * i + 1] !== wb[2 * i + 1]) out[c++] = i;
  return out.slice(0, c);
}
