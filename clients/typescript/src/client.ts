import { ClientCore, type ClientOptions } from './core.js';
import { loadSignKey, signFrame } from './sign.js';
import { dialTCP } from './tcp.js';
import { dialWebSocket } from './websocket.js';

export type { ClientOptions, ClientEvents, SendOptions, RequestOptions, TLSOptions, MailboxState, TopicPosition, Job, JobHandler } from './core.js';

/**
 * Client is a connection to a samgw server that survives the server (see
 * ClientCore): over TCP, TLS or mTLS with Node's sockets, with stream
 * compression and Ed25519 signing when asked, or over a WebSocket when
 * given a url (Node 22 and later have one).
 */
export class Client extends ClientCore {
  constructor(options: ClientOptions = {}) {
    const tlsOptions = options.tls ? (options.tls === true ? {} : options.tls) : undefined;
    const key = options.signKey !== undefined ? loadSignKey(options.signKey) : undefined;
    super(options, {
      dial: (target, events, opts) =>
        'url' in target ? dialWebSocket(target.url, events, opts) : dialTCP(target.host, target.port, tlsOptions, events, opts),
      sign: key ? (id, timestamp, route, payloadText) => signFrame(key, id, timestamp, route, payloadText) : undefined,
    });
  }
}
