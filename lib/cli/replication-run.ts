/**
 * Drives a running Primary from the CLI: progress line, JSON events, and the end of its life
 * (done -> let clients drain -> BYE -> exit 0; fenced or error -> exit 1). Shared by `primary`
 * and by `backup` once it has taken over.
 */
import { performance } from 'node:perf_hooks';
import type { Primary, EpochStats } from '../replication/primary.js';
import { emitJson, logLine, pct } from './replication-options.js';
import { Progress } from './util.js';

export interface RunFlags {
  json: boolean;
  quiet: boolean;
  role: string;
  /**
   * After the end, stay (up to this long, ms) until a client of the service port has been sent
   * the end of the stream and every connected client is done.
   */
  lingerMs: number;
}

export function superviseRun(p: Primary, f: RunFlags): Promise<number> {
  const progress = new Progress();
  const window: EpochStats[] = [];
  const t0 = performance.now();
  let epochs = 0;
  let lastJson = 0;
  p.on('log', (l) => {
    if (!f.quiet) logLine(f.role, l);
    if (f.json) emitJson('log', { role: f.role, line: l });
  });
  p.on('epoch', (s) => {
    epochs++;
    window.push(s);
    if (window.length > 200) window.shift();
    const now = performance.now();
    const secs = (now - t0) / 1000;
    const pauses = window.map((w) => w.pauseMs);
    const delta = window.filter((w) => !w.full);
    const bytes = delta.reduce((a, w) => a + w.frameBytes, 0) / Math.max(1, delta.length);
    const pageBytes = delta.reduce((a, w) => a + w.pageBytes, 0) / Math.max(1, delta.length);
    const commit = pct(window.map((w) => w.commitMs), 50);
    const summaryLine = `${f.role}: gen ${p.generation} epoch ${s.epoch} | ${(epochs / secs).toFixed(0)} epochs/s | pause p50 ${pct(pauses, 50).toFixed(2)} ms p99 ${pct(pauses, 99).toFixed(2)} ms | ${(bytes / 1024).toFixed(1)} KiB/epoch vs ${(pageBytes / 1024).toFixed(1)} KiB pages | output +${commit.toFixed(1)} ms | lag ${s.lagEpochs} | ${p.log.released} records`;
    if (!f.quiet) progress.update(summaryLine);
    if (f.json && now - lastJson > 200) {
      lastJson = now;
      emitJson('stats', {
        role: f.role, generation: p.generation, epoch: s.epoch, epochsPerSec: +(epochs / secs).toFixed(1),
        pauseP50: +pct(pauses, 50).toFixed(3), pauseP99: +pct(pauses, 99).toFixed(3), bytesPerEpoch: Math.round(bytes),
        pageBytesPerEpoch: Math.round(pageBytes), outputLatencyMs: +commit.toFixed(2), lagEpochs: s.lagEpochs, released: p.log.released,
      });
    }
  });
  p.on('degraded', (d) => {
    if (!f.quiet) logLine(f.role, `DEGRADED: ${d.reason}`);
    if (f.json) emitJson('degraded', { role: f.role, ...d });
  });
  p.on('protected', (d) => {
    if (!f.quiet) logLine(f.role, `protected: backup holds epoch ${d.backupEpoch}`);
    if (f.json) emitJson('protected', { role: f.role, ...d });
  });
  return new Promise((resolve) => {
    const finish = async (code: number): Promise<void> => {
      progress.done();
      await p.close().catch(() => undefined);
      resolve(code);
    };
    p.on('fenced', (d) => {
      logLine(f.role, `FENCED: ${d.reason}; stopping`);
      if (f.json) emitJson('fenced', { role: f.role, ...d });
      void finish(1);
    });
    p.on('error', (err) => {
      logLine(f.role, `error: ${err.message}`);
      void finish(1);
    });
    const onDone = async (final: string): Promise<void> => {
      if (!f.quiet) logLine(f.role, `workload finished, final ${final}; released to clients`);
      if (f.json) emitJson('done', { role: f.role, final });
      const until = performance.now() + f.lingerMs;
      await new Promise((r) => setTimeout(r, 100));
      // Wait (up to the linger) for a client to come for the end of the stream: one that starts
      // after a short run ended (a primary used to exit 100 ms after the end, and its backup on
      // its BYE, so nothing served the stream any more), or a promoted backup's clients, which
      // lost the old primary and are still cycling through their addresses; and for every
      // connected client to be done.
      const waiting = (s: NonNullable<Primary['service']>): boolean => s.clientCount > 0 || s.endsServed === 0;
      while (p.service && waiting(p.service) && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
      p.bye();
      await new Promise((r) => setTimeout(r, 50));
      void finish(0);
    };
    p.on('done', (d) => void onDone(d.final));
    if (p.log.finalReleased && p.log.final !== null) void onDone(p.log.final);
  });
}
