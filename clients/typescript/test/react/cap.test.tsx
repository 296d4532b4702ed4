// @vitest-environment happy-dom
// useTerminalStream past the socket's attachment cap, against the real server:
// the refused hook shows `rate_limited`, the others stream on.
import { cleanup, configure, render, screen } from '@testing-library/react';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createWebSocketClient, type WebSocketConstructor } from '../../src/index.js';
import { TermstreamProvider, useTerminalStream } from '../../src/react/index.js';
import { TestServer } from '../integration/server.js';

configure({ asyncUtilTimeout: 10_000 });

let server: TestServer;
beforeAll(async () => {
  server = await TestServer.start({ env: { TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET: '2' } });
  for (const id of ['hook-cap-1', 'hook-cap-2', 'hook-cap-3']) await server.createSession({ id, kind: 'command', command: 'exec cat' });
});
afterEach(() => cleanup());
afterAll(async () => {
  await server.cleanup();
});

function Output({ sessionId, label = sessionId }: { sessionId: string; label?: string }) {
  const { output, isConnected, error } = useTerminalStream(sessionId);
  return (
    <div>
      <span>{`${label} ${isConnected ? 'live' : 'offline'}`}</span>
      <span>{`${label} ${error ? `error ${error.code}` : 'no error'}`}</span>
      <pre>{`${label}: ${output}`}</pre>
    </div>
  );
}

it('the hook whose attach finds no free slot shows rate_limited; the hooks attached before it stream on; one mounted later asks again', async () => {
  const client = createWebSocketClient(undefined, { url: server.url, WebSocket: WebSocket as unknown as WebSocketConstructor, lifecycle: null });
  // Mounted in order: their attaches go out in this order.
  const { rerender } = render(
    <TermstreamProvider client={client}>
      <Output key="1" sessionId="hook-cap-1" />
      <Output key="2" sessionId="hook-cap-2" />
      <Output key="3" sessionId="hook-cap-3" />
    </TermstreamProvider>,
  );
  await screen.findByText('hook-cap-3 error rate_limited');
  expect(screen.getByText('hook-cap-3 offline')).toBeTruthy();
  await screen.findByText('hook-cap-1 live');
  await screen.findByText('hook-cap-2 live');
  for (const id of ['hook-cap-1', 'hook-cap-2']) {
    expect((await server.call('POST', `/api/sessions/${id}/input`, { data: `typed into ${id}\n` })).status).toBe(200);
    await screen.findByText(`${id}: typed into ${id}`);
    expect(screen.getByText(`${id} no error`)).toBeTruthy();
  }

  // The first unmounted (its slot freed), a new hook of the refused session
  // attaches it: the refused attach was over, not waiting on.
  rerender(
    <TermstreamProvider client={client}>
      <Output key="2" sessionId="hook-cap-2" />
      <Output key="3" sessionId="hook-cap-3" />
      <Output key="3-again" sessionId="hook-cap-3" label="again" />
    </TermstreamProvider>,
  );
  await screen.findByText('again live');
  expect((await server.call('POST', '/api/sessions/hook-cap-3/input', { data: 'typed at last\n' })).status).toBe(200);
  await screen.findByText('again: typed at last');
  expect(screen.getByText('again no error')).toBeTruthy();
});
