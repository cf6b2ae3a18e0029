/**
 * Output records as lines of text: the format `understudy run --records` prints and the
 * replication service port sends, so two runs can be compared with `diff`:
 *
 *   {"seq":N,"data":"<hex>","chain":"<16 hex>"}
 *   {"end":true,"final":"<16 hex>"}
 *
 * Exactly these keys in this order, lowercase hex, no spaces; the functions return the line
 * without its newline.
 */
import type { OutputRecord } from './types.js';

/** One record line. */
export function recordLine(rec: OutputRecord): string {
  return `{"seq":${rec.seq},"data":"${Buffer.from(rec.data.buffer, rec.data.byteOffset, rec.data.byteLength).toString('hex')}","chain":"${rec.chain}"}`;
}

/** The line that ends a finished run's stream. */
export function endLine(final: string): string {
  return `{"end":true,"final":"${final}"}`;
}

/** 16 lowercase hex digits of a 64-bit value. */
export function hex64(v: bigint): string {
  return v.toString(16).padStart(16, '0');
}

/** @internal the batch native take_output returns (native/napi/guest_common.h) */
export interface NativeRecords {
  count: number;
  seq: Float64Array;
  len: Uint8Array;
  data: Uint8Array;
  chain: BigUint64Array;
}

/** @internal */
export function recordsFromNative(raw: NativeRecords): OutputRecord[] {
  const out: OutputRecord[] = new Array(raw.count);
  for (let i = 0; i < raw.count; i++) {
    out[i] = {
      seq: raw.seq[i]!,
      data: raw.data.slice(i * 48, i * 48 + raw.len[i]!),
      chain: hex64(raw.chain[i]!),
    };
  }
  return out;
}
