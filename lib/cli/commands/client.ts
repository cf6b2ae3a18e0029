/**
 * `understudy client`: reads a service port's output stream, failing over between addresses, and
 * with --verify checks it (no gap, no duplicate, hash chain, optional reference run).
 */
import { followStream, readReference, StreamVerifier } from '../../replication/client.js';
import { defaultChainHash } from '../../replication/kernels.js';
import { CliError, durationOption, hostPort, intOption, parse } from '../util.js';

export const summary = 'read (and --verify) a primary\'s released output stream';
export const usage = `usage: understudy client --connect HOST:PORT[,HOST:PORT] [--verify] [--reference FILE]

Sends {"after":N} and prints the released records (one JSON line each) and the end line. When a
server goes away it tries the next address (in turn) with {"after": last seq}.

options:
  --connect LIST      comma-separated HOST:PORT service ports, tried in turn
  --verify            check the stream: no gap, no duplicate, hash chain unbroken; prints only
                      a verdict line; exit status 0 if it passes, 1 if not
  --reference FILE    also compare with \`understudy run --records\` output (records and final);
                      run it with the primary's --workload, --seed, --steps, --memory, --vcpus
  --after N           start after seq N (default -1: from the beginning)
  --timeout D         give up when no address answers for this long (default 30s)
  --json              the verdict as JSON`;

export async function run(argv: string[]): Promise<number> {
  const cmd = 'client';
  const { values } = parse(cmd, argv, {
    connect: { type: 'string' }, verify: { type: 'boolean' }, reference: { type: 'string' },
    after: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean' },
  });
  if (values.connect === undefined) throw new CliError(`${cmd}: --connect HOST:PORT[,HOST:PORT] is required`);
  const list = values.connect as string;
  const addresses = list.split(',').map((a) => {
    if (a.trim() === '') throw new CliError(`${cmd}: --connect must be HOST:PORT[,HOST:PORT...] with no empty entry, got ${JSON.stringify(list)}`);
    return hostPort(cmd, 'connect', a.trim());
  });
  const verify = values.verify === true || values.reference !== undefined;
  const after = intOption(cmd, 'after', values.after as string | undefined, -1, -1);
  let reference = null;
  if (values.reference) {
    try {
      reference = readReference(values.reference as string);
    } catch (err) {
      throw new CliError(`${cmd}: --reference: ${(err as Error).message}`);
    }
  }
  const chain = verify ? await defaultChainHash() : null;
  const v = new StreamVerifier(chain, reference, after);
  const res = await followStream({
    addresses, after, verifier: v, timeoutMs: durationOption(cmd, 'timeout', values.timeout as string | undefined, 30_000),
    onRecord: verify ? undefined : (r) => process.stdout.write(`{"seq":${r.seq},"data":"${r.data}","chain":"${r.chain}"}\n`),
    onReconnect: (a, n) => process.stderr.write(`client: reconnecting to ${a.host}:${a.port} after seq ${n}\n`),
  });
  if (!verify) {
    if (res.final !== null) process.stdout.write(`{"end":true,"final":"${res.final}"}\n`);
    // Records go to stdout; why the stream stopped short goes to stderr (it used to exit 1 silently).
    for (const p of res.problems) process.stderr.write(`understudy: client: ${p}\n`);
    return res.final !== null && res.problems.length === 0 ? 0 : 1;
  }
  if (values.json) process.stdout.write(JSON.stringify({ verdict: res.ok ? 'pass' : 'fail', ...res }) + '\n');
  else if (res.ok) {
    process.stdout.write(`verdict: PASS: ${res.records} records, no gap, no duplicate, hash chain unbroken${reference ? ', equal to the reference' : ''}; final ${res.final}; ${res.reconnects} reconnect(s)\n`);
  } else {
    process.stdout.write(`verdict: FAIL: ${res.problems.join('; ') || 'the stream did not end'} (${res.records} records checked)\n`);
  }
  return res.ok ? 0 : 1;
}
