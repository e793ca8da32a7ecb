import * as net from 'node:net';
import * as tls from 'node:tls';
import * as zlib from 'node:zlib';
import { ClientCode, SamgwError } from './errors.js';
import { FrameReader } from './framing.js';
import type { DialOptions, Link, LinkEvents } from './link.js';

/**
 * dialTCP connects to host:port (over TLS when tlsOptions is set) and
 * returns the link once the connection (and handshake) is up.
 */
export function dialTCP(host: string, port: number, tlsOptions: tls.ConnectionOptions | undefined, events: LinkEvents, options: DialOptions): Promise<Link> {
  return new Promise((resolve, reject) => {
    const ready = tlsOptions ? 'secureConnect' : 'connect';
    const socket = tlsOptions
      ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...tlsOptions })
      : net.connect({ host, port });
    const timer = setTimeout(() => socket.destroy(new Error(`no connection within ${options.timeout} ms`)), options.timeout);
    const fail = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once('error', fail);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.off('error', fail);
      resolve(new TCPLink(socket, events, options));
    });
  });
}

/** The server's auth reply, which compressed input follows. */
function isAuth(frame: Buffer): boolean {
  try {
    return (JSON.parse(frame.toString('utf8')) as { type?: unknown }).type === 'auth';
  } catch {
    return false;
  }
}

function agrees(frame: Buffer): boolean {
  const m = JSON.parse(frame.toString('utf8')) as { payload?: { compress?: unknown } };
  return m.payload?.compress === 'deflate';
}

/**
 * TCPLink is a link on a socket: line framing, and stream compression when
 * asked (raw DEFLATE, sync-flushed, both ways: after the auth frame from
 * us, after the auth reply from the server).
 */
class TCPLink implements Link {
  private readonly reader: FrameReader;
  private deflate?: zlib.DeflateRaw; // after the first write, when compressing
  private inflate?: zlib.InflateRaw; // after the server agreed
  private awaitingReply: boolean; // compression was asked and not yet answered
  private writes = 0;
  private flushing = false;
  private ended = false;

  constructor(private readonly socket: net.Socket, private readonly events: LinkEvents, options: DialOptions) {
    socket.setNoDelay(true);
    this.reader = new FrameReader(options.maxFrameSize);
    this.awaitingReply = options.compress;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.lost(err.message));
    socket.on('end', () => this.lost('connection closed by the server'));
    socket.on('close', () => this.lost('connection closed'));
  }

  get closed(): boolean {
    return this.ended || this.socket.destroyed;
  }

  write(frames: string): void {
    if (this.closed) return;
    this.writes++;
    if (this.deflate) {
      this.deflate.write(frames);
      if (!this.flushing) {
        // One sync flush for all the frames written in this turn.
        this.flushing = true;
        queueMicrotask(() => {
          this.flushing = false;
          this.deflate?.flush(zlib.constants.Z_SYNC_FLUSH);
        });
      }
      return;
    }
    this.socket.write(frames);
    if (this.awaitingReply && this.writes === 1) {
      // The auth frame asking for compression is out: the rest is compressed.
      this.deflate = zlib.createDeflateRaw();
      this.deflate.on('data', (chunk: Buffer) => this.socket.write(chunk));
      this.deflate.on('error', (err) => this.lost(`compression failed: ${err.message}`));
    }
  }

  backlog(): number {
    return this.socket.writableLength + (this.deflate?.writableLength ?? 0);
  }

  close(): void {
    this.ended = true;
    this.socket.destroy();
    this.deflate?.destroy();
    this.inflate?.destroy();
  }

  private lost(reason: string, err?: SamgwError): void {
    if (this.ended) return;
    this.close();
    this.events.lost(reason, err);
  }

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    if (this.inflate) {
      this.inflate.write(chunk);
      return;
    }
    if (!this.awaitingReply) {
      this.frames(chunk);
      return;
    }
    // Until the auth reply: plain frames, then (if it agrees) compression.
    let frames: Buffer[];
    let rest: Buffer | undefined;
    try {
      [frames, rest] = this.reader.pushUntil(chunk, isAuth);
    } catch (err) {
      this.lost((err as SamgwError).message, err as SamgwError);
      return;
    }
    if (rest !== undefined) {
      this.awaitingReply = false;
      if (!agrees(frames[frames.length - 1]!)) {
        const err = new SamgwError(ClientCode.InvalidMessage, 'the server did not agree to compression');
        this.lost(err.message, err);
        return;
      }
      this.inflate = zlib.createInflateRaw();
      this.inflate.on('data', (out: Buffer) => this.frames(out));
      this.inflate.on('error', (e) => {
        const err = new SamgwError(ClientCode.InvalidMessage, `invalid compressed stream: ${e.message}`);
        this.lost(err.message, err);
      });
    }
    this.events.frames(frames);
    if (rest !== undefined && rest.length > 0 && !this.ended) this.inflate!.write(rest);
  }

  private frames(chunk: Buffer): void {
    if (this.ended) return;
    let frames: Buffer[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.lost((err as SamgwError).message, err as SamgwError);
      return;
    }
    this.events.frames(frames);
  }
}
