// The browser build: the same Client API over the browser's WebSocket, with
// no Node built-in anywhere it imports. Load it as an ES module:
//
//   import { Client } from 'samgw/browser';
//   const c = new Client({ url: 'wss://gateway.example/v1/ws', token });
//
// Not here: TCP, TLS options (the browser does TLS for wss://), stream
// compression (the browser negotiates permessage-deflate) and signKey
// (Ed25519 signing in browsers is asynchronous: sign on a server).
import { ClientCore, type ClientOptions } from './core.js';
import { dialWebSocket } from './websocket.js';

export type { ClientEvents, SendOptions, RequestOptions, MailboxState, TopicPosition, Job, JobHandler } from './core.js';
export { SamgwError, ClientCode } from './errors.js';
export type { Message, MessageType, ErrorPayload } from './message.js';

/** The options of the browser's Client: url is required; no tls, signKey or compress. */
export type BrowserClientOptions = Omit<ClientOptions, 'host' | 'port' | 'servers' | 'tls' | 'signKey' | 'compress'> & { url: string };

/** Client is a samgw client over a browser's WebSocket; see ClientCore. */
export class Client extends ClientCore {
  constructor(options: BrowserClientOptions) {
    if (typeof options?.url !== 'string') throw new TypeError('the browser Client needs url (wss://host/v1/ws)');
    super(options, {
      dial: (target, events, opts) =>
        'url' in target ? dialWebSocket(target.url, events, opts) : Promise.reject(new Error('only WebSocket in a browser')),
    });
  }
}
