/**
 * Plain TypeScript references for the copy kernels: one page at a time.
 */
export function gatherPagesRef(memory: Uint8Array, pfns: Uint32Array, pageSize: number): Uint8Array {
  const out = new Uint8Array(pfns.length * pageSize);
  pfns.forEach((pfn, i) => out.set(memory.subarray(pfn * pageSize, (pfn + 1) * pageSize), i * pageSize));
  return out;
}

export function scatterPagesRef(memory: Uint8Array, pfns: Uint32Array, pages: Uint8Array, pageSize: number): void {
  pfns.forEach((pfn, i) => memory.set(pages.subarray(i * pageSize, (i + 1) * pageSize), pfn * pageSize));
}
