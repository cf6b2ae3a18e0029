/**
 * TEST ONLY: runs an `understudy` subcommand in this process with the stand-in guest registered
 * as the guest backend (kernels are the real native ones). Used by the child-process tests
 * until/where the real guests are not wanted: node --import tsx test/helpers/cli-fake.ts primary ...
 */
import { registerGuestBackend } from '../../lib/replication/kernels.js';
import { createFakeGuest, restoreFakeGuest } from './fake-guest.js';

registerGuestBackend({
  create: (o) => createFakeGuest({ seed: Number(o.seed ?? 1), steps: o.steps, memoryMiB: o.memoryMiB, batch: 10 }),
  restore: (o) => restoreFakeGuest(o, 10),
});
const [name, ...rest] = process.argv.slice(2);
const mod = (await import(`../../lib/cli/commands/${name}.ts`)) as { run(argv: string[]): Promise<number> };
mod.run(rest).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`understudy: ${err.message}\n`);
    process.exitCode = 1;
  },
);
