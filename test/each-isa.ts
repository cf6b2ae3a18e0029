/**
 * Runs a block of tests once per kernel path (scalar, avx2, avx512): on the paths this CPU can
 * run, with that path selected (and the previous one restored after); the others are skipped
 * with a printed reason.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { isa, setIsa, supportedIsas, type IsaName } from '../lib/index.js';

const ALL: IsaName[] = ['scalar', 'avx2', 'avx512'];

export function forEachIsa(title: string, body: (name: IsaName) => void): void {
  const supported = supportedIsas();
  for (const name of ALL) {
    const runnable = supported.includes(name);
    if (!runnable) console.log(`${title} (${name}): skipped, this CPU cannot run the ${name} path (supported: ${supported.join(', ')})`);
    describe.skipIf(!runnable)(`${title} (${name})`, () => {
      let previous: IsaName;
      beforeAll(() => {
        previous = isa();
        setIsa(name);
      });
      afterAll(() => {
        setIsa(previous);
      });
      body(name);
    });
  }
}
