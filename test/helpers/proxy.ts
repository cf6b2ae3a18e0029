/**
 * TEST ONLY: a TCP proxy between primary and backup that can cut, delay, corrupt and replay the
 * primary->backup byte stream.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export class FaultProxy {
  private server: Server;
  private pairs = new Set<[Socket, Socket]>();
  /** Hold primary->backup data this long before forwarding. */
  delayMs = 0;
  /** Flip one bit in the next primary->backup chunk of at least this many bytes. */
  private flipNext = 0;
  /** Re-send an earlier primary->backup chunk after the next one. */
  private replayNext = false;
  private history: Buffer[] = [];
  flipped = 0;
  replayed = 0;
  connections = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((down) => {
      this.connections++;
      const up = connect(target.port, target.host);
      const pair: [Socket, Socket] = [down, up];
      this.pairs.add(pair);
      this.history = [];
      down.on('data', (d: Buffer) => {
        let out = d;
        if (this.flipNext && d.length >= this.flipNext) {
          out = Buffer.from(d);
          out[Math.floor(out.length / 2)]! ^= 0x10;
          this.flipNext = 0;
          this.flipped++;
        }
        const send = (): void => {
          up.write(out);
          if (this.replayNext && this.history.length > 2) {
            up.write(this.history[this.history.length - 2]!);
            this.replayNext = false;
            this.replayed++;
          }
          this.history.push(out);
          if (this.history.length > 8) this.history.shift();
        };
        if (this.delayMs) setTimeout(send, this.delayMs);
        else send();
      });
      up.on('data', (d: Buffer) => down.write(d));
      const close = (): void => {
        down.destroy();
        up.destroy();
        this.pairs.delete(pair);
      };
      down.on('close', close);
      up.on('close', close);
      down.on('error', close);
      up.on('error', close);
    });
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return { host: '127.0.0.1', port: (this.server.address() as { port: number }).port };
  }

  cut(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
  }

  flip(minBytes = 1024): void {
    this.flipNext = minBytes;
  }

  replay(): void {
    this.replayNext = true;
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}
