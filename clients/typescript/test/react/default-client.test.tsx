// @vitest-environment happy-dom
// Without a provider, hooks share a default client for the page's origin,
// connected while any component uses it.
import { cleanup, configure, render, screen } from '@testing-library/react';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import type { WebSocketClient } from '../../src/index.js';
import { useWebSocket } from '../../src/react/index.js';
import { TestServer, until } from '../integration/server.js';

configure({ asyncUtilTimeout: 10_000 });

let server: TestServer;
beforeAll(async () => {
  server = await TestServer.start();
  vi.stubGlobal('location', { origin: server.url });
  vi.stubGlobal('WebSocket', WebSocket);
});
afterAll(async () => {
  cleanup();
  vi.unstubAllGlobals();
  await server.cleanup();
});

it('is shared, connected on the first mount and disconnected after the last unmount', async () => {
  const seen = new Set<WebSocketClient>();
  function Status({ name }: { name: string }) {
    const { state, client } = useWebSocket();
    seen.add(client);
    return <div>{`${name} ${state}`}</div>;
  }
  const a = render(<Status name="a" />);
  const b = render(<Status name="b" />);
  await screen.findByText('a connected');
  await screen.findByText('b connected');
  expect(seen.size).toBe(1);
  const client = [...seen][0]!;
  a.unmount();
  expect(client.state).toBe('connected');
  b.unmount();
  await until(() => client.state === 'disconnected', 5000, 'the default client to disconnect');
});
