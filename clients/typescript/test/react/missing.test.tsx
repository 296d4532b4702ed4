// @vitest-environment happy-dom
// useTerminalStream of a session that is not there, or goes: the hook says so.
import { cleanup, configure, render, screen } from '@testing-library/react';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createWebSocketClient, type WebSocketClient, type WebSocketConstructor } from '../../src/index.js';
import { TermstreamProvider } from '../../src/react/index.js';
import { TestServer } from '../integration/server.js';
import { Output } from './output.js';

configure({ asyncUtilTimeout: 10_000 });

let server: TestServer;
beforeAll(async () => {
  // A short attach wait, so a missing session is answered soon.
  server = await TestServer.start({ env: { TERMSTREAM_ATTACH_WAIT_MS: '200' } });
});
afterEach(() => cleanup());
afterAll(async () => {
  await server.cleanup();
});

function newClient(): WebSocketClient {
  return createWebSocketClient(undefined, { url: server.url, WebSocket: WebSocket as unknown as WebSocketConstructor, lifecycle: null });
}

it('a session that does not exist shows as the error session_not_found', async () => {
  render(
    <TermstreamProvider client={newClient()}>
      <Output sessionId="no-such-session" />
    </TermstreamProvider>,
  );
  await screen.findByText('error session_not_found');
  expect(screen.getByText('offline')).toBeTruthy();
});

/** A server older than the error's `request` and `seq` fields: this socket strips them from every message. */
class OlderServer extends WebSocket {
  constructor(...args: ConstructorParameters<typeof WebSocket>) {
    super(...args);
    const slot = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage')!;
    Object.defineProperty(this, 'onmessage', {
      get: () => slot.get!.call(this),
      set: (f: ((ev: WebSocket.MessageEvent) => void) | null) => {
        const strip = (ev: WebSocket.MessageEvent) => {
          if (typeof ev.data !== 'string') return f!(ev);
          const m = JSON.parse(ev.data);
          delete m.request;
          delete m.seq;
          f!({ ...ev, data: JSON.stringify(m) } as WebSocket.MessageEvent);
        };
        slot.set!.call(this, f && strip);
      },
    });
  }
}

it('with a server that does not mark the attach refusal, a session that does not exist shows as the error session_not_found', async () => {
  const client = createWebSocketClient(undefined, { url: server.url, WebSocket: OlderServer as unknown as WebSocketConstructor, lifecycle: null });
  render(
    <TermstreamProvider client={client}>
      <Output sessionId="no-such-session-old" />
    </TermstreamProvider>,
  );
  await screen.findByText('error session_not_found');
  expect(screen.getByText('offline')).toBeTruthy();
});

it('a session deleted while shown shows as the error session_not_found', async () => {
  await server.createSession({ id: 'to-delete', kind: 'command', command: 'echo shown; exec sleep 30' });
  render(
    <TermstreamProvider client={newClient()}>
      <Output sessionId="to-delete" />
    </TermstreamProvider>,
  );
  await screen.findByText('shown');
  expect(screen.getByText('no error')).toBeTruthy();
  expect((await server.call('DELETE', '/api/sessions/to-delete')).status).toBe(204);
  await screen.findByText('error session_not_found');
  expect(screen.getByText('offline')).toBeTruthy();
});
