/**
 * Runtime CPU dispatch: which kernel path is in use, and which the machine can run.
 */
import { native } from '../native.js';

export type IsaName = 'avx512' | 'avx2' | 'scalar' | 'neon';

/** The kernel path in use: "avx512", "avx2" or "scalar" (chosen at load time; see UNDERSTUDY_ISA). */
export function isa(): IsaName {
  return native.isa() as IsaName;
}

/** Every path this CPU can run, best first. */
export function supportedIsas(): IsaName[] {
  return native.isas() as IsaName[];
}

/**
 * Switches the kernel path for the whole process (tests and benchmarks use it to run every path).
 * @throws RangeError if the CPU cannot run `name`.
 */
export function setIsa(name: IsaName): IsaName {
  if (typeof name !== 'string') throw new TypeError(`\`isa\` must be a string, got ${typeof name}`);
  return native.set_isa(name) as IsaName;
}

/** Non-null when UNDERSTUDY_ISA was set but could not be honoured. */
export function isaWarning(): string | null {
  return native.isa_env_warning() as string | null;
}
