#!/usr/bin/env node
/**
 * The `understudy` command. Thin: each subcommand is a file in ./commands/ exporting
 * `{ summary, usage, run(argv) }` over the library.
 */
import { commands, loadCommand } from './registry.js';
import { CliError } from './util.js';

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    // No command is a usage error: the overview, on stderr.
    process.stderr.write(await overview());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const which = name === 'help' ? rest[0] : undefined;
    if (which) {
      const cmd = await loadCommand(which);
      process.stdout.write(cmd.usage + '\n');
      return 0;
    }
    process.stdout.write(await overview());
    return 0;
  }
  if (name === '--version' || name === '-v') {
    const { readFileSync } = await import('node:fs');
    const { packageRoot } = await import('../native.js');
    const { join } = await import('node:path');
    const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
    process.stdout.write(pkg.version + '\n');
    return 0;
  }
  const cmd = await loadCommand(name);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.usage + '\n');
    return 0;
  }
  return await cmd.run(rest);
}

async function overview(): Promise<string> {
  const lines = ['understudy: checkpoint and failover for virtual machines', '', 'usage: understudy <command> [options]', '', 'commands:'];
  for (const name of commands) {
    try {
      const cmd = await loadCommand(name);
      lines.push(`  ${name.padEnd(12)}${cmd.summary}`);
    } catch {
      // a command whose module is missing is simply not listed
    }
  }
  lines.push('', 'Run `understudy <command> --help` for its options.', '');
  return lines.join('\n');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof CliError) {
      process.stderr.write(`understudy: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else {
      const e = err as Error;
      process.stderr.write(`understudy: ${e?.message ?? String(err)}\n`);
      if (process.env.UNDERSTUDY_DEBUG) process.stderr.write(`${e?.stack}\n`);
      process.exitCode = 1;
    }
  },
);
