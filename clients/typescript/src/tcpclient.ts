import { Client, type ClientOptions } from './client.js';
import type { Message } from './message.js';

/** Extra settings of TCPClient beyond the prototype's four arguments. */
export interface TCPClientOptions extends Omit<ClientOptions, 'host' | 'port' | 'keepAliveTimeout' | 'keepAliveInterval'> {
  /** Where the prototype's console lines go; default console.log. */
  log?: (line: string, ...args: unknown[]) => void;
}

/**
 * TCPClient is the TypeScript prototype's client API on top of Client, so a
 * prototype agent changes one import: same constructor, same methods, same
 * console lines ("Connected to server", "Data received: …", "Pong received",
 * "Keep-alive received", "Disconnected from server"). Unlike the
 * prototype it frames by line (coalesced or split frames are fine),
 * reconnects, queues sends while disconnected, and can authenticate, sign
 * and speak TLS through the optional fifth argument.
 */
export class TCPClient {
  /** The Client underneath, for its events and promise-based methods. */
  readonly client: Client;
  private readonly log: (line: string, ...args: unknown[]) => void;

  constructor(host: string, port: number, keepAliveTimeout = 30_000, keepAliveInterval = 10_000, options: TCPClientOptions = {}) {
    const { log, ...rest } = options;
    this.log = log ?? ((line, ...args) => console.log(line, ...args));
    this.client = new Client({ ...rest, host, port, keepAliveTimeout, keepAliveInterval });
    this.client.on('data', (m: Message) => this.log('Data received:', m.payload));
    this.client.on('pong', () => this.log('Pong received'));
    this.client.on('keepalive', (m: Message) => {
      if ((m.payload as { message?: string } | undefined)?.message === 'keepalive') this.log('Keep-alive received');
    });
    this.client.on('error', (err) => this.log('Error from server:', err.message));
  }

  /** connect connects in the background, as the prototype's did; see Client.connect for a promise. */
  connect(): void {
    this.client.once('connect', () => this.log('Connected to server'));
    this.client.on('end', () => this.log('Disconnected from server'));
    this.client.connect().catch((err: Error) => this.log('Connection error:', err.message));
  }

  /** send sends a data message (queued while disconnected). */
  send(data: unknown): void {
    this.client.send(data);
  }

  /** ping sends a ping; "Pong received" is logged when it is answered. */
  ping(): void {
    this.client.sendMessage('ping', { message: 'ping' });
  }

  /** disconnect closes gracefully; see Client.disconnect for a promise. */
  disconnect(): void {
    void this.client.disconnect('Client disconnect');
  }

  isConnectedToServer(): boolean {
    return this.client.isConnected();
  }

  getLastActivity(): number {
    return this.client.lastActivity();
  }
}
