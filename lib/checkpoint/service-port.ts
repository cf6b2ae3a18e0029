/**
 * The service port: where clients read the guest's released output. Newline-delimited JSON:
 * the client sends one line `{"after":N}` (the last seq it holds, -1 for none); the server sends
 * one line per released record with seq > N, as they are released, then `{"end":true,
 * "final":"<hex>"}` once the end of the run is released, and closes. A primary and a promoted
 * backup serve the same stream from their OutputLog.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { endToLine, recordToLine, type OutputLog } from './output-buffer.js';

const MAX_REQUEST = 256;
/** A client must send its request line this soon: until then it pins the oldest kept record. */
export const REQUEST_DEADLINE_MS = 10_000;
/** Clients served at once; one more is told so and closed. */
export const MAX_CLIENTS = 256;

export interface ServicePort {
  readonly server: Server;
  /** Switches the stream to another log (a promoted backup keeps the port, changes the log). */
  setLog(log: OutputLog): void;
  address(): { host: string; port: number };
  /** Clients connected now. */
  readonly clientCount: number;
  /** Clients sent the end of the stream (`{"end":true,...}`) so far. */
  readonly endsServed: number;
  close(): Promise<void>;
}

/** Listens on host:port (port 0 picks one) and serves `log`. */
export async function startServicePort(
  log: OutputLog,
  host: string,
  port: number,
  limits: { requestDeadlineMs?: number; maxClients?: number } = {},
): Promise<ServicePort> {
  const requestDeadlineMs = limits.requestDeadlineMs ?? REQUEST_DEADLINE_MS;
  const maxClients = limits.maxClients ?? MAX_CLIENTS;
  const clients = new Set<Socket>();
  let endsServed = 0;
  let current = log;
  const pumps = new Set<() => void>();
  // Retention must not drop what a connected client has yet to be sent (within its hard limit).
  const cursors = new Set<() => number>();
  const minCursor = (): number => {
    let m = Infinity;
    for (const c of cursors) m = Math.min(m, c());
    return m;
  };
  let unregister = current.addReader(minCursor);

  const server = createServer((sock) => {
    sock.on('error', () => undefined);
    if (clients.size >= maxClients) {
      sock.end(JSON.stringify({ error: `this server already serves ${maxClients} clients; try again later` }) + '\n');
      sock.resume(); // read (and drop) what it sends, so its close is seen
      setTimeout(() => sock.destroy(), 1000).unref();
      return;
    }
    clients.add(sock);
    sock.setNoDelay(true);
    const deadline = setTimeout(() => fail(`no request line within ${requestDeadlineMs} ms`), requestDeadlineMs);
    deadline.unref();
    let buf = '';
    let cursor = -1; // next seq to send, -1 until the request line arrived
    let waiting = false;
    let closed = false;
    const pump = (): void => {
      if (closed || cursor < 0 || waiting) return;
      const lg = current;
      if (cursor < lg.firstKept) {
        // This client fell behind the log's retention (or asked for history no longer kept).
        fail(`records before seq ${lg.firstKept} are no longer kept; ask for {"after":${lg.firstKept - 1}} or later`);
        return;
      }
      let chunk = '';
      while (cursor < lg.released && chunk.length < 256 * 1024) chunk += recordToLine(lg.get(cursor++)) + '\n';
      let ended = false;
      if (cursor >= lg.released && lg.finalReleased && lg.final !== null) {
        chunk += endToLine(lg.final) + '\n';
        ended = true;
      }
      if (!chunk) return;
      const ok = sock.write(chunk);
      if (ended) {
        endsServed++;
        closed = true;
        sock.end();
        return;
      }
      if (!ok) {
        waiting = true;
        sock.once('drain', () => {
          waiting = false;
          pump();
        });
      } else if (cursor < lg.released) {
        setImmediate(pump);
      }
    };
    pumps.add(pump);
    const position = (): number => (closed ? Infinity : cursor < 0 ? current.firstKept : cursor);
    cursors.add(position);
    const fail = (msg: string): void => {
      clearTimeout(deadline);
      closed = true;
      sock.end(JSON.stringify({ error: msg }) + '\n');
      // a peer that does not read its error is not waited for
      setTimeout(() => sock.destroy(), 1000).unref();
    };
    sock.on('data', (d: Buffer) => {
      if (cursor >= 0 || closed) return; // the protocol has one request line; a failed client is done
      buf += d.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > MAX_REQUEST) fail(`request line must be at most ${MAX_REQUEST} bytes`);
        return;
      }
      let after: unknown;
      try {
        after = (JSON.parse(buf.slice(0, nl)) as { after?: unknown }).after;
      } catch {
        fail('request must be a JSON line {"after":N}');
        return;
      }
      if (typeof after !== 'number' || !Number.isSafeInteger(after) || after < -1) {
        fail(`"after" must be an integer from -1 to ${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(after)}`);
        return;
      }
      clearTimeout(deadline);
      cursor = after + 1;
      pump();
    });
    sock.on('close', () => {
      clearTimeout(deadline);
      closed = true;
      clients.delete(sock);
      pumps.delete(pump);
      cursors.delete(position);
    });
  });

  const onRelease = (): void => {
    for (const p of pumps) p();
  };
  current.on('release', onRelease);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    server,
    setLog(next: OutputLog) {
      current.off('release', onRelease);
      unregister();
      current = next;
      unregister = current.addReader(minCursor);
      current.on('release', onRelease);
      onRelease();
    },
    get clientCount() {
      return clients.size;
    },
    get endsServed() {
      return endsServed;
    },
    address() {
      const a = server.address();
      if (a === null || typeof a === 'string') return { host, port };
      return { host: a.address, port: a.port };
    },
    async close() {
      current.off('release', onRelease);
      unregister();
      for (const c of clients) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
