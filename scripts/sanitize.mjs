#!/usr/bin/env node
// npm run test:sanitize: builds the native kernels (the source lists of scripts/sources.mjs,
// never a copy) with AddressSanitizer + UndefinedBehaviorSanitizer, links every harness
// native/test/<name>.cc into its own executable in build-sanitize/, and runs each one under a
// time budget. Exits non-zero on any compile error, sanitizer report or failed check.
//
// Compiler: $CXX, else g++. Harnesses run their deterministic driver (main); when clang's
// libFuzzer runtime is present (`clang++ -fsanitize=fuzzer` links), each harness is also built
// with -DUNDERSTUDY_LIBFUZZER and run under libFuzzer for part of the budget.
//
//   UNDERSTUDY_SANITIZE_SECONDS  total time budget for running harnesses (default 60)
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join, dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { sources, FLAGS } from './sources.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build-sanitize');
const cxx = process.env.CXX || 'g++';
const budget = Number(process.env.UNDERSTUDY_SANITIZE_SECONDS ?? 60);
const SAN = ['-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer', '-g', '-O1'];
const COMMON = ['-std=c++17', '-Wall', '-Wextra', '-Wno-unused-parameter', '-I', join(root, 'native')];
const LIBS = ['-llz4', '-lpthread'];

mkdirSync(join(out, 'obj'), { recursive: true });

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...opts });
    p.on('close', (code, signal) => resolve(code === 0 ? 0 : code ?? (signal ? 128 : 1)));
  });
}

async function pool(jobs, width) {
  const results = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]();
      }
    }),
  );
  return results;
}

const objName = (src) => join(out, 'obj', src.replace(/^native\//, '').replace(/[/.]/g, '_') + '.o');
const units = [
  ...sources('kernels').map((s) => ({ src: s, flags: [] })),
  ...sources('avx2').map((s) => ({ src: s, flags: FLAGS.avx2 })),
  ...sources('avx512').map((s) => ({ src: s, flags: FLAGS.avx512 })),
];
const width = Math.max(1, Math.min(os.cpus().length, 4));

console.log(`sanitize: compiling ${units.length} kernel sources with ${cxx} ${SAN.join(' ')}`);
const codes = await pool(
  units.map((u) => () => run(cxx, [...COMMON, ...SAN, ...u.flags, '-c', u.src, '-o', objName(u.src)])),
  width,
);
if (codes.some((c) => c !== 0)) {
  console.error('sanitize: kernel compilation failed');
  process.exit(1);
}
const objects = units.map((u) => objName(u.src));

const testDir = join(root, 'native', 'test');
const harnesses = existsSync(testDir) ? readdirSync(testDir).filter((f) => f.endsWith('.cc')).sort() : [];
if (harnesses.length === 0) {
  console.log('sanitize: no harnesses in native/test/');
  process.exit(0);
}

// libFuzzer needs clang's compiler-rt (libclang_rt.fuzzer); Debian's clang-14 alone lacks it.
function libFuzzerAvailable() {
  const probe = join(out, 'probe.cc');
  writeFileSync(probe, 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n');
  const r = spawnSync('clang++', ['-fsanitize=fuzzer,address,undefined', probe, '-o', join(out, 'probe')], { stdio: 'ignore' });
  return r.status === 0;
}
const withLibFuzzer = libFuzzerAvailable();
if (!withLibFuzzer) {
  console.log('sanitize: clang libFuzzer runtime not available; running the deterministic drivers only');
}

// The libFuzzer variant: the same sources and per-ISA flags, compiled by clang into their own
// objects (sanitizer runtimes of gcc and clang do not mix), linked with -fsanitize=fuzzer.
let clangObjects = null;
async function buildWithClang(harness, exe) {
  const CLANG_SAN = ['-fsanitize=fuzzer-no-link,address,undefined', '-fno-sanitize-recover=all', '-g', '-O1'];
  if (clangObjects === null) {
    mkdirSync(join(out, 'obj-clang'), { recursive: true });
    const objs = units.map((u) => join(out, 'obj-clang', basename(objName(u.src))));
    const rc = await pool(units.map((u, i) => () => run('clang++', [...COMMON, ...CLANG_SAN, ...u.flags, '-c', u.src, '-o', objs[i]])), width);
    if (rc.some((c) => c !== 0)) return 1;
    clangObjects = objs;
  }
  return run('clang++', [
    ...COMMON, '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=all', '-g', '-O1',
    '-DUNDERSTUDY_LIBFUZZER', join('native', 'test', harness), ...clangObjects, ...LIBS, '-o', exe,
  ]);
}

const builds = await pool(
  harnesses.map((h) => () => {
    const exe = join(out, basename(h, '.cc'));
    return run(cxx, [...COMMON, ...SAN, join('native', 'test', h), ...objects, ...LIBS, '-o', exe]);
  }),
  width,
);
if (builds.some((c) => c !== 0)) {
  console.error('sanitize: harness build failed');
  process.exit(1);
}

const env = {
  ...process.env,
  ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1:strict_string_checks=1',
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
};
const per = Math.max(2, Math.floor(budget / harnesses.length / (withLibFuzzer ? 2 : 1)));
let failed = 0;
for (const h of harnesses) {
  const name = basename(h, '.cc');
  console.log(`sanitize: running ${name} (${per} s)`);
  const code = await run(join(out, name), [], { env: { ...env, UNDERSTUDY_FUZZ_SECONDS: String(per) } });
  if (code !== 0) {
    console.error(`sanitize: ${name} FAILED (exit ${code})`);
    failed++;
  }
  if (withLibFuzzer) {
    const exe = join(out, `${name}-libfuzzer`);
    const b = await buildWithClang(h, exe);
    if (b !== 0) {
      console.error(`sanitize: ${name} libFuzzer build failed`);
      failed++;
      continue;
    }
    const code2 = await run(exe, [`-max_total_time=${per}`], { env });
    if (code2 !== 0) {
      console.error(`sanitize: ${name} under libFuzzer FAILED (exit ${code2})`);
      failed++;
    }
  }
}
if (failed) {
  console.error(`sanitize: ${failed} failure(s)`);
  process.exit(1);
}
console.log(`sanitize: all ${harnesses.length} harness(es) passed`);
