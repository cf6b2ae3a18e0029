/**
 * The list of subcommands. Each lives in ./commands/<name>.ts and is loaded on demand, so a
 * command's dependencies (a guest, a socket) cost nothing to the others.
 */
import { CliError } from './util.js';

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

export const commands = [
  'demo', 'run', 'info', 'bench',
  'primary', 'backup', 'client', 'keygen',
  'checkpoint', 'snapshot', 'restore', 'export', 'verify', 'ls', 'inspect', 'prune', 'compact',
] as const;

export async function loadCommand(name: string): Promise<Command> {
  if (!(commands as readonly string[]).includes(name)) {
    throw new CliError(`unknown command \`${name}\`; run \`understudy --help\` for the list`, 2);
  }
  try {
    return (await import(`./commands/${name}.js`)) as Command;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(`commands/${name}.`)) {
      throw new CliError(`command \`${name}\` is not available in this build`, 2);
    }
    throw err;
  }
}
