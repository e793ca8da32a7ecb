/** The message types of the samgw protocol. */
export type MessageType = 'data' | 'ping' | 'pong' | 'keepalive' | 'close' | 'error' | 'auth' | 'ack' | 'nack' | 'progress';

/** One frame of the protocol, as received (one JSON object per line). */
export interface Message<P = unknown> {
  type: MessageType;
  payload?: P;
  /** The sender's clock, Unix milliseconds; the server stamps every frame. */
  timestamp?: number;
  /** A reply carries its request's id; server pushes have ids `s-N`. */
  id?: string;
  /** Which handler served (or pushed) a data message. */
  route?: string;
  /** Base64 Ed25519 signature of a signed data message. */
  sig?: string;
  /** A message from the identity's mailbox: its sequence number, to ack. */
  seq?: number;
  /** A job of a work queue handed to this worker (route: the queue): its id, to ack, nack or report progress on. */
  job?: string;
  /** A publication of a topic with history: its topic, offset (per topic, increasing) and the history's epoch. */
  topic?: string;
  offset?: number;
  epoch?: string;
}

/** The payload of an `error` frame. */
export interface ErrorPayload {
  code: string;
  message: string;
}

/** What an outgoing frame is made of; payloadText is the exact JSON sent. */
export interface OutgoingFrame {
  type: MessageType;
  id: string;
  timestamp: number;
  payloadText?: string;
  route?: string;
  sig?: string;
}

/**
 * encodeFrame writes a frame with the payload's JSON text verbatim, so the
 * bytes the server sees are the bytes that were signed.
 */
export function encodeFrame(f: OutgoingFrame): string {
  let s = `{"type":${JSON.stringify(f.type)}`;
  if (f.payloadText !== undefined) s += `,"payload":${f.payloadText}`;
  s += `,"timestamp":${f.timestamp},"id":${JSON.stringify(f.id)}`;
  if (f.route) s += `,"route":${JSON.stringify(f.route)}`;
  if (f.sig) s += `,"sig":${JSON.stringify(f.sig)}`;
  return s + '}\n';
}

const types = new Set<string>(['data', 'ping', 'pong', 'keepalive', 'close', 'error', 'auth', 'ack', 'nack', 'progress']);

/** Why a parsed frame is not a message, or undefined if it is one. */
export function invalidMessage(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'a frame must be a JSON object';
  const m = v as Record<string, unknown>;
  if (typeof m.type !== 'string') return '"type" missing or not a string';
  if (!types.has(m.type)) return `unknown message type ${JSON.stringify(m.type)}`;
  for (const k of ['id', 'route', 'sig', 'job', 'topic', 'epoch'] as const) {
    if (m[k] !== undefined && m[k] !== null && typeof m[k] !== 'string') return `"${k}" is not a string`;
  }
  if (m.timestamp !== undefined && m.timestamp !== null && typeof m.timestamp !== 'number') return '"timestamp" is not a number';
  for (const k of ['seq', 'offset'] as const) {
    if (m[k] !== undefined && m[k] !== null && !(Number.isSafeInteger(m[k]) && (m[k] as number) >= 0)) return `"${k}" is not a non-negative integer`;
  }
  return undefined;
}
