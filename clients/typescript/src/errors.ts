/**
 * Every failure the client reports is a SamgwError with a code: the
 * server's codes from its `error` frames (`unauthorized`, `no_route`,
 * `bad_signature`, …, see the samgw README) and the client's own below.
 */
export class SamgwError extends Error {
  /** The server's error code, or one of ClientCode. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'SamgwError';
    this.code = code;
  }
}

/** Codes of failures the client detects itself. */
export const ClientCode = {
  /** The connection broke after the frame was written: it may or may not have arrived (at most once). */
  ConnectionLost: 'connection_lost',
  /** disconnect() was called, or the client stopped for good. */
  ClientClosed: 'client_closed',
  /** queueSize frames are already waiting for a connection. */
  QueueFull: 'queue_full',
  /** A request or ping got no answer within its timeout. */
  Timeout: 'timeout',
  /** The first connection could not be made. */
  ConnectFailed: 'connect_failed',
  /** The server sent a frame that is not JSON or not valid UTF-8. */
  InvalidJSON: 'invalid_json',
  /** The server sent JSON that is not a message. */
  InvalidMessage: 'invalid_message',
  /** The server sent a frame longer than maxFrameSize: the connection is dropped. */
  FrameTooLarge: 'frame_too_large',
  /** subscribe()'s handler did not answer `"subscribed": true`. */
  NotSubscribed: 'not_subscribed',
} as const;
