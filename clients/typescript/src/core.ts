import type * as tls from 'node:tls';
import { ClientCode, SamgwError } from './errors.js';
import { Emitter } from './emitter.js';
import { MAX_DEPTH, nestedDeeperThan } from './depth.js';
import type { Link, Platform, Target } from './link.js';
import { encodeFrame, invalidMessage, type ErrorPayload, type Message, type MessageType } from './message.js';
import type { SignKey } from './sign.js';

/** TLS settings: what node:tls's connect takes (ca, cert, key, servername, …). */
export type TLSOptions = tls.ConnectionOptions;


type Timer = ReturnType<typeof setTimeout>;

/** unref lets Node exit while only this timer is left; browsers have no such thing. */
function unref(t: Timer): void {
  (t as { unref?: () => void }).unref?.();
}

/** Client settings; every field has the Go client's default. Durations are milliseconds. */
export interface ClientOptions {
  /** Server host; default 127.0.0.1. */
  host?: string;
  /** Server port; default 4000. */
  port?: number;
  /** Send a keepalive this often; default 10 000. */
  keepAliveInterval?: number;
  /** Declare the connection dead when nothing arrived for this long; default 30 000. */
  keepAliveTimeout?: number;
  /** Longest frame accepted from the server; default 1 MiB. */
  maxFrameSize?: number;
  /** Frames kept while disconnected; beyond it send throws queue_full. Default 1024. */
  queueSize?: number;
  /** Bound on each connection attempt (TCP, TLS handshake); default 5 000. */
  connectTimeout?: number;
  /** How long disconnect() waits for the server to acknowledge; default 2 000. */
  lingerTimeout?: number;
  /** Reconnection backoff: doubles from min to max, with jitter; default 100 and 30 000. */
  backoffMin?: number;
  backoffMax?: number;
  /** false makes a lost connection final; default true. */
  reconnect?: boolean;
  /** Default timeout of request() and ping(); default 30 000. */
  requestTimeout?: number;
  /** Speak TLS: true for the system roots, or node:tls options (ca, cert and key for mTLS). */
  tls?: boolean | TLSOptions;
  /** Sent in an auth frame first on every connection. */
  token?: string;
  /**
   * A WebSocket URL (`wss://host/v1/ws`) in place of host and port: the
   * transport of browsers (and of Node 22). One frame per message; the
   * browser negotiates permessage-deflate by itself.
   */
  url?: string;
  /**
   * Ask for stream compression on TCP (`"compress": "deflate"` in the auth
   * frame, then sent even without a token): worth it for large text (LLM
   * output, JSON tool results). The server must know the option. Node only.
   */
  compress?: boolean;
  /** Signs every data frame (Ed25519; PKCS#8 PEM from `samgw keygen`, or a KeyObject). */
  signKey?: SignKey;
  /**
   * With a token, ask for the identity's mailbox on every connection
   * (`"resume": true`): what waits there is delivered as `data` events with
   * a `seq`. Default true.
   */
  resume?: boolean;
  /**
   * Leave acks to ack(seq). By default each mailbox message is acked once
   * the `data` listeners have returned (one ack per burst of frames); a
   * listener that finishes its work later should use manualAck.
   */
  manualAck?: boolean;
  /** How many mailbox message ids are remembered to drop duplicates; default 4096. */
  dedupeWindow?: number;
  /** How often a job still being handled by onJob is reported in progress (its lease starts again); default 10 000. */
  jobProgressEvery?: number;
  /** The route subscribe() and unsubscribe() send to (a handler that speaks scripts/examples/pubsub.lua's requests); default "pubsub". */
  topicRoute?: string;
  /**
   * Several servers, "host:port" each, in place of host and port: tried in
   * turn, a failed dial moves on to the next, and a reconnection starts with
   * the one after the server it lost (failover across a cluster's nodes).
   */
  servers?: string[];
}

/** What the server's auth reply said of the identity's mailbox. */
export interface MailboxState {
  /** The connection is attached to the mailbox. */
  resumed: boolean;
  /** How many messages waited when it authenticated. */
  pending: number;
}

/** Where a subscriber stands in a topic's history: the last offset it has, of which epoch. */
export interface TopicPosition {
  offset: number;
  epoch: string;
}

/** Options of one send or request. */
export interface SendOptions {
  /** The handler route (DIR/<route>.lua on the server). */
  route?: string;
  /** The message id; default a fresh one. */
  id?: string;
}

/** Options of one request. */
export interface RequestOptions extends SendOptions {
  /** Reject with timeout after this many ms; default the client's requestTimeout. */
  timeout?: number;
}

/** The events a Client emits, with their arguments. */
export interface ClientEvents {
  /** Every frame received, replies included. */
  message: [Message];
  /** Data frames that answer none of this client's requests: pushes, echoes of send(). */
  data: [Message];
  ping: [Message];
  pong: [Message];
  keepalive: [Message];
  close: [Message];
  auth: [Message];
  /** A connection is up (the first and every reconnection). */
  connect: [];
  /** A connection was lost (or closed); reason says why. */
  disconnect: [string];
  /** The client stopped for good: after disconnect(), or a loss with reconnect: false. */
  end: [];
  /**
   * A subscription renewed after a reconnect was answered (reply), or
   * failed (error). A reply whose payload has `recovered: false` means
   * publications were missed and are no longer kept: resync that topic.
   */
  resubscribed: [topic: string, reply: Message | undefined, error: SamgwError | undefined];
  /**
   * Server `error` frames that answer no request, and invalid input from
   * the server. Without a listener they are dropped, never thrown.
   */
  error: [SamgwError];
}

interface Waiter {
  resolve(m: Message): void;
  reject(e: SamgwError): void;
  timer: Timer;
}

interface Queued {
  id: string;
  frame: string;
}

/** A live connection and its timers. */
interface Session {
  link?: Link; // set once dialled
  keepAlive?: Timer;
  deadPeer?: Timer;
  lost?: string; // why it ended, once it has
  toAck?: number; // the highest mailbox seq of the chunk being handled
  jobs?: Set<AbortController>; // the jobs it handed to onJob, still running
}

/** A job of a work queue handed to this client as a worker. */
export interface Job<P = unknown> {
  /** The queue (the data frame's route). */
  queue: string;
  id: string;
  payload: P;
}

/** Handles one job: resolving acks it, rejecting (or throwing) nacks it. signal aborts when the connection that received it is lost (the server has given it back). */
export type JobHandler = (job: Job, signal: AbortSignal) => unknown;

function jobFrame(type: 'ack' | 'nack' | 'progress', job: string, id: string): string {
  return encodeFrame({ type, id, timestamp: Date.now(), payloadText: `{"job":${JSON.stringify(job)}}` });
}

const pongPayload = '{"message":"pong"}';

function ackFrame(seq: number, id: string): string {
  return encodeFrame({ type: 'ack', id, timestamp: Date.now(), payloadText: `{"seq":${seq}}` });
}

/** Bound on bytes written but not yet taken by the kernel (a server that stopped reading). */
const maxUnsentBytes = 4 << 20;
/** maxControlBacklog bounds what the client's own control frames (pongs,
 * keepalives) may add to a write backlog the server does not drain. */
const maxControlBacklog = 64 << 10;

/**
 * Client is a connection to a samgw server that survives the server: it
 * reconnects with backoff after any loss disconnect() did not ask for, and
 * keeps what was sent meanwhile in a bounded queue, delivered in order once
 * connected again.
 *
 * Delivery is at most once: a frame already written to a connection that
 * then breaks is not sent again, and a request waiting for its reply
 * rejects with connection_lost. Frames still queued when a connection
 * breaks are sent on the next one.
 */
export class ClientCore extends Emitter<ClientEvents> {
  private readonly opts: Required<Omit<ClientOptions, 'tls' | 'token' | 'signKey' | 'resume' | 'manualAck' | 'servers' | 'url' | 'compress'>>;
  private readonly platform: Platform;
  private readonly compress: boolean;
  private jobHandler?: JobHandler;
  private readonly servers: Target[];
  private nextServer = 0;
  private readonly resume: boolean;
  private readonly manualAck: boolean;
  private readonly seen = new Set<string>(); // mailbox ids handled, within dedupeWindow
  private readonly seenOrder: string[] = [];
  private mailboxState: MailboxState = { resumed: false, pending: 0 };
  private readonly token?: string;
  private readonly idPrefix = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, '0')).join('') + '-';
  private seq = 0;
  private readonly topics = new Map<string, TopicPosition>(); // followed with subscribe(): the last publication seen
  private renewing = new Map<string, string>(); // request id → topic, of the renewals in flight

  private session?: Session; // set while a connection is up
  private queue: Queued[] = [];
  private readonly waiters = new Map<string, Waiter>();
  private started = false;
  private closed = false;
  private backoff: number;
  private reconnectTimer?: Timer;
  private lastActivityMs = 0;
  private lastServerError?: SamgwError;
  private authWait?: { resolve(): void; reject(e: SamgwError): void };
  private endWait?: () => void;
  private ended = false;

  /** The platform (Node's sockets, or a browser's WebSocket) makes the links. */
  constructor(options: ClientOptions, platform: Platform) {
    super();
    const o = options;
    this.platform = platform;
    this.compress = (o.compress ?? false) && o.url === undefined;
    this.opts = {
      host: o.host ?? '127.0.0.1',
      port: o.port ?? 4000,
      keepAliveInterval: o.keepAliveInterval ?? 10_000,
      keepAliveTimeout: o.keepAliveTimeout ?? 30_000,
      maxFrameSize: o.maxFrameSize ?? 1 << 20,
      queueSize: o.queueSize ?? 1024,
      connectTimeout: o.connectTimeout ?? 5_000,
      lingerTimeout: o.lingerTimeout ?? 2_000,
      backoffMin: o.backoffMin ?? 100,
      backoffMax: Math.max(o.backoffMax ?? 30_000, o.backoffMin ?? 100),
      reconnect: o.reconnect ?? true,
      requestTimeout: o.requestTimeout ?? 30_000,
      dedupeWindow: o.dedupeWindow ?? 4096,
      jobProgressEvery: o.jobProgressEvery ?? 10_000,
      topicRoute: o.topicRoute ?? 'pubsub',
    };
    this.resume = o.resume ?? true;
    this.servers = o.url !== undefined
      ? [{ url: o.url }]
      : o.servers?.length
      ? o.servers.map((hp) => {
          const i = hp.lastIndexOf(':');
          const port = Number(hp.slice(i + 1));
          if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new RangeError(`servers: ${JSON.stringify(hp)} is not host:port`);
          return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port };
        })
      : [{ host: this.opts.host, port: this.opts.port }];
    this.manualAck = o.manualAck ?? false;
    for (const [k, v] of Object.entries(this.opts)) {
      if (typeof v === 'number' && !(v > 0)) throw new RangeError(`${k} must be positive, got ${v}`);
    }
    this.token = o.token;
    this.backoff = this.opts.backoffMin;
  }

  /**
   * connect makes the first connection and, with a token, waits until the
   * server accepted it. It rejects (connect_failed, or the server's code
   * such as unauthorized) when that fails; later losses are repaired in the
   * background.
   */
  async connect(): Promise<void> {
    if (this.started || this.closed) throw new SamgwError(ClientCode.ClientClosed, 'connect: the client was already started');
    this.started = true;
    const authed = this.token || this.compress
      ? new Promise<void>((resolve, reject) => (this.authWait = { resolve, reject }))
      : Promise.resolve();
    authed.catch(() => {}); // awaited below, once dialled
    let s: Session;
    try {
      s = await this.dial();
    } catch (err) {
      this.authWait = undefined;
      this.finish();
      throw new SamgwError(ClientCode.ConnectFailed, `connect to ${this.where()}: ${(err as Error).message}`, { cause: err });
    }
    if (this.closed) {
      // disconnect() was called while dialling.
      s.link!.close();
      throw new SamgwError(ClientCode.ClientClosed, 'connect: disconnected while connecting');
    }
    this.startSession(s);
    try {
      await withTimeout(authed, this.opts.connectTimeout, () => new SamgwError(ClientCode.Timeout, 'no answer to the auth frame'));
    } catch (err) {
      await this.disconnect('authentication failed');
      const e = err as SamgwError;
      throw new SamgwError(e.code, `authenticate to ${this.where()}: ${e.message}`, { cause: err });
    } finally {
      this.authWait = undefined;
    }
  }

  /** send sends a data message and returns its id; queued while disconnected. */
  send(payload: unknown, options: SendOptions = {}): string {
    return this.sendMessage('data', payload, options);
  }

  /** sendMessage sends a message of any type; payload undefined means none. */
  sendMessage(type: MessageType, payload: unknown, options: SendOptions = {}): string {
    const id = options.id ?? this.nextId();
    this.write(id, this.frame(type, id, payload, options.route));
    return id;
  }

  /**
   * request sends a data message and resolves with the reply carrying its
   * id; an `error` reply rejects with the server's code and message.
   */
  request<P = unknown>(payload: unknown, options: RequestOptions = {}): Promise<Message<P>> {
    return this.requestMessage('data', payload, options) as Promise<Message<P>>;
  }

  /** ping sends a ping and resolves with the round trip in milliseconds. */
  async ping(timeout?: number): Promise<number> {
    const start = performance.now();
    await this.requestMessage('ping', { message: 'ping' }, { timeout });
    return performance.now() - start;
  }

  /**
   * disconnect sends close {"reason": reason}, waits (up to lingerTimeout)
   * for the server to acknowledge, and stops the client for good: queued
   * frames are dropped and waiting requests reject with client_closed.
   */
  async disconnect(reason = 'client disconnect'): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const s = this.session;
    if (s && !s.lost && !s.link!.closed) {
      const ended = new Promise<void>((resolve) => (this.endWait = resolve));
      s.link!.write(encodeFrame({ type: 'close', id: this.nextId(), timestamp: Date.now(), payloadText: JSON.stringify({ reason }) }));
      // Past the linger, the connection is cut and lost here (a link closed
      // by its owner reports nothing more).
      const linger = setTimeout(() => this.lose(s, 'connection closed'), this.opts.lingerTimeout);
      await ended;
      clearTimeout(linger);
    }
    this.finish();
  }

  /** mailbox says whether the last connection resumed its identity's mailbox, and how many messages waited. */
  get mailbox(): MailboxState {
    return { ...this.mailboxState };
  }

  /**
   * onJob makes handler the worker of the jobs this client is handed (data
   * frames with a job, which then reach no 'data' listener). Each job runs
   * at once (as many as the server hands out: the worker's prefetch); when
   * the handler resolves the job is acked, when it rejects or throws it is
   * nacked (another delivery), and while it runs a progress frame every
   * jobProgressEvery keeps its lease.
   */
  onJob(handler: JobHandler): this {
    this.jobHandler = handler;
    return this;
  }

  /** answerJob answers a job seen as a 'data' event (without onJob): ack, nack or progress. False when not connected: the job went back with the connection that received it. */
  answerJob(type: 'ack' | 'nack' | 'progress', job: string): boolean {
    const s = this.session;
    if (!s || s.lost) return false;
    s.link!.write(jobFrame(type, job, this.nextId()));
    return true;
  }

  /** startJob runs the job handler for one job frame of session s. */
  private startJob(s: Session, m: Message): void {
    const job: Job = { queue: m.route ?? '', id: m.job!, payload: m.payload };
    const ac = new AbortController();
    (s.jobs ??= new Set()).add(ac);
    const progress = setInterval(() => {
      if (!s.lost) s.link!.write(jobFrame('progress', job.id, this.nextId()));
    }, this.opts.jobProgressEvery);
    unref(progress);
    ac.signal.addEventListener('abort', () => clearInterval(progress));
    const finish = (type: 'ack' | 'nack', err?: unknown) => {
      clearInterval(progress);
      s.jobs!.delete(ac);
      if (s.lost || ac.signal.aborted) return; // given back with the connection
      if (err !== undefined) this.emitError(new SamgwError('job_failed', `job ${job.id} of ${job.queue}: ${(err as Error)?.message ?? String(err)}; it goes back to its queue`, { cause: err }));
      s.link!.write(jobFrame(type, job.id, this.nextId()));
    };
    const handler = this.jobHandler!;
    Promise.resolve()
      .then(() => handler(job, ac.signal))
      .then(() => finish('ack'), (err: unknown) => finish('nack', err ?? new Error('rejected')));
  }

  /** ack acks the mailbox messages up to seq (cumulative); only needed with manualAck. */
  ack(seq: number): void {
    if (!Number.isSafeInteger(seq) || seq <= 0) throw new RangeError(`ack: seq must be a positive integer, got ${seq}`);
    const s = this.session;
    if (!s || s.lost) throw new SamgwError(ClientCode.ConnectionLost, `ack ${seq}: not connected (the message comes again after the reconnect)`);
    s.link!.write(ackFrame(seq, this.nextId()));
  }

  /** isConnected reports whether a connection is up now. */
  /**
   * subscribe follows a topic through the topic route: it sends
   * `{"subscribe": topic}`, with `since` and `epoch` when publications of it
   * were seen, and resolves with the answer. The client then remembers the
   * offset of each publication it receives, drops one it had already, and
   * after every reconnect subscribes again from the last one, so a topic
   * with history on the server (--topic-history) delivers what was missed
   * meanwhile; `resubscribed` events carry those answers.
   */
  async subscribe(topic: string, options: { timeout?: number } = {}): Promise<Message> {
    const reply = await this.request(this.subscribeRequest(topic), { route: this.opts.topicRoute, timeout: options.timeout });
    const err = this.subscribeAnswered(topic, reply);
    if (err) throw err;
    return reply;
  }

  /** unsubscribe leaves a topic (`{"unsubscribe": topic}`) and stops following it. */
  unsubscribe(topic: string, options: { timeout?: number } = {}): Promise<Message> {
    this.topics.delete(topic);
    return this.request({ unsubscribe: topic }, { route: this.opts.topicRoute, timeout: options.timeout });
  }

  /** topicOffset is the last position seen of a followed topic with history, or undefined. */
  topicOffset(topic: string): TopicPosition | undefined {
    const p = this.topics.get(topic);
    return p && p.epoch !== '' ? { ...p } : undefined;
  }

  private subscribeRequest(topic: string): Record<string, unknown> {
    const p = this.topics.get(topic);
    return p && p.epoch !== '' ? { subscribe: topic, since: p.offset, epoch: p.epoch } : { subscribe: topic };
  }

  /** subscribeAnswered follows topic from the position the answer gives, unless it has seen further in that epoch. */
  private subscribeAnswered(topic: string, reply: Message): SamgwError | undefined {
    const a = (reply.payload ?? {}) as { subscribed?: unknown; offset?: unknown; epoch?: unknown };
    if (a.subscribed !== true) return new SamgwError(ClientCode.NotSubscribed, `subscribe ${topic}: answered ${JSON.stringify(reply.payload)}`);
    let p = this.topics.get(topic);
    if (!p) this.topics.set(topic, (p = { offset: 0, epoch: '' }));
    if (typeof a.epoch === 'string' && a.epoch !== '' && typeof a.offset === 'number' && (a.epoch !== p.epoch || a.offset > p.offset)) {
      p.offset = a.offset;
      p.epoch = a.epoch;
    }
    return undefined;
  }

  /** seenPublication records a publication of a followed topic and reports whether it was seen before. */
  private seenPublication(m: Message): boolean {
    const p = this.topics.get(m.topic!);
    if (!p) return false;
    if (p.epoch === (m.epoch ?? '') && m.offset! <= p.offset) return true;
    p.offset = m.offset!;
    p.epoch = m.epoch ?? '';
    return false;
  }

  isConnected(): boolean {
    return this.session !== undefined && !this.session.lost;
  }

  /** lastActivity is when the last frame arrived (or the connection was made), Unix ms. */
  lastActivity(): number {
    return this.lastActivityMs;
  }

  // --- sending ---

  private nextId(): string {
    return this.idPrefix + ++this.seq;
  }

  private frame(type: MessageType, id: string, payload: unknown, route?: string): string {
    const payloadText = payload === undefined ? undefined : JSON.stringify(payload);
    if (payload !== undefined && payloadText === undefined) throw new TypeError('payload is not JSON-serialisable');
    const timestamp = Date.now();
    let sig: string | undefined;
    if (this.platform.sign && type === 'data') sig = this.platform.sign(id, timestamp, route ?? '', payloadText ?? '');
    return encodeFrame({ type, id, timestamp, payloadText, route, sig });
  }

  private write(id: string, frame: string): void {
    if (this.closed) throw new SamgwError(ClientCode.ClientClosed, 'the client is closed');
    const s = this.session;
    if (s && !s.lost) {
      if (s.link!.backlog() > maxUnsentBytes) {
        throw new SamgwError(ClientCode.QueueFull, `more than ${maxUnsentBytes} bytes are waiting for the server to read them`);
      }
      s.link!.write(frame);
      return;
    }
    if (this.queue.length >= this.opts.queueSize) {
      throw new SamgwError(ClientCode.QueueFull, `${this.opts.queueSize} frames are already waiting for a connection`);
    }
    this.queue.push({ id, frame });
  }

  private requestMessage(type: MessageType, payload: unknown, options: RequestOptions): Promise<Message> {
    const id = options.id ?? this.nextId();
    const timeout = options.timeout ?? this.opts.requestTimeout;
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new SamgwError(ClientCode.Timeout, `request ${id}: no reply within ${timeout} ms`));
      }, timeout);
      this.waiters.set(id, { resolve, reject, timer });
      try {
        this.write(id, this.frame(type, id, payload, options.route));
      } catch (err) {
        clearTimeout(timer);
        this.waiters.delete(id);
        reject(err);
      }
    });
  }

  // --- connections ---

  private where(): string {
    return this.servers.map((s) => ('url' in s ? s.url : `${s.host}:${s.port}`)).join(',');
  }

  /** dial connects to the first of the servers, from nextServer on, that answers; the next dial starts after it. */
  private async dial(): Promise<Session> {
    const errors: string[] = [];
    for (let i = 0; i < this.servers.length; i++) {
      const k = (this.nextServer + i) % this.servers.length;
      const target = this.servers[k]!;
      const s: Session = {};
      try {
        s.link = await this.platform.dial(target, {
          frames: (frames) => this.onFrames(s, frames),
          lost: (reason, err) => {
            if (err) this.emitError(err);
            this.lose(s, reason);
          },
        }, { timeout: this.opts.connectTimeout, maxFrameSize: this.opts.maxFrameSize, compress: this.compress });
        this.nextServer = k + 1;
        return s;
      } catch (err) {
        const where = 'url' in target ? target.url : `${target.host}:${target.port}`;
        errors.push(this.servers.length > 1 ? `${where}: ${(err as Error).message}` : (err as Error).message);
      }
    }
    throw new Error(errors.join('; '));
  }

  private startSession(s: Session): void {
    const link = s.link!;
    this.session = s;
    this.lastActivityMs = Date.now();
    this.lastServerError = undefined;
    if (this.token || this.compress) {
      const id = this.nextId();
      const auth: Record<string, unknown> = {};
      if (this.token) auth.token = this.token;
      if (this.token && this.resume) auth.resume = true;
      if (this.compress) auth.compress = 'deflate';
      link.write(encodeFrame({ type: 'auth', id, timestamp: Date.now(), payloadText: JSON.stringify(auth) }));
    }
    this.renewing = new Map(); // the last connection's are never answered
    for (const topic of this.topics.keys()) {
      const id = this.nextId();
      this.renewing.set(id, topic);
      link.write(this.frame('data', id, this.subscribeRequest(topic), this.opts.topicRoute));
    }
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) link.write(q.frame);
    s.keepAlive = setInterval(() => {
      if (!s.lost && link.backlog() <= maxControlBacklog) link.write(encodeFrame({ type: 'keepalive', id: this.nextId(), timestamp: Date.now(), payloadText: '{"message":"keepalive"}' }));
    }, this.opts.keepAliveInterval);
    unref(s.keepAlive);
    s.deadPeer = setTimeout(() => this.lose(s, 'keepalive timeout'), this.opts.keepAliveTimeout);
    unref(s.deadPeer);
    this.emit('connect');
  }

  private onFrames(s: Session, frames: Uint8Array[]): void {
    if (s.lost) return;
    if (frames.length > 0) {
      // Only whole frames show the server alive: a peer that drips bytes
      // of a frame that never ends is dead all the same.
      this.lastActivityMs = Date.now();
      s.deadPeer?.refresh?.();
    }
    s.toAck = 0;
    for (const f of frames) {
      if (s.lost) return;
      this.dispatch(s, f);
    }
    // Acks are cumulative: one for the whole chunk.
    if (s.toAck > 0 && !s.lost) s.link!.write(ackFrame(s.toAck, this.nextId()));
  }

  /** mailboxMessage passes on a message from the mailbox unless it is a duplicate, then marks it for the ack. */
  private mailboxMessage(s: Session, m: Message): void {
    const id = m.id ?? `m-${m.seq}`;
    if (!this.seen.has(id)) {
      this.seen.add(id);
      this.seenOrder.push(id);
      if (this.seenOrder.length > this.opts.dedupeWindow) this.seen.delete(this.seenOrder.shift()!);
      this.emit('data', m);
    }
    if (!this.manualAck) s.toAck = Math.max(s.toAck ?? 0, m.seq!);
  }

  private dispatch(s: Session, frame: Uint8Array): void {
    let m: Message;
    if (nestedDeeperThan(frame, MAX_DEPTH)) {
      this.emitError(new SamgwError(ClientCode.InvalidMessage, `the server sent a frame nested deeper than ${MAX_DEPTH} levels`));
      return;
    }
    try {
      m = JSON.parse(utf8.decode(frame));
    } catch (err) {
      this.emitError(new SamgwError(ClientCode.InvalidJSON, `the server sent a frame that is not JSON: ${(err as Error).message}`));
      return;
    }
    const bad = invalidMessage(m);
    if (bad) {
      this.emitError(new SamgwError(ClientCode.InvalidMessage, `the server sent an invalid message: ${bad}`));
      return;
    }
    if (m.id === null) delete m.id;
    if (m.route === null) delete m.route;
    if (m.type === 'data' && typeof m.topic === 'string' && typeof m.offset === 'number' && m.offset > 0 && this.seenPublication(m)) {
      return; // had it: delivered again by a recovery
    }
    this.emit('message', m);
    switch (m.type) {
      case 'ping':
        // A server that pings and never reads would have one pong queued
        // per ping, without end: past the backlog, pongs are dropped (its
        // own keep-alive timeout decides about us).
        if (s.link!.backlog() <= maxControlBacklog) {
          s.link!.write(encodeFrame({ type: 'pong', id: m.id ?? this.nextId(), timestamp: Date.now(), payloadText: pongPayload }));
        }
        this.emit('ping', m);
        return;
      case 'close': {
        const p = (m.payload ?? {}) as { reason?: string; message?: string };
        this.emit('close', m);
        this.lose(s, `closed by the server: ${p.reason ?? p.message ?? 'no reason given'}`);
        return;
      }
      case 'auth': {
        const p = (m.payload ?? {}) as { resume?: unknown; pending?: unknown };
        this.mailboxState = { resumed: p.resume === true, pending: p.resume === true && typeof p.pending === 'number' ? p.pending : 0 };
        this.authWait?.resolve();
        this.emit('auth', m);
        return;
      }
      case 'keepalive':
        this.emit('keepalive', m);
        return;
    }
    if (m.type === 'data' && typeof m.seq === 'number' && m.seq > 0) {
      this.mailboxMessage(s, m); // never a reply, whatever its id
      return;
    }
    if (m.type === 'data' && typeof m.job === 'string' && this.jobHandler) {
      this.startJob(s, m); // never a reply either
      return;
    }
    // data, pong, error: a reply goes to its request only.
    let err: SamgwError | undefined;
    if (m.type === 'error') {
      const p = (m.payload ?? {}) as Partial<ErrorPayload>;
      err = new SamgwError(String(p.code ?? 'error'), String(p.message ?? ''));
      if (err.code === 'unauthorized') this.authWait?.reject(err);
    }
    const renewed = m.id === undefined ? undefined : this.renewing.get(m.id);
    if (renewed !== undefined) {
      this.renewing.delete(m.id!);
      if (!err) err = this.subscribeAnswered(renewed, m);
      this.emit('resubscribed', renewed, err ? undefined : m, err);
      return;
    }
    const w = m.id === undefined ? undefined : this.waiters.get(m.id);
    if (w) {
      this.waiters.delete(m.id!);
      clearTimeout(w.timer);
      if (err) w.reject(err);
      else w.resolve(m);
      return;
    }
    if (err) {
      this.lastServerError = err;
      this.emitError(err);
    } else if (m.type === 'data') {
      this.emit('data', m);
    } else {
      this.emit('pong', m);
    }
  }

  private emitError(err: SamgwError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** lose ends session s (once) and decides what comes next. */
  private lose(s: Session, reason: string): void {
    if (s.lost) return;
    s.lost = reason;
    clearInterval(s.keepAlive);
    clearTimeout(s.deadPeer);
    for (const ac of s.jobs ?? []) ac.abort(new SamgwError(ClientCode.ConnectionLost, `the connection was lost (${reason}): the job went back to its queue`));
    s.link?.close();
    if (this.session === s) this.session = undefined;
    // Requests whose frames were written may never be answered; queued
    // ones (none: the queue only fills while disconnected) keep waiting.
    const said = this.lastServerError ? ` (the server said ${this.lastServerError.message})` : '';
    const queued = new Set(this.queue.map((q) => q.id));
    for (const [id, w] of this.waiters) {
      if (queued.has(id)) continue;
      this.waiters.delete(id);
      clearTimeout(w.timer);
      w.reject(this.closed
        ? new SamgwError(ClientCode.ClientClosed, `request ${id}: the client disconnected`)
        : new SamgwError(ClientCode.ConnectionLost, `request ${id}: the connection was lost (${reason})${said}`));
    }
    const authErr = this.lastServerError ?? new SamgwError(ClientCode.ConnectionLost, `the connection ended before authentication: ${reason}`);
    this.authWait?.reject(authErr);
    this.emit('disconnect', reason);
    if (this.endWait) {
      this.endWait();
      this.endWait = undefined;
      return;
    }
    if (this.closed) return;
    if (!this.opts.reconnect) {
      this.closed = true;
      this.finish();
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    // Equal jitter: between half and all of the backoff, so clients dropped
    // together do not return together.
    const delay = this.backoff / 2 + Math.random() * (this.backoff / 2);
    this.backoff = Math.min(2 * this.backoff, this.opts.backoffMax);
    this.reconnectTimer = setTimeout(() => {
      this.dial().then(
        (s) => {
          if (this.closed) {
            s.link!.close();
            return;
          }
          this.backoff = this.opts.backoffMin;
          this.startSession(s);
        },
        () => {
          if (!this.closed) this.scheduleReconnect();
        },
      );
    }, delay);
  }

  /** finish stops the client for good. */
  private finish(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.queue = [];
    for (const [id, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new SamgwError(ClientCode.ClientClosed, `request ${id}: the client disconnected`));
    }
    this.waiters.clear();
    if (this.session) this.lose(this.session, 'client closed');
    if (!this.ended) {
      this.ended = true;
      this.emit('end');
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function withTimeout<T>(p: Promise<T>, ms: number, err: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(err()), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
