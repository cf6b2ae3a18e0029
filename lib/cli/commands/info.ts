/**
 * `understudy info`: what this machine offers. Whether /dev/kvm opens (and why not: missing,
 * permission, no virtualization), the KVM API version, which dirty-log modes work (manual protect,
 * dirty ring with its size) and why not, the KVM flavour, and the kernel ISA path.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isa, isaWarning, supportedIsas } from '../../kernels/cpu.js';
import { kvmInfo, type KvmInfo } from '../../guest/kvm.js';
import { parse } from '../util.js';

export const summary = 'show whether KVM and its dirty-log modes are usable here, and the kernel ISA';
export const usage = `usage: understudy info [--json]

Prints whether /dev/kvm can be used (and if not, why and what to do), the KVM API version, the
dirty-log modes (manual-protect bitmap, dirty ring) and the kernel ISA path in use.

  --json   one JSON object on stdout`;

/** Why /dev/kvm may be unusable beyond errno: the CPU flags the kernel sees. */
function virtualizationHint(): string | undefined {
  try {
    const flags = readFileSync('/proc/cpuinfo', 'utf8');
    if (!/\b(vmx|svm)\b/.test(flags) && !existsSync('/sys/module/kvm_pvm')) {
      return 'the CPU exposes neither vmx nor svm: virtualization is off in the firmware, or this is a VM whose host does not offer nested virtualization';
    }
  } catch {
    // not Linux /proc: no hint
  }
  return undefined;
}

function flavour(): string {
  if (existsSync('/sys/module/kvm_pvm')) return 'pvm';
  if (existsSync('/sys/module/kvm_intel')) return 'intel';
  if (existsSync('/sys/module/kvm_amd')) return 'amd';
  return 'unknown';
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse('info', argv, { json: { type: 'boolean' } });
  const k: KvmInfo = kvmInfo();
  const hint = k.ok ? undefined : virtualizationHint();
  const report = {
    kvm: { ...k, flavour: k.ok ? flavour() : undefined, hint, defaultDirty: 'bitmap' as const },
    guestAuto: k.ok ? 'kvm' : 'sim',
    isa: isa(),
    supportedIsas: supportedIsas(),
    isaWarning: isaWarning() ?? undefined,
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(report) + '\n');
    return 0;
  }
  const out: string[] = [];
  if (k.ok) {
    out.push(`kvm           usable: /dev/kvm, API ${k.apiVersion}, up to ${k.maxVcpus} vCPUs, flavour ${report.kvm.flavour}`);
    if (report.kvm.flavour === 'pvm') {
      out.push('              (PVM: guest ring 0 is emulated, so the payload runs in ring 3 and exits are costly)');
    }
  } else {
    out.push(`kvm           not usable: ${k.reason}`);
    if (hint) out.push(`              ${hint}`);
  }
  out.push(
    k.ok
      ? `dirty bitmap  ${k.manualProtect ? 'manual protect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): yes, the default' : `plain (clears on fetch): ${k.manualProtectReason}`}`
      : 'dirty bitmap  unavailable without KVM',
  );
  out.push(
    k.ok
      ? k.dirtyRing
        ? `dirty ring    yes (KVM_CAP_DIRTY_LOG_RING): up to ${k.dirtyRingMaxBytes / 16} entries per vCPU (${k.dirtyRingMaxBytes} bytes)`
        : `dirty ring    no: ${k.dirtyRingReason}`
      : 'dirty ring    unavailable without KVM',
  );
  out.push(`guest auto    ${report.guestAuto}`);
  out.push(`kernel ISA    ${report.isa} (this CPU runs: ${report.supportedIsas.join(', ')})`);
  if (report.isaWarning) out.push(`              ${report.isaWarning}`);
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
