import { describe, expect, it } from 'vitest';
import { isa, setIsa, supportedIsas } from '../lib/index.js';

describe('cpu dispatch', () => {
  it('names a supported path and always offers scalar', () => {
    const all = supportedIsas();
    expect(all).toContain('scalar');
    expect(all).toContain(isa());
  });

  it('can switch to every supported path and back', () => {
    const start = isa();
    for (const name of supportedIsas()) expect(setIsa(name)).toBe(name);
    setIsa(start);
    expect(isa()).toBe(start);
  });

  it('rejects unknown names with a RangeError naming the argument', () => {
    expect(() => setIsa('sse9' as never)).toThrow(RangeError);
    expect(() => setIsa('sse9' as never)).toThrow(/`isa` must be one of scalar, avx2, avx512, got sse9/);
  });
});
