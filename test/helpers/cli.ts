/**
 * Test-only: runs the `understudy` CLI (and helper scripts) from source in a child process (tsx).
 */
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const main = join(root, 'lib', 'cli', 'main.ts');
export const nodeArgs = ['--import', 'tsx'];

export function cli(args: string[], opts: { env?: Record<string, string> } = {}): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...nodeArgs, main, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 120_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function cliAsync(args: string[]) {
  return spawn(process.execPath, [...nodeArgs, main, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function script(file: string, args: string[]) {
  return spawn(process.execPath, [...nodeArgs, file, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
}
