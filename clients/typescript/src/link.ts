import type { SamgwError } from './errors.js';

/** Where a link goes: a TCP (or TLS) server, or a WebSocket URL. */
export type Target = { host: string; port: number } | { url: string };

/** What a link tells the client of its connection. */
export interface LinkEvents {
  /** Frames that arrived together (a chunk of the stream, a WebSocket message), without their line endings. */
  frames(frames: Uint8Array[]): void;
  /** The connection ended, for reason; err when the server's input was invalid. */
  lost(reason: string, err?: SamgwError): void;
}

/** How a link is made. */
export interface DialOptions {
  /** Bound on the connection attempt, ms. */
  timeout: number;
  /** Longest frame accepted from the server. */
  maxFrameSize: number;
  /**
   * Stream compression was asked for in the auth frame, which is then the
   * first write: what follows it is compressed, and what the server sends
   * after its auth reply (if that agrees; otherwise the link is lost).
   */
  compress: boolean;
}

/** One connection to a server, over any transport. */
export interface Link {
  /** write sends encoded frames, each ending with "\n". */
  write(frames: string): void;
  /** Bytes written and not yet taken by the network. */
  backlog(): number;
  /** close ends the connection at once; lost follows. */
  close(): void;
  readonly closed: boolean;
}

/** What a platform gives the client: links, and signing when it can. */
export interface Platform {
  dial(target: Target, events: LinkEvents, options: DialOptions): Promise<Link>;
  /** The base64 Ed25519 signature of a data frame, or undefined without a key. */
  sign?: (id: string, timestamp: number, route: string, payloadText: string) => string;
}
