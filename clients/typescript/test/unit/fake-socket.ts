// An in-process fake of the server's side of a WebSocket, for unit tests.
import type { ClientOptions, ConnectionState, WebSocketLike } from '../../src/index.js';
import { createWebSocketClient } from '../../src/index.js';
import { encodeOutputFrame, type OutputStream } from '../../src/index.js';

/** One fake socket: what the client sent, and the server's side of it. */
export class FakeSocket implements WebSocketLike {
  readyState = 0;
  binaryType = 'blob';
  onopen: WebSocketLike['onopen'] = null;
  onclose: WebSocketLike['onclose'] = null;
  onerror: WebSocketLike['onerror'] = null;
  onmessage: WebSocketLike['onmessage'] = null;
  /** Messages the client sent, parsed. */
  readonly sent: Record<string, any>[] = [];
  closedByClient = false;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }

  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }

  /** The server accepts the socket, and says `connected`. */
  accept(clientId = 'c1'): this {
    this.readyState = 1;
    this.onopen?.({});
    this.message({ type: 'connected', message: 'fake', client_count: 1, clientId });
    return this;
  }

  message(m: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(m) });
  }

  output(sessionId: string, offset: number, text: string, stream: OutputStream = 'pty'): void {
    const f = encodeOutputFrame({ sessionId, stream, offset, data: new TextEncoder().encode(text) });
    this.onmessage?.({ data: f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength) });
  }

  /** The connection drops (or is refused before it opened). */
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }

  ofType(type: string): Record<string, any>[] {
    return this.sent.filter((m) => m.type === type);
  }
}

/** A fake server: the WebSocket constructor to inject and every socket made with it. */
export function fakeServer() {
  const sockets: FakeSocket[] = [];
  class WS extends FakeSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  }
  return {
    WebSocket: WS,
    sockets,
    get last(): FakeSocket {
      const s = sockets[sockets.length - 1];
      if (!s) throw new Error('no socket was opened');
      return s;
    },
  };
}

export const quiet = { warn: () => {} };

/** A client of a fake server, with no jitter and no lifecycle events, and the states it went through. */
export function setup(options: ClientOptions = {}, token?: string) {
  const server = fakeServer();
  const client = createWebSocketClient(token, {
    url: 'http://srv:1',
    WebSocket: server.WebSocket,
    random: () => 0,
    lifecycle: null,
    logger: quiet,
    ...options,
  });
  const states: ConnectionState[] = [];
  client.onStateChange((s) => states.push(s));
  return { server, client, states };
}

