// @vitest-environment happy-dom
// useTerminalStream across a cluster node's release of its copy of the
// session (`session.detached` reason `released`), against two real nodes and
// a real Redis: the hook's output carries on, once, with no error.
import { cleanup, configure, render, screen } from '@testing-library/react';
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createWebSocketClient, type ServerMessage, type WebSocketConstructor } from '../../src/index.js';
import { TermstreamProvider } from '../../src/react/index.js';
import { eventually } from '../integration/redis.js';
import { releaseCluster } from '../integration/release-cluster.js';
import { Output } from './output.js';

configure({ asyncUtilTimeout: 20_000 });

const cluster = releaseCluster();
afterEach(() => cleanup());

async function input(data: string): Promise<void> {
  expect((await cluster.owner.call('POST', '/api/sessions/hook-moving/input', { data })).status).toBe(200);
}

it('a session released by the viewer’s node stays shown: no deleted error, its output once', async () => {
  const { redis, owner, viewer } = cluster;
  await owner.createSession({ id: 'hook-moving', kind: 'command', command: 'exec cat' });
  await eventually(() => viewer.call('GET', '/api/sessions/hook-moving').then((r) => r.status === 200), 10_000, 'the session to be listed on the viewer’s node');
  const client = createWebSocketClient(undefined, { url: viewer.url, WebSocket: WebSocket as unknown as WebSocketConstructor, lifecycle: null });
  const reasons: unknown[] = [];
  client.subscribe<ServerMessage>('session.detached', (m) => reasons.push(m.reason));
  render(
    <TermstreamProvider client={client}>
      <Output sessionId="hook-moving" />
    </TermstreamProvider>,
  );
  await screen.findByText('live');
  await input('before\n');
  await screen.findByText('before');

  // The record leaves the directory: the viewer's node lets go of its copy.
  const record = await redis.dropRecord('hook-moving');
  await eventually(async () => reasons.length > 0, 10_000, 'the viewer’s node to release the session');
  expect(reasons).toEqual(['released']);
  await input('during\n');
  await redis.putRecord('hook-moving', record);
  await screen.findByText(/during/);
  await input('after\n');
  await screen.findByText(/after/);
  expect(screen.getByTestId('output').textContent).toBe('before\nduring\nafter\n');
  expect(screen.getByText('no error')).toBeTruthy();
  expect(screen.getByText('live')).toBeTruthy();
}, 90_000);
