/**
 * Crash consistency: SIGKILL while checkpoints are being written and while prune/compact run, then
 * open, verify and restore; a full disk (a small tmpfs) fails one checkpoint cleanly.
 */
import { describe, expect, it, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Store, CheckpointError } from '../lib/store/index.js';
import { rng, makeImage, mutate } from './helpers/images.js';
import { cli, root, script } from './helpers/cli.js';

const PS = 4096;
const child = join(root, 'test', 'helpers', 'store-child.ts');
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Runs the child until it printed `ready` and then for `ms` more, then SIGKILLs it; returns its stdout lines. */
async function runAndKill(args: string[], ms: number): Promise<string[]> {
  const p = script(child, args);
  let out = '';
  let err = '';
  p.stdout.on('data', (c) => (out += c));
  p.stderr.on('data', (c) => (err += c));
  await new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (out.includes('ready\n') || out.includes('done\n')) {
        clearInterval(t);
        resolve();
      }
    }, 5);
    p.on('exit', (code, signal) => {
      clearInterval(t);
      if (!out.includes('done') && signal !== 'SIGKILL') reject(new Error(`child exited early (${code}): ${err}`));
      else resolve();
    });
  });
  await new Promise((r) => setTimeout(r, ms));
  p.kill('SIGKILL');
  await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.on('exit', r)));
  return out.split('\n').filter(Boolean);
}

describe('crash consistency', () => {
  it('kill -9 at random instants while checkpointing: every committed checkpoint restores, the torn tail is ignored', async () => {
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'ustore-crash-'));
    const r = rng(99);
    const expected = new Map<string, string>();
    let tails = 0;
    try {
      for (let round = 0; round < 3; round++) {
        const lines = await runAndKill(['write', dir, String(round + 1)], 100 + Math.floor(r() * 900));
        for (const l of lines) {
          const m = /^committed (\d+) ([0-9a-f]{64})$/.exec(l);
          if (m) expected.set(m[1]!, m[2]!);
        }
        const s = Store.open(dir);
        const rep = s.verify();
        expect(rep.corrupt).toEqual([]);
        expect(rep.ok).toBe(true);
        tails += rep.tornTails.length;
        // Everything the child reported committed is there and exact (a checkpoint committed just
        // before the kill but not yet reported may exist too: it must verify as well).
        for (const [id, h] of expected) expect(sha(s.readMemory(id).memory)).toBe(h);
        expect(s.ids().length).toBeGreaterThanOrEqual(expected.size);
        s.close();
      }
      expect(expected.size).toBeGreaterThan(0);
      process.stdout.write(`crash test: ${expected.size} checkpoints reported committed over 3 kills, ${tails} torn tail(s) seen\n`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('kill -9 during prune and compact never loses a kept page', async () => {
    const r = rng(7);
    let finished = 0;
    for (let round = 0; round < 3; round++) {
      const dir = fs.mkdtempSync(join(os.tmpdir(), 'ustore-gc-'));
      try {
        const img = makeImage(r, 1024, PS);
        const s = Store.open(dir, { create: true, segmentBytes: 1 << 20 });
        const w = s.writer();
        const hashes: string[] = [];
        w.commit(img);
        hashes.push(sha(img));
        for (let c = 0; c < 12; c++) {
          w.commit(img, { dirty: mutate(r, img, PS, 100, c % 2 ? 'sparse' : 'whole') });
          hashes.push(sha(img));
        }
        s.close();
        const lines = await runAndKill(['gc', dir, '4'], Math.floor(r() * 60));
        finished += lines.includes('done') ? 1 : 0;
        const s2 = Store.open(dir);
        const ids = s2.ids();
        expect(ids.slice(-4)).toEqual(['10', '11', '12', '13']);
        for (const id of ids) expect(sha(s2.readMemory(id).memory)).toBe(hashes[Number(id) - 1]);
        expect(s2.verify().corrupt).toEqual([]);
        // finishing the job after the crash
        s2.prune({ keep: 4 });
        s2.compact();
        expect(s2.ids()).toEqual(['10', '11', '12', '13']);
        for (const id of s2.ids()) expect(sha(s2.readMemory(id).memory)).toBe(hashes[Number(id) - 1]);
        expect(s2.verify().ok).toBe(true);
        s2.close();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    process.stdout.write(`gc crash test: ${3 - finished} of 3 runs killed before prune+compact finished\n`);
    expect(finished).toBeLessThan(3);
  });
});

function tryMount(dir: string, size: string): string | null {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0 ? null : (r.stderr || r.error?.message || `mount exited ${r.status}`).trim();
}

describe('full disk', () => {
  it('ENOSPC fails that checkpoint only; its pages go into the next attempt', (ctx) => {
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'ustore-full-'));
    const why = tryMount(dir, '1m');
    let injected: ReturnType<typeof vi.spyOn> | null = null;
    if (why) {
      // No tmpfs (not root?): inject ENOSPC at the fs layer instead, and say so.
      process.stdout.write(`full-disk test: cannot mount a tmpfs (${why}); injecting ENOSPC into fs.writeSync instead\n`);
    }
    try {
      const r = rng(11);
      const img = makeImage(r, 512, PS, { zero: 0.9, library: 0.05, text: 0.05 });
      const s = Store.open(join(dir, 'st'), { create: true });
      const w = s.writer();
      const first = w.commit(img);
      expect(first.id).toBe('1');
      const dirty1 = mutate(r, img, PS, 400, 'whole'); // 1.6 MiB of random pages: does not fit
      if (why) {
        const real = fs.writeSync;
        injected = vi.spyOn(fs, 'writeSync').mockImplementation(((fd: number, ...rest: unknown[]) => {
          const e = new Error('ENOSPC: no space left on device, write') as NodeJS.ErrnoException;
          e.code = 'ENOSPC';
          void real; void fd; void rest;
          throw e;
        }) as typeof fs.writeSync);
      }
      let err: unknown = null;
      try {
        w.commit(img, { dirty: dirty1 });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CheckpointError);
      expect((err as Error).message).toMatch(/^checkpoint failed \(ENOSPC\): .*; earlier checkpoints are intact$/);
      expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
      expect(s.ids()).toEqual(['1']);
      if (injected) injected.mockRestore();
      else execFileSync('mount', ['-o', 'remount,size=16m', dir]);
      const rep = s.verify();
      expect(rep.ok).toBe(true);
      expect(rep.checkpoints).toEqual([{ id: '1', ok: true, problems: [] }]);
      // the next attempt carries the failed one's pages
      const dirty2 = mutate(r, img, PS, 3, 'sparse');
      const union = Uint32Array.from(new Set([...dirty1, ...dirty2])).sort();
      const second = w.commit(img, { dirty: union });
      expect(second.id).toBe('2');
      expect(Buffer.compare(Buffer.from(s.readMemory('2').memory), Buffer.from(img))).toBe(0);
      expect(s.verify().ok).toBe(true);
      w.close();
      s.close();
      ctx.annotate?.(why ? 'fault injection' : 'tmpfs');
    } finally {
      if (injected) injected.mockRestore();
      if (!why) spawnSync('umount', [dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`understudy checkpoint` exits 1 when its last attempt failed (the store is behind the guest)', (ctx) => {
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'ustore-full-cli-'));
    const why = tryMount(dir, '2m');
    try {
      if (why) {
        process.stdout.write(`full-disk CLI test skipped: cannot mount a tmpfs (${why})\n`);
        ctx.skip();
        return;
      }
      // The first checkpoint (a fresh guest: zero pages) fits; the uniform workload's random
      // writes then dirty far more than 2 MiB between checkpoints, so every later attempt fails.
      const r = cli(['checkpoint', '--guest', 'sim', '--workload', 'uniform', '--memory', '16', '--every', '50ms',
        '--steps', '600000', '--seed', '3', '--to', join(dir, 'st')]);
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/^final [0-9a-f]{16}\n$/);
      expect(r.stderr).toMatch(/checkpoint failed: checkpoint failed \(ENOSPC\)/);
      expect(r.stderr).toContain(`checkpoint: the last attempt failed, so the newest checkpoint in ${join(dir, 'st')} is older than the guest's last pause\n`);
      const s = Store.open(join(dir, 'st'));
      expect(s.ids()).toEqual(['1']);
      expect(s.verify().ok).toBe(true);
      s.close();
    } finally {
      if (!why) spawnSync('umount', [dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
