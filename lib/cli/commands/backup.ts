/**
 * `understudy backup`: holds a replica of a primary's guest, committing whole epochs; takes over
 * (fence, restore, serve) when the primary goes silent.
 */
import { startBackup } from '../../replication/backup.js';
import { CliError, durationOption, hostPort, parse } from '../util.js';
import { commonOptions, emitJson, intervalOption, keyOption, logLine, onLossOption, retainOption } from '../replication-options.js';
import { superviseRun } from '../replication-run.js';

export const summary = 'hold a hot standby of a primary and take over when it dies';
export const usage = `usage: understudy backup --listen HOST:PORT --key FILE --serve HOST:PORT [options]

Receives the primary's epochs, verifies each completely and commits it atomically before it
acknowledges it. When the primary is silent past --timeout it fences it (--fence-cmd), resumes
the guest from the last committed epoch, serves the output stream on --serve, and accepts a new
backup on its --listen address.

options:
  --listen HOST:PORT    where the primary connects
  --connect HOST:PORT   or join a primary that listens (e.g. a promoted backup); give
                        --listen too, for the backup that joins this one once it takes over
  --key FILE            pre-shared key; or --insecure, explicitly
  --serve HOST:PORT     service port once it has taken over
  --timeout D           primary silent this long = dead (default 1s)
  --fence-cmd CMD       shell command that fences the old primary (must exit 0);
                        gets UNDERSTUDY_VM_ID and UNDERSTUDY_GENERATION
  --no-takeover         only hold the replica
  --interval D          epoch length after takeover (default 25ms, at least 5ms)
  --on-backup-loss M    after takeover: continue or pause (default continue)
  --retain N            released output records kept (default 1000000)
  --linger D            after takeover of a finished workload, wait this long for a
                        client to come back for the end of the stream (default 3s)
  --json                JSON event lines on stdout   --quiet  fewer log lines`;

export async function run(argv: string[]): Promise<number> {
  const cmd = 'backup';
  const { values } = parse(cmd, argv, {
    ...commonOptions,
    listen: { type: 'string' }, connect: { type: 'string' }, serve: { type: 'string' },
    'fence-cmd': { type: 'string' }, 'no-takeover': { type: 'boolean' },
  });
  if (!values.listen && !values.connect) throw new CliError(`${cmd}: --listen HOST:PORT is required (or --connect to join a primary)`);
  const auth = keyOption(cmd, values);
  const json = values.json === true;
  const quiet = values.quiet === true;
  // Checked now, not at failover: the options of the promoted primary included.
  const intervalMs = intervalOption(cmd, values.interval);
  const lingerMs = durationOption(cmd, 'linger', values.linger as string | undefined, 3000);
  const onBackupLoss = onLossOption(cmd, values['on-backup-loss']);
  const options = {
    listen: values.listen ? hostPort(cmd, 'listen', values.listen as string) : undefined,
    connect: values.connect ? hostPort(cmd, 'connect', values.connect as string) : undefined,
    serve: values.serve ? hostPort(cmd, 'serve', values.serve as string) : undefined,
    timeoutMs: values.timeout ? durationOption(cmd, 'timeout', values.timeout as string, 1000) : undefined,
    retain: retainOption(cmd, values.retain),
  };
  let b: Awaited<ReturnType<typeof startBackup>>;
  try {
    b = await startBackup({
      ...auth,
      ...options,
      fenceCmd: values['fence-cmd'] as string | undefined,
      takeover: values['no-takeover'] !== true,
      promoted: { intervalMs, onBackupLoss },
    });
  } catch (err) {
    throw new CliError(`${cmd}: ${(err as Error).message}`, 1);
  }
  if (options.connect && !options.listen && values['no-takeover'] !== true) {
    // Output is released only once a backup holds it: a promoted primary no backup can reach
    // would hold its clients' output for good.
    process.stderr.write(`${cmd}: warning: no --listen: if this backup takes over, no new backup can join it, and its output stays held; give --listen HOST:PORT for the next backup\n`);
  }
  const say = (l: string): void => {
    if (!quiet) logLine('backup', l);
    if (json) emitJson('log', { role: 'backup', line: l });
  };
  b.on('log', say);
  if (json) {
    b.on('connected', (e) => emitJson('connected', { role: 'backup', ...e }));
    b.on('dropped', (e) => emitJson('dropped', { role: 'backup', ...e }));
    b.on('refused', (e) => emitJson('refused', { role: 'backup', ...e }));
    b.on('takeover-refused', (e) => emitJson('takeover-refused', { role: 'backup', ...e }));
    b.on('fenced', (e) => emitJson('fenced-old-primary', { role: 'backup', ...e }));
    let last = 0;
    b.on('commit', (c) => {
      const now = Date.now();
      if (now - last > 200 || c.final !== null) {
        last = now;
        emitJson('commit', { role: 'backup', ...c });
      }
    });
  }
  return new Promise((resolve) => {
    b.on('error', (err) => {
      logLine('backup', `error: ${err.message}`);
      void b.close().then(() => resolve(1));
    });
    b.on('failover', (e) => {
      logLine('backup', `FAILOVER: resumed from epoch ${e.epoch} as generation ${e.generation} (${e.records} records committed)`);
      if (json) emitJson('failover', { role: 'backup', ...e });
      void superviseRun(b.primary!, { json, quiet, role: 'backup(primary)', lingerMs }).then(async (code) => {
        await b.close();
        resolve(code);
      });
    });
    b.on('log', (l) => {
      if (l.startsWith('primary finished the run')) {
        setTimeout(() => void b.close().then(() => resolve(0)), 50);
      }
    });
  });
}
