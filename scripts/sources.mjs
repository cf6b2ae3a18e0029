#!/usr/bin/env node
// The one list of native sources. binding.gyp (node-gyp) and scripts/sanitize.mjs (the ASan/UBSan
// build of the kernels and the fuzz harness) both ask this script, so the two builds never drift.
//
//   node scripts/sources.mjs <group>
//
// groups:
//   kernels   ISA-independent kernel code, CPU detection, runtime (no N-API)
//   avx2      translation units compiled with the AVX2 target flags
//   avx512    translation units compiled with the AVX-512 target flags
//   addon     N-API bindings, VMM, simulated guest, workloads (needs node-addon-api)
//   guest     the part of `addon` with no N-API: workloads, shared guest host code, the sim
//             (the sanitizer build links it into native/test/ harnesses)
//   flags-avx2 / flags-avx512   the target flags for those groups
// Paths are printed relative to the package root, one per line.
import { readdirSync, statSync } from 'node:fs';
import { join, relative, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export const FLAGS = {
  avx2: ['-mavx2', '-mfma', '-mbmi', '-mbmi2', '-mlzcnt', '-mpopcnt'],
  avx512: ['-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mavx2', '-mfma', '-mbmi', '-mbmi2', '-mlzcnt', '-mpopcnt'],
};

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(relative(root, p).split('\\').join('/'));
  }
  return out;
}

const isSource = (p) => /\.(cc|c)$/.test(p);
// Freestanding guest payload code and test harnesses are never linked into the addon.
const excluded = (p) => p.startsWith('native/payload/') || p.startsWith('native/test/');
const isaOf = (p) => {
  const m = /(?:^|\/)(avx2|avx512)(?:_[a-z0-9_]+)?\.cc$/.exec(p);
  return m ? m[1] : null;
};
const isKernel = (p) => /^native\/(kernels|cpu|runtime)\//.test(p);

export function sources(group) {
  const all = walk(join(root, 'native')).filter((p) => isSource(p) && !excluded(p));
  switch (group) {
    case 'kernels':
      return all.filter((p) => isKernel(p) && isaOf(p) === null);
    case 'avx2':
    case 'avx512':
      return all.filter((p) => isaOf(p) === group);
    case 'addon':
      return all.filter((p) => !isKernel(p) && isaOf(p) === null);
    case 'guest':
      return all.filter((p) => /^native\/(guest|sim|workloads)\//.test(p));
    default:
      throw new Error(`unknown source group: ${group}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const group = process.argv[2] ?? '';
  const list = group.startsWith('flags-') ? FLAGS[group.slice(6)] : sources(group);
  if (!list) {
    console.error(`unknown group: ${group}`);
    process.exit(2);
  }
  process.stdout.write(list.join('\n') + '\n');
}
