import type { DialOptions, Link, LinkEvents } from './link.js';
import { ClientCode, SamgwError } from './errors.js';

const utf8 = new TextEncoder();

/**
 * dialWebSocket opens a WebSocket (the platform's: a browser's, or Node
 * 22's) to url and returns the link once it is open. One frame per text
 * message both ways; compression is the browser's permessage-deflate.
 */
export function dialWebSocket(url: string, events: LinkEvents, options: DialOptions): Promise<Link> {
  const WS = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
  if (!WS) return Promise.reject(new Error('this platform has no WebSocket (a browser, or Node 22 and later)'));
  return new Promise((resolve, reject) => {
    const ws = new WS(url);
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error(`no connection within ${options.timeout} ms`));
    }, options.timeout);
    ws.onerror = () => {
      clearTimeout(timer);
      reject(new Error(`WebSocket to ${url} failed`));
    };
    ws.onopen = () => {
      clearTimeout(timer);
      resolve(new WebSocketLink(ws, events, options));
    };
  });
}

class WebSocketLink implements Link {
  private ended = false;

  constructor(private readonly ws: WebSocket, private readonly events: LinkEvents, options: DialOptions) {
    ws.onerror = () => this.lost('WebSocket error');
    ws.onclose = (e) => this.lost(`connection closed (${e.code}${e.reason ? ` ${e.reason}` : ''})`);
    ws.onmessage = (e) => {
      if (this.ended) return;
      if (typeof e.data !== 'string') {
        const err = new SamgwError(ClientCode.InvalidMessage, 'the server sent a binary message');
        this.lost(err.message, err);
        return;
      }
      const frame = utf8.encode(e.data);
      if (frame.length > options.maxFrameSize) {
        const err = new SamgwError(ClientCode.FrameTooLarge, `the server sent a frame longer than ${options.maxFrameSize} bytes`);
        this.lost(err.message, err);
        return;
      }
      this.events.frames([frame]);
    };
  }

  get closed(): boolean {
    return this.ended || this.ws.readyState >= 2;
  }

  write(frames: string): void {
    if (this.closed) return;
    let start = 0;
    for (let nl = frames.indexOf('\n'); nl >= 0; nl = frames.indexOf('\n', start)) {
      this.ws.send(frames.slice(start, nl));
      start = nl + 1;
    }
  }

  backlog(): number {
    return this.ws.bufferedAmount;
  }

  close(): void {
    this.ended = true;
    if (this.ws.readyState <= 1) this.ws.close(1000);
  }

  private lost(reason: string, err?: SamgwError): void {
    if (this.ended) return;
    this.close();
    this.events.lost(reason, err);
  }
}
