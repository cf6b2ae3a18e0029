/**
 * A real QEMU VM (Debian's qemu-system-x86, TCG) running a tiny Linux (Debian's cloud kernel and
 * a busybox initramfs built here), its RAM in a shared memory-backend-file: memory-only
 * snapshots through QMP, incremental by page-fingerprint comparison, exported byte for byte.
 * Fails with the reason when QEMU or the packages are missing, unless UNDERSTUDY_SKIP_QEMU=1.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { QmpClient, QmpError } from '../lib/guest/qemu.js';
import { bootQemuGuest, cloudKernel, buildInitramfs, qemuMissing } from './helpers/qemu-guest.js';
import { cli } from './helpers/cli.js';

const skip = process.env.UNDERSTUDY_SKIP_QEMU === '1';
if (skip) process.stdout.write('store-qemu: skipped because UNDERSTUDY_SKIP_QEMU=1\n');

describe.skipIf(skip)('QEMU memory-only snapshots', () => {
  let tmp = '';
  let qemu: ChildProcess | null = null;
  const MiB = 128;
  let sock = '', mem = '', store = '';

  beforeAll(async () => {
    const missing = qemuMissing();
    if (missing) throw new Error(`QEMU test cannot run: ${missing} (set UNDERSTUDY_SKIP_QEMU=1 to skip)`);
    tmp = fs.mkdtempSync(join(os.tmpdir(), 'ustore-qemu-'));
    const kernel = cloudKernel(join(os.tmpdir(), 'understudy-qemu-kernel'));
    const initrd = join(tmp, 'initrd');
    buildInitramfs(initrd);
    const guest = await bootQemuGuest({ dir: tmp, kernel, initrd, memMiB: MiB });
    qemu = guest.proc;
    sock = guest.qmp;
    mem = guest.memPath;
    store = join(tmp, 'store');
    process.stdout.write(`store-qemu: guest booted in ${guest.bootMs} ms (TCG)\n`);
  }, 90_000);

  afterAll(() => {
    if (qemu && qemu.exitCode === null) qemu.kill('SIGKILL');
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('speaks QMP: status, stop, cont, and errors', async () => {
    const q = await QmpClient.connect(sock);
    expect(await q.status()).toEqual({ running: true, status: 'running' });
    await q.execute('stop');
    expect(await q.status()).toEqual({ running: false, status: 'paused' });
    await q.execute('cont');
    expect((await q.status()).running).toBe(true);
    await expect(q.execute('no-such-command')).rejects.toThrow(QmpError);
    await expect(q.execute('no-such-command')).rejects.toThrow(/^QMP no-such-command failed: CommandNotFound: /);
    q.close();
    await expect(QmpClient.connect(join(tmp, 'nope.sock'))).rejects.toThrow(`QMP ${join(tmp, 'nope.sock')}: cannot connect (ENOENT)`);
  });

  it('a --mem-path that is not a memory-backend-file of this VM is refused, naming the VM\'s own', async () => {
    const other = join(tmp, 'other.raw');
    fs.writeFileSync(other, Buffer.alloc(1 << 20, 7));
    const wrong = join(tmp, 'wrong-store');
    const r = cli(['snapshot', '--qemu', sock, '--mem-path', other, '--to', wrong]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`understudy: snapshot: --mem-path ${other} is not the mem-path of a memory-backend-file of the VM at ${sock} (its: mem=${mem}, share=on)\n`);
    expect(fs.existsSync(join(wrong, 'manifests', '00000001.man'))).toBe(false);
    const q = await QmpClient.connect(sock);
    expect((await q.status()).running).toBe(true); // never stopped for a capture it refuses
    q.close();
  }, 30_000);

  it('snapshots, then stores only the changed pages, and exports byte for byte', async () => {
    const a = cli(['snapshot', '--qemu', sock, '--mem-path', mem, '--to', store, '--json']);
    expect(a.stderr).toBe('');
    expect(a.status).toBe(0);
    const s1 = JSON.parse(a.stdout);
    expect(s1.id).toBe('1');
    expect(s1.parent).toBe(null);
    expect(s1.rawBytes).toBe(MiB << 20);
    await new Promise((r) => setTimeout(r, 500));
    const b = cli(['snapshot', '--qemu', sock, '--mem-path', mem, '--to', store, '--json']);
    expect(b.status).toBe(0);
    const s2 = JSON.parse(b.stdout);
    expect(s2.parent).toBe('1');
    expect(s2.changedPages).toBeGreaterThan(0); // the guest appends to a tmpfs file all the time
    expect(s2.changedPages).toBeLessThan((MiB << 20) / 4096 / 4);
    expect(s2.bytes * 5).toBeLessThan(s1.bytes);
    // Stopped VM: the snapshot leaves it stopped, so the file and the checkpoint must match exactly.
    const q = await QmpClient.connect(sock);
    await q.execute('stop');
    q.close();
    const c = cli(['snapshot', '--qemu', sock, '--mem-path', mem, '--to', store, '--json']);
    expect(c.status).toBe(0);
    const s3 = JSON.parse(c.stdout);
    expect(s3.stoppedMs).toBe(0);
    const out = join(tmp, 'export.img');
    expect(cli(['export', store, s3.id, '--out', out]).status).toBe(0);
    expect(Buffer.compare(fs.readFileSync(out), fs.readFileSync(mem))).toBe(0);
    const q2 = await QmpClient.connect(sock);
    expect((await q2.status()).status).toBe('paused');
    await q2.execute('cont');
    q2.close();
    const v = cli(['verify', store]);
    expect(v.status).toBe(0);
    const ls = JSON.parse(cli(['ls', store, '--json']).stdout) as { id: string; parent: string | null }[];
    expect(ls.map((x) => [x.id, x.parent])).toEqual([['1', null], ['2', '1'], ['3', '2']]);
    const r = cli(['restore', store, '3', '--guest', 'sim']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('understudy: restore: checkpoint 3 holds memory only (no CPU state), so it cannot be resumed; use `understudy export`\n');
  }, 60_000);
});
