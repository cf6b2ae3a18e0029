/**
 * Test-only: a tiny Linux guest for QEMU. The kernel comes from Debian's cloud kernel package
 * (downloaded with `apt-get download`, unpacked with `dpkg-deb -x`), the initramfs is built here
 * from Debian's busybox-static: a newc cpio archive with /init, which writes to memory in a loop
 * and says READY on the serial console.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';

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

/** Writes a newc initramfs with busybox and an /init that dirties memory forever. */
export function buildInitramfs(file: string): void {
  const init = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox mount -t tmpfs tmp /tmp
/bin/busybox dd if=/dev/zero of=/tmp/ballast bs=1M count=4 2>/dev/null
echo UNDERSTUDY-READY > /dev/ttyS0
i=0
while true; do
  i=$((i+1))
  echo "tick $i $i $i" >> /tmp/log
  /bin/busybox sleep 0.05
done
`;
  const entries: Buffer[] = [];
  let ino = 1;
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp']) entries.push(newcEntry(d, 0o40755, new Uint8Array(0), ino++));
  entries.push(newcEntry('bin/busybox', 0o100755, fs.readFileSync('/bin/busybox'), ino++));
  entries.push(newcEntry('bin/sh', 0o120777, Buffer.from('busybox'), ino++));
  entries.push(newcEntry('init', 0o100755, Buffer.from(init), ino++));
  entries.push(newcEntry('TRAILER!!!', 0, new Uint8Array(0), 0));
  fs.writeFileSync(file, Buffer.concat(entries));
}
