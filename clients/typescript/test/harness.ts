// Test helpers: the Go conformance harness (real samgw serve processes) and
// small fake servers for what a real server never does.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as net from 'node:net';
import * as path from 'node:path';

/** The module root of samgw (tests run from dist/test). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/** What cmd/harness prints: see internal/conformance/servers.go. */
export interface Fixture {
  servers: Record<string, string>;
  ca: string;
  certs: Record<string, { cert: string; key: string }>;
  tokens: Record<string, string>;
  sign_keys: Record<string, string>;
  http: string;
  metrics: string;
}

/** Harness runs `go run ./internal/conformance/cmd/harness` and talks to it. */
export class Harness {
  private constructor(
    private readonly proc: ChildProcess,
    private readonly lines: AsyncIterator<string>,
    readonly fixture: Fixture,
  ) {}

  static async start(): Promise<Harness> {
    const proc = spawn('go', ['run', './internal/conformance/cmd/harness'], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
    const first = await withDeadline(lines.next(), 120_000, 'the harness did not start');
    if (first.done) throw new Error('the harness exited before printing its fixture');
    return new Harness(proc, lines, JSON.parse(first.value) as Fixture);
  }

  /** addr returns host and port of a server. */
  addr(server: string): { host: string; port: number } {
    const a = this.fixture.servers[server];
    if (!a) throw new Error(`unknown server ${server}`);
    const i = a.lastIndexOf(':');
    return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
  }

  async command(cmd: Record<string, string>): Promise<void> {
    this.proc.stdin!.write(JSON.stringify(cmd) + '\n');
    const answer = await withDeadline(this.lines.next(), 30_000, `no answer to ${JSON.stringify(cmd)}`);
    if (answer.done) throw new Error('the harness exited');
    const reply = JSON.parse(answer.value) as Record<string, string>;
    if (reply.error) throw new Error(`harness: ${reply.error}`);
  }

  /** stop ends the harness, which stops its servers. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = once(this.proc, 'exit');
    this.proc.stdin!.end();
    await withDeadline(exited, 30_000, 'the harness did not exit');
  }
}

export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} (after ${ms} ms)`)), ms);
    }),
  ]);
}

/** FakeServer accepts connections and hands each socket to the test. */
export class FakeServer {
  readonly sockets: net.Socket[] = [];
  private waiters: (() => boolean)[] = [];
  private constructor(readonly server: net.Server, readonly port: number) {}

  static async start(): Promise<FakeServer> {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const fake = new FakeServer(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (s) => {
      fake.sockets.push(s);
      // Like samgw, hang up after a client's close frame.
      s.on('data', (d: Buffer | string) => {
        if (d.toString().includes('"type":"close"')) s.end();
      });
      fake.waiters = fake.waiters.filter((w) => !w());
    });
    return fake;
  }

  /** accept resolves with the n-th connection (0-based) once it is made. */
  accept(n: number): Promise<net.Socket> {
    return withDeadline(new Promise<net.Socket>((resolve) => {
      const check = () => {
        const s = this.sockets[n];
        if (s) resolve(s);
        return s !== undefined;
      };
      if (!check()) this.waiters.push(check);
    }), 10_000, `connection ${n} not made`);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Lines reads a socket's frames, parsed. */
export class Lines {
  private buf = '';
  private frames: Record<string, unknown>[] = [];
  private waiting?: () => void;

  constructor(socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        this.frames.push(JSON.parse(this.buf.slice(0, i)));
        this.buf = this.buf.slice(i + 1);
      }
      this.waiting?.();
    });
  }

  /** next resolves with the next frame whose type is in types (others are skipped). */
  async next(...types: string[]): Promise<Record<string, unknown>> {
    return withDeadline((async () => {
      for (;;) {
        const i = this.frames.findIndex((f) => types.length === 0 || types.includes(f.type as string));
        if (i >= 0) return this.frames.splice(i, 1)[0]!;
        await new Promise<void>((resolve) => (this.waiting = resolve));
      }
    })(), 10_000, `no ${types.join('/')} frame`);
  }
}
