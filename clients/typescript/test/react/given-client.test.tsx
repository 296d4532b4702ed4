// @vitest-environment happy-dom
// A hook given its own client (`useTerminalStream(id, {client})`) outside a
// provider uses that client only: the page's default client is not made or
// connected.
import { cleanup, configure, render, screen } from '@testing-library/react';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createWebSocketClient, type WebSocketConstructor } from '../../src/index.js';
import { useTerminalStream } from '../../src/react/index.js';
import { TestServer } from '../integration/server.js';

configure({ asyncUtilTimeout: 10_000 });

let server: TestServer;
/** Sockets made with the page's global WebSocket. */
const pageSockets: string[] = [];
beforeAll(async () => {
  server = await TestServer.start();
  vi.stubGlobal('location', { origin: server.url });
  vi.stubGlobal(
    'WebSocket',
    class extends WebSocket {
      constructor(url: string) {
        super(url);
        pageSockets.push(url);
      }
    },
  );
});
afterAll(async () => {
  cleanup();
  vi.unstubAllGlobals();
  await server.cleanup();
});

it('useTerminalStream with a client of its own opens no socket of the default client', async () => {
  await server.createSession({ id: 'own-client', kind: 'command', command: 'echo mine' });
  const client = createWebSocketClient(undefined, { url: server.url, WebSocket: WebSocket as unknown as WebSocketConstructor, lifecycle: null });
  client.connect();
  function Output() {
    const { output, exitCode } = useTerminalStream('own-client', { client });
    return <pre>{`${output.trim()} ${exitCode}`}</pre>;
  }
  const view = render(<Output />);
  await screen.findByText('mine 0');
  expect(pageSockets).toEqual([]);
  view.unmount();
  client.disconnect();
});
