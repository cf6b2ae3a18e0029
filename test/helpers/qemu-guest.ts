/**
 * Tests and benchmarks only: a tiny Linux guest for QEMU. The kernel comes from Debian's cloud
 * kernel package (downloaded with `apt-get download`, unpacked with `dpkg-deb -x`), the
 * initramfs is built here from Debian's busybox-static: a newc cpio archive with an /init script
 * (by default one that appends to a log in a loop) which says READY on the serial console.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';
import { QmpClient } from '../../lib/guest/qemu.js';

/** Why QEMU tests cannot run here, or null. */
export function qemuMissing(): string | null {
  for (const [bin, pkg] of [['qemu-system-x86_64', 'qemu-system-x86'], ['busybox', 'busybox-static'], ['dpkg-deb', 'dpkg'], ['apt-get', 'apt']] as const) {
    if (spawnSync('which', [bin]).status !== 0) return `${bin} not found (install Debian's ${pkg})`;
  }
  const bb = spawnSync('file', ['-L', '/bin/busybox']);
  if (bb.status === 0 && /dynamically linked/.test(String(bb.stdout))) return '/bin/busybox is not the static build (install busybox-static)';
  return null;
}

/** Downloads and unpacks the cloud kernel into `cacheDir` once; returns the vmlinuz path. */
export function cloudKernel(cacheDir: string): string {
  fs.mkdirSync(cacheDir, { recursive: true });
  const done = join(cacheDir, 'vmlinuz');
  if (fs.existsSync(done)) return done;
  const dep = execFileSync('apt-cache', ['depends', 'linux-image-cloud-amd64'], { encoding: 'utf8' });
  const m = /Depends: (linux-image-[^\s]+-cloud-amd64)/.exec(dep);
  if (!m) throw new Error(`cannot find the kernel package behind linux-image-cloud-amd64 (apt-cache depends said: ${dep.trim()})`);
  execFileSync('apt-get', ['download', m[1]!], { cwd: cacheDir, stdio: 'pipe' });
  const deb = fs.readdirSync(cacheDir).find((f) => f.startsWith(m[1]!) && f.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${m[1]} left no .deb`);
  const x = join(cacheDir, 'x');
  execFileSync('dpkg-deb', ['-x', join(cacheDir, deb), x]);
  const boot = fs.readdirSync(join(x, 'boot')).find((f) => f.startsWith('vmlinuz-'));
  if (!boot) throw new Error('the kernel package has no /boot/vmlinuz-*');
  fs.copyFileSync(join(x, 'boot', boot), done);
  fs.rmSync(x, { recursive: true, force: true });
  fs.rmSync(join(cacheDir, deb), { force: true });
  return done;
}

function newcEntry(name: string, mode: number, data: Uint8Array, ino: number): Buffer {
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const nameBytes = Buffer.from(name + '\0');
  const head = '070701' + [ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0].map(hex).join('');
  const h = Buffer.concat([Buffer.from(head), nameBytes]);
  const pad1 = Buffer.alloc((4 - (h.length % 4)) % 4);
  const pad2 = Buffer.alloc((4 - (data.length % 4)) % 4);
  return Buffer.concat([h, pad1, Buffer.from(data), pad2]);
}

/** What /init prints on the serial console once the workload runs. */
export const READY_LINE = 'UNDERSTUDY-READY';

/** Mounts /proc, /dev and a tmpfs /tmp: the start of every /init script here. */
export const INIT_PREAMBLE = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox mount -t tmpfs tmp /tmp
`;

/** The default /init: 4 MiB of ballast, then a log line every 50 ms, forever. */
export const TICK_INIT = `${INIT_PREAMBLE}/bin/busybox dd if=/dev/zero of=/tmp/ballast bs=1M count=4 2>/dev/null
echo ${READY_LINE} > /dev/ttyS0
i=0
while true; do
  i=$((i+1))
  echo "tick $i $i $i" >> /tmp/log
  /bin/busybox sleep 0.05
done
`;

/**
 * Writes a newc initramfs with busybox (every applet reached through /bin/busybox or the
 * /bin/sh link) and `init` as /init. The script must print READY_LINE to /dev/ttyS0 when ready.
 */
export function buildInitramfs(file: string, init: string = TICK_INIT): void {
  const entries: Buffer[] = [];
  let ino = 1;
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp']) entries.push(newcEntry(d, 0o40755, new Uint8Array(0), ino++));
  entries.push(newcEntry('bin/busybox', 0o100755, fs.readFileSync('/bin/busybox'), ino++));
  entries.push(newcEntry('bin/sh', 0o120777, Buffer.from('busybox'), ino++));
  entries.push(newcEntry('init', 0o100755, Buffer.from(init), ino++));
  entries.push(newcEntry('TRAILER!!!', 0, new Uint8Array(0), 0));
  fs.writeFileSync(file, Buffer.concat(entries));
}

export interface BootOptions {
  /** Directory for the QMP socket, the RAM file and the serial log. */
  dir: string;
  kernel: string;
  initrd: string;
  memMiB: number;
  /** 'kvm' tries KVM first and falls back to TCG (QEMU's own fallback); default 'tcg'. */
  accel?: 'tcg' | 'kvm';
  bootTimeoutMs?: number;
}

export interface BootedGuest {
  proc: ChildProcess;
  /** QMP unix socket. */
  qmp: string;
  /** The shared memory-backend-file holding guest RAM. */
  memPath: string;
  serial: string;
  /** The accelerator QEMU ended up with. */
  accel: 'kvm' | 'tcg';
  bootMs: number;
  kill(): void;
}

/**
 * Starts qemu-system-x86_64 with RAM in a shared memory-backend-file (so it can be read from
 * outside) and waits until /init prints READY_LINE.
 * @throws Error with QEMU's stderr or the serial tail when QEMU exits or the guest does not boot.
 */
export async function bootQemuGuest(o: BootOptions): Promise<BootedGuest> {
  const qmp = join(o.dir, 'qmp.sock');
  const memPath = join(o.dir, 'mem');
  const serial = join(o.dir, 'serial.log');
  // Two -accel options: QEMU uses the first that initializes, so a missing /dev/kvm means TCG.
  const accel = o.accel === 'kvm' ? ['-accel', 'kvm', '-accel', 'tcg'] : ['-accel', 'tcg'];
  const proc = spawn('qemu-system-x86_64', [
    ...accel, '-m', `${o.memMiB}M`,
    '-object', `memory-backend-file,id=mem,size=${o.memMiB}M,mem-path=${memPath},share=on`,
    '-machine', 'pc,memory-backend=mem',
    '-kernel', o.kernel, '-initrd', o.initrd, '-append', 'console=ttyS0 quiet panic=-1',
    '-serial', `file:${serial}`, '-display', 'none', '-monitor', 'none', '-nodefaults', '-no-reboot',
    '-qmp', `unix:${qmp},server,nowait`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (c) => (err += c));
  const kill = () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  };
  const t0 = Date.now();
  const timeout = o.bootTimeoutMs ?? 45_000;
  try {
    while (!(fs.existsSync(serial) && fs.readFileSync(serial, 'utf8').includes(READY_LINE))) {
      if (proc.exitCode !== null) throw new Error(`qemu exited (${proc.exitCode}): ${err}`);
      if (Date.now() - t0 > timeout) throw new Error(`the guest did not boot within ${timeout / 1000} s; serial: ${fs.readFileSync(serial, 'utf8').slice(-500)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const bootMs = Date.now() - t0;
    const q = await QmpClient.connect(qmp);
    const kvm = (await q.execute('query-kvm')) as { enabled?: boolean };
    q.close();
    return { proc, qmp, memPath, serial, accel: kvm.enabled ? 'kvm' : 'tcg', bootMs, kill };
  } catch (e) {
    kill();
    throw e;
  }
}
