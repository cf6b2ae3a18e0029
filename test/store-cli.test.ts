/**
 * The store commands end to end in child processes: snapshot of raw images, ls --json, export
 * byte for byte, verify's exit status on a damaged store, inspect, prune; and, with the guests,
 * checkpoint + restore of every workload giving the same `final` as an uninterrupted run.
 */
import { describe, expect, it, beforeEach, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { rng, makeImage, mutate } from './helpers/images.js';
import { cli, root } from './helpers/cli.js';
import { Store } from '../lib/store/index.js';
import type { Guest, GuestOptions } from '../lib/guest/types.js';

// The guests, when this build has them (lib/guest/index.ts).
async function createGuest(o: GuestOptions): Promise<Guest> {
  const spec = '../lib/guest/index.js';
  return ((await import(spec)) as { createGuest(o: GuestOptions): Promise<Guest> }).createGuest(o);
}

const PS = 4096;
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(join(os.tmpdir(), 'ustore-cli-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('store commands on raw images', () => {
  it('snapshot --image, ls --json, export, inspect, verify, prune', () => {
    const r = rng(21);
    const a = makeImage(r, 256, PS);
    const b = a.slice();
    mutate(r, b, PS, 20, 'whole');
    fs.writeFileSync(join(dir, 'a.img'), a);
    fs.writeFileSync(join(dir, 'b.img'), b);
    const st = join(dir, 'st');
    const s = cli(['snapshot', '--to', st, '--image', join(dir, 'a.img'), '--image', join(dir, 'b.img'), '--json']);
    expect(s.stderr).toBe('');
    expect(s.status).toBe(0);
    const rep = JSON.parse(s.stdout);
    expect(rep.rawBytes).toBe(2 * 256 * PS);
    expect(rep.checkpoints.map((c: { id: string }) => c.id)).toEqual(['1', '2']);
    expect(rep.storedBytes).toBeLessThan(rep.perVmStoreBytes);
    const ls = JSON.parse(cli(['ls', st, '--json']).stdout) as { id: string; parent: string | null; bytes: number; label: string }[];
    // b is stored against a (same size): its checkpoint names a's as parent
    expect(ls.map((c) => [c.id, c.parent, c.label])).toEqual([['1', null, join(dir, 'a.img')], ['2', '1', join(dir, 'b.img')]]);
    expect(ls.map((c) => c.bytes)).toEqual(rep.checkpoints.map((c: { bytes: number }) => c.bytes));
    for (const [id, img] of [['1', a], ['2', b]] as const) {
      const out = join(dir, `out${id}.img`);
      const e = cli(['export', st, id, '--out', out]);
      expect(e.status).toBe(0);
      expect(Buffer.compare(fs.readFileSync(out), Buffer.from(img))).toBe(0);
    }
    const ins = cli(['inspect', st, 'latest', '--json']);
    expect(ins.status).toBe(0);
    const detail = JSON.parse(ins.stdout);
    expect([detail.id, detail.pageCount, detail.cpuBytes, detail.stats.dirtyPages]).toEqual(['2', 256, 0, 256]);
    expect(detail.stats.unchangedPages + detail.stats.dedupPages).toBeGreaterThan(100);
    const v = cli(['verify', st]);
    expect(v.status).toBe(0);
    expect(v.stdout.trim().split('\n').slice(-3)).toEqual(['checkpoint 1: ok', 'checkpoint 2: ok', 'ok: 2 checkpoint(s) intact']);
    const miss = cli(['export', st, '7', '--out', join(dir, 'x')]);
    expect(miss.status).toBe(1);
    expect(miss.stderr).toBe(`understudy: export: no checkpoint 7 in ${st}\n`);
    const p = cli(['prune', st, '--keep', '1']);
    expect(p.status).toBe(0);
    expect(p.stdout.split('\n')[0]).toBe('removed 1 checkpoint(s): 1; rewrote 0 manifest(s) whole');
    const e2 = cli(['export', st, '2', '--out', join(dir, 'again.img')]);
    expect(e2.status).toBe(0);
    expect(Buffer.compare(fs.readFileSync(join(dir, 'again.img')), Buffer.from(b))).toBe(0);
  });

  it('verify exits 1 and names the damage', () => {
    const img = makeImage(rng(22), 64, PS, { zero: 0, library: 0, text: 0 });
    fs.writeFileSync(join(dir, 'a.img'), img);
    const st = join(dir, 'st');
    expect(cli(['snapshot', '--to', st, '--image', join(dir, 'a.img'), '--no-compare']).status).toBe(0);
    const seg = join(st, 'segments', fs.readdirSync(join(st, 'segments'))[0]!);
    const bytes = fs.readFileSync(seg);
    bytes[32 + 48 + 7]! ^= 0xff;
    fs.writeFileSync(seg, bytes);
    const v = cli(['verify', st]);
    expect(v.status).toBe(1);
    expect(v.stdout).toContain(`corrupt: ${seg} @32: record at offset 32 fails its checksum\n`);
    expect(v.stdout).toContain('checkpoint 1: DAMAGED: 1 page(s): record 1:32 is missing or corrupt\n');
    expect(v.stdout.trim().split('\n').at(-1)).toBe('FAILED: 1 corrupt item(s), 1 checkpoint(s) damaged');
    const usage = cli(['verify']);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toBe('understudy: verify: a store directory is required; see `understudy verify --help`\n');
  });
});

const haveGuests = fs.existsSync(join(root, 'lib', 'guest', 'index.ts'));
if (!haveGuests) process.stdout.write('store-cli: guest round trips skipped: lib/guest/index.ts (the sim guest) is not in this build yet\n');

describe.skipIf(!haveGuests)('checkpoint + restore round trips (sim guest)', () => {
  for (const workload of ['uniform', 'hotset', 'sequential', 'sparse', 'memcheck', 'kv'] as const) {
    it(`${workload}: restore of a mid-run checkpoint finishes with the uninterrupted run's final`, async () => {
      // the reference: an uninterrupted run, in process (the CLI's `run` prints the same value)
      const g = await createGuest({ type: 'sim', workload, seed: 5, memoryMiB: 16, steps: 50000 });
      const final = (await g.wait()).final;
      await g.close();
      expect(final).toMatch(/^[0-9a-f]{16}$/);
      const st = join(dir, workload);
      const c = cli(['checkpoint', '--guest', 'sim', '--workload', workload, '--seed', '5', '--memory', '16', '--steps', '50000', '--to', st, '--every', '10ms']);
      expect(c.status).toBe(0);
      expect(c.stdout).toBe(`final ${final}\n`);
      const s = Store.open(st);
      const ids = s.ids();
      expect(ids.length).toBeGreaterThan(0);
      ids.forEach((id, i) => expect(s.info(id).parent).toBe(i === 0 ? null : ids[i - 1]));
      s.close();
      const mid = ids[Math.floor(ids.length / 2)]!;
      const r = cli(['restore', st, mid, '--guest', 'sim']);
      expect(r.stderr).toMatch(/^restored checkpoint \d+ into a sim guest/);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`final ${final}\n`);
    });
  }

  it('snapshot --vms 2: each guest restores from the group snapshot to its own final', async () => {
    const st = join(dir, 'group');
    const finals: string[] = [];
    for (const seed of [5, 6]) {
      const g = await createGuest({ type: 'sim', workload: 'kv', seed, memoryMiB: 16 });
      finals.push((await g.wait()).final);
      await g.close();
    }
    const s = cli(['snapshot', '--to', st, '--vms', '2', '--workload', 'kv', '--seed', '5', '--memory', '16', '--guest', 'sim', '--after', '20ms', '--json']);
    expect(s.stderr).toBe('');
    expect(s.status).toBe(0);
    const rep = JSON.parse(s.stdout);
    expect(rep.checkpoints.map((c: { id: string }) => c.id)).toEqual(['1', '2']);
    for (const [i, id] of ['1', '2'].entries()) {
      const r = cli(['restore', st, id, '--guest', 'sim']);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`final ${finals[i]}\n`);
    }
  });
});

const skipKvm = process.env.UNDERSTUDY_SKIP_KVM === '1';
if (skipKvm) process.stdout.write('store-cli: kvm round trip skipped because UNDERSTUDY_SKIP_KVM=1\n');

describe.skipIf(!haveGuests || skipKvm)('checkpoint + restore round trip (kvm guest)', () => {
  it('kv on kvm: restore of a mid-run checkpoint finishes with the uninterrupted run\'s final', () => {
    const common = ['--guest', 'kvm', '--workload', 'kv', '--seed', '3', '--memory', '16', '--steps', '50000'];
    const ref = cli(['run', ...common]);
    expect(ref.stderr).not.toMatch(/kvm guest unavailable/);
    expect(ref.status).toBe(0);
    const final = /^final ([0-9a-f]{16})$/m.exec(ref.stdout)?.[1];
    const st = join(dir, 'kvm');
    const c = cli(['checkpoint', ...common, '--to', st, '--every', '10ms']);
    expect(c.status).toBe(0);
    expect(c.stdout).toBe(`final ${final}\n`);
    const ls = JSON.parse(cli(['ls', st, '--json']).stdout) as { id: string }[];
    const r = cli(['restore', st, ls[Math.floor(ls.length / 2)]!.id, '--guest', 'kvm']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`final ${final}\n`);
  });
});
