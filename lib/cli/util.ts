/**
 * Shared CLI helpers: argument parsing on node:util parseArgs with clear errors, size and
 * duration parsing, and a progress line on stderr that redraws in place on a TTY.
 */
import { createServer } from 'node:net';
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class CliError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'CliError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs, with errors turned into CliError naming the command. */
export function parse<O extends Options>(
  cmd: string,
  argv: string[],
  options: O,
  allowPositionals = false,
): { values: Record<string, string | boolean | string[] | boolean[] | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options, allowPositionals, strict: true });
    return { values: r.values as Record<string, string | boolean | string[] | boolean[] | undefined>, positionals: r.positionals };
  } catch (err) {
    throw new CliError(`${cmd}: ${parseArgsMessage(err as Error & { code?: string }, argv, options)}; see \`understudy ${cmd} --help\``);
  }
}

/**
 * parseArgs' error in our words: its own texts run over several lines, end in a period, and one
 * (unknown option, with positionals allowed) leaves a quote open. Unrecognised ones are passed
 * through on one line.
 */
function parseArgsMessage(err: Error & { code?: string }, argv: string[], options: Options): string {
  const text = err.message;
  const long = (raw: string): string => {
    if (raw.startsWith('--')) return raw;
    const name = Object.keys(options).find((k) => options[k]!.short === raw.slice(1));
    return name ? `--${name}` : raw;
  };
  let m: RegExpExecArray | null;
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && (m = /^Unknown option '(.*?)'(?:\. To specify a positional argument|$)/s.exec(text))) {
    const dash = /To specify a positional argument/.test(text) ? ' (an argument that starts with \'-\' goes after --)' : '';
    return `unknown option ${JSON.stringify(m[1])}${dash}`;
  }
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && (m = /^Unexpected argument '(.*)'\. This command does not take positional arguments$/s.exec(text))) {
    return `unexpected argument ${JSON.stringify(m[1])}: this command takes no positional arguments`;
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    if ((m = /^Option '(-[^']*)' argument is ambiguous\./.exec(text))) {
      // `--keep -1`: parseArgs will not take a value that looks like an option.
      const i = argv.findIndex((a, j) => a === m![1] && argv[j + 1]?.startsWith('-'));
      const value = i >= 0 ? argv[i + 1]! : '-VALUE';
      return `${long(m[1]!)} needs a value, and ${JSON.stringify(value)} looks like an option; to pass it as the value write ${long(m[1]!)}=${value}`;
    }
    if ((m = /^Option '(?:-\S+, )?(--\S+) <value>' argument missing$/.exec(text))) return `${m[1]} needs a value`;
    if ((m = /^Option '(?:-\S+, )?(--\S+)' does not take an argument$/.exec(text))) return `${m[1]} takes no value`;
  }
  return text.replace(/\.?\s*\n\s*/g, '; ').replace(/\.$/, '');
}

/**
 * The positional arguments a command takes, named for the error (e.g. ['DIR']): more than that is
 * a usage error. Fewer are left to the command (its own "is required" message).
 */
export function positionalArgs(cmd: string, positionals: string[], names: string[]): string[] {
  if (positionals.length > names.length) {
    throw new CliError(`${cmd}: unexpected argument ${JSON.stringify(positionals[names.length])}: expected ${names.join(' ')}; see \`understudy ${cmd} --help\``);
  }
  return positionals;
}

/** A CHECKPOINT argument: `latest` or a checkpoint id (decimal, as \`understudy ls\` lists them). */
export function checkpointArg(cmd: string, value: string): string {
  if (value === 'latest' || (/^\d{1,15}$/.test(value) && String(Number(value)) === value)) return value;
  throw new CliError(`${cmd}: CHECKPOINT must be a checkpoint id (a number, as \`understudy ls\` lists them) or latest, got ${JSON.stringify(value)}`);
}

/** Options the usage presents as alternatives: at most one of them may be given. */
export function exclusive(cmd: string, values: Record<string, unknown>, a: string, b: string, aText = `--${a}`, bText = `--${b}`): void {
  if (values[a] !== undefined && values[b] !== undefined) throw new CliError(`${cmd}: give either ${aText} or ${bText}, not both`);
}

/** An integer option, within [min, max]. */
export function intOption(cmd: string, name: string, value: string | undefined, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return dflt;
  if (!/^-?\d+$/.test(value)) throw new CliError(`${cmd}: --${name} must be an integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n < min || n > max) throw new CliError(`${cmd}: --${name} must be from ${min} to ${max}, got ${n}`);
  return n;
}

/** A duration: "25ms", "1s", "250us", or a bare number of milliseconds. Returns milliseconds. */
export function durationOption(cmd: string, name: string, value: string | undefined, dfltMs: number): number {
  if (value === undefined) return dfltMs;
  const m = /^(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new CliError(`${cmd}: --${name} must be a duration like 25ms, 1s, 30m, 2h or 1d (a bare number is milliseconds), got ${JSON.stringify(value)}`);
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const scale: Record<string, number> = { us: 1 / 1000, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const ms = n * scale[unit]!;
  if (!(ms > 0)) throw new CliError(`${cmd}: --${name} must be positive, got ${JSON.stringify(value)}`);
  return ms;
}

/** HOST:PORT (IPv6 as [::1]:PORT). */
export function hostPort(cmd: string, name: string, value: string | undefined): { host: string; port: number } {
  if (value === undefined) throw new CliError(`${cmd}: --${name} HOST:PORT is required`);
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  if (!m) throw new CliError(`${cmd}: --${name} must be HOST:PORT, got ${JSON.stringify(value)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new CliError(`${cmd}: --${name} port must be at most 65535, got ${port}`);
  return { host: (m[1] ?? m[2])!, port };
}

/** A status line on stderr: redrawn in place on a terminal, one line per update otherwise (throttled). */
export class Progress {
  private last = 0;
  private drawn = false;
  constructor(private readonly minIntervalMs = process.stderr.isTTY ? 100 : 1000) {}
  update(text: string, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < this.minIntervalMs) return;
    this.last = now;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r\x1b[2K${text}`);
      this.drawn = true;
    } else {
      process.stderr.write(text + '\n');
    }
  }
  done(text?: string): void {
    if (text !== undefined) this.update(text, true);
    if (this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }
}

const handedOut = new Set<number>();

function probePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as { port: number };
      s.close(() => resolve(a.port));
    });
  });
}

/**
 * A currently free localhost TCP port (for servers that only open later, e.g. at takeover), never
 * one this process was given before: the kernel may offer a just-closed port again, and two
 * servers told the same port would serve one client two different streams.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await probePort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}
