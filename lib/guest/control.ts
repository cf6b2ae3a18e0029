/**
 * Reads a few fields of a guest's control page (native/workloads/abi.h, at guest-physical
 * 0x10000) straight from the zero-copy memory view: progress for a status line, without a
 * native call and for every backend alike. Offsets are those of struct us_control.
 */
import type { GuestMemory } from '../kernels/memory.js';

const CONTROL = 0x10000;
const OFF_VCPUS = 12;
const OFF_STEPS = 24;
const OFF_RING_HEAD = 120;
const OFF_VCPU = 192;
const VCPU_SIZE = 128;

export interface GuestProgress {
  /** Steps done, summed over vCPUs. */
  stepsDone: number;
  /** Steps per vCPU times vCPUs. */
  stepsTotal: number;
  /** Output records the guest has written. */
  records: number;
}

/** Progress of a running guest (values may be a step behind while it runs). */
export function readProgress(memory: GuestMemory): GuestProgress {
  const view = memory.view;
  if (view.byteLength < CONTROL + 4096) return { stepsDone: 0, stepsTotal: 0, records: 0 };
  const dv = new DataView(view.buffer, view.byteOffset + CONTROL, 4096);
  const vcpus = Math.min(dv.getUint32(OFF_VCPUS, true), 16);
  const steps = Number(dv.getBigUint64(OFF_STEPS, true));
  let done = 0;
  for (let i = 0; i < vcpus; i++) done += Number(dv.getBigUint64(OFF_VCPU + i * VCPU_SIZE, true));
  return { stepsDone: done, stepsTotal: steps * vcpus, records: Number(dv.getBigUint64(OFF_RING_HEAD, true)) };
}
