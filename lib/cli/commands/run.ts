/**
 * `understudy run`: runs a workload to the end in a guest and prints its final checksum.
 *
 *   stdout   final <checksum>                                 (default)
 *            {"final":"<checksum>","guest":"sim",...}         (--json)
 *            one {"seq":N,"data":"<hex>","chain":"<hex>"} line per output record, then
 *            {"end":true,"final":"<checksum>"}               (--records; the service port's lines)
 *   stderr   which guest and why, and a progress line while it runs
 */
import { createGuest, resolveGuestOptions } from '../../guest/index.js';
import { readProgress } from '../../guest/control.js';
import { endLine, recordLine } from '../../guest/records.js';
import type { Guest } from '../../guest/types.js';
import { guestOptionSpec, guestOptionUsage, guestOptionsFrom } from '../guest-options.js';
import { CliError, Progress, parse } from '../util.js';

export const summary = 'run a workload in a guest to the end and print its final checksum';

export const usage = `usage: understudy run [options]

Runs a deterministic workload in a KVM micro-VM or the simulated guest and prints
\`final <checksum>\`: the same for the same workload, seed, steps, memory and vCPUs on any
backend (every workload but kv depends on --memory).

options:
${guestOptionUsage}
  --records              print every output record as a JSON line, then {"end":true,"final":...}
  --json                 print the result as one JSON object (ignored with --records)
  -h, --help             this text

examples:
  understudy run --workload kv --seed 7 --records > a.jsonl
  understudy run --guest sim --workload memcheck --vcpus 2 --json`;

const POLL_MS = 10;

function write(text: string): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.write(text)) resolve();
    else process.stdout.once('drain', () => resolve());
  });
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse('run', argv, { ...guestOptionSpec, records: { type: 'boolean' }, json: { type: 'boolean' } });
  const opts = guestOptionsFrom('run', values);
  try {
    resolveGuestOptions(opts);
  } catch (err) {
    if (err instanceof RangeError || err instanceof TypeError) throw new CliError(`run: ${err.message}`);
    throw err;
  }
  const records = values.records === true;
  const json = values.json === true;
  const t0 = performance.now();
  let guest: Guest;
  try {
    guest = await createGuest(opts);
  } catch (err) {
    throw new CliError(`run: ${(err as Error).message}`, 1);
  }
  process.stderr.write(`guest ${guest.type}${guest.typeReason ? ` (${guest.typeReason})` : ''}, workload ${opts.workload}, seed ${opts.seed}, ${opts.vcpus} vCPU(s), ${opts.memoryMiB} MiB\n`);
  const progress = new Progress();
  let recordCount = 0;
  let busy = false;
  const onSignal = () => void guest.close().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  // A reader that goes away (`| head`) ends the run quietly.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') void guest.close().then(() => process.exit(0));
  });

  const drain = async () => {
    const recs = guest.takeOutput();
    recordCount += recs.length;
    if (records && recs.length) {
      let text = '';
      for (const r of recs) text += recordLine(r) + '\n';
      await write(text);
    }
  };
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      if (opts.nondeterministic && !guest.result) {
        await guest.pause();
        guest.setClock(process.hrtime.bigint());
        guest.resume();
      }
      await drain();
      const p = readProgress(guest.memory);
      const s = (performance.now() - t0) / 1000;
      const pct = p.stepsTotal ? ((100 * p.stepsDone) / p.stepsTotal).toFixed(1) : '100.0';
      progress.update(`${opts.workload} on ${guest.type}: ${p.stepsDone}/${p.stepsTotal} steps (${pct}%), ${(p.stepsDone / s / 1e6).toFixed(2)} M steps/s, ${p.records} records`);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick().catch(() => undefined), POLL_MS);
  let final: string;
  try {
    final = (await guest.wait()).final;
  } catch (err) {
    clearInterval(timer);
    progress.done();
    process.removeListener('SIGINT', onSignal);
    await guest.close();
    process.stderr.write(`understudy: run: ${(err as Error).message}\n`);
    return 1;
  }
  clearInterval(timer);
  while (busy) await new Promise((r) => setTimeout(r, 1));
  await drain();
  const seconds = (performance.now() - t0) / 1000;
  const p = readProgress(guest.memory);
  progress.done(`${opts.workload} on ${guest.type}: ${p.stepsDone} steps in ${seconds.toFixed(2)} s, ${recordCount} records`);
  process.removeListener('SIGINT', onSignal);
  await guest.close();
  if (records) {
    await write(endLine(final) + '\n');
  } else if (json) {
    await write(
      JSON.stringify({
        final,
        guest: guest.type,
        workload: opts.workload,
        seed: opts.seed!.toString(),
        steps: opts.steps,
        vcpus: opts.vcpus,
        memoryMiB: opts.memoryMiB,
        nondeterministic: opts.nondeterministic,
        records: recordCount,
        seconds: +seconds.toFixed(3),
      }) + '\n',
    );
  } else {
    await write(`final ${final}\n`);
  }
  return 0;
}
