/**
 * Loads the native addon (prebuild for this platform if shipped, else the local node-gyp build).
 *
 * Native exports are snake_case and internal. Each family's TypeScript module (lib/kernels/*.ts,
 * lib/guest/*.ts) declares the typed shape of the functions it uses and wraps them with argument
 * validation; nothing outside lib/ should call `native` directly.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
// Both lib/native.ts (tests, tsx) and dist/native.js sit one folder below the package root.
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

type NodeGypBuild = (dir: string) => unknown;
const load = require('node-gyp-build') as NodeGypBuild;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeFn = (...args: any[]) => any;

export const native = load(packageRoot) as Record<string, NativeFn>;
