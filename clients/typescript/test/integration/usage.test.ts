// The usage example of 002-websocket-integration.md, and the message types it
// lists, against the real server.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createWebSocketClient, type ServerMessage, type WebSocketClient } from '../../src/index.js';
import { TestServer, stateOf, until } from './server.js';

// The token of the example, configured as the server's admin token.
const TOKEN = 'session-token';
let server: TestServer;
const clients: WebSocketClient[] = [];

beforeAll(async () => {
  server = await TestServer.start({ env: { TERMSTREAM_ADMIN_TOKEN: TOKEN } });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});
afterAll(async () => {
  await server.cleanup();
});

/** What a page gives the client: its origin and a global WebSocket. */
function pageGlobals() {
  vi.stubGlobal('location', { origin: server.url });
  vi.stubGlobal('WebSocket', WebSocket);
}

describe('002 usage example', () => {
  it('runs unchanged', async () => {
    pageGlobals();
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});

    // ---- 002-websocket-integration.md, "Usage", unchanged ----
    const client = createWebSocketClient('session-token');

    // Connect
    client.connect();

    // Subscribe to messages
    const unsubscribe = client.subscribe('terminal_output', (message) => {
      console.log('Terminal output:', message.data);
    });

    // Send message
    client.send('ping');

    // Disconnect
    client.disconnect();
    // ---- end of the example ----

    expect(client.state).toBe('disconnected');
    expect(typeof unsubscribe).toBe('function');
    await new Promise((r) => setTimeout(r, 100));
    expect(client.state).toBe('disconnected');
    expect(log).not.toHaveBeenCalled();
  });

  it('does what it says when its steps are given time: output arrives as {output, type}, ping is answered', async () => {
    pageGlobals();
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    await server.createSession({ id: 'usage-job', kind: 'command', command: 'echo out-line; echo err-line >&2; sleep 0.3' }, TOKEN);

    const client = createWebSocketClient('session-token');
    clients.push(client);
    client.connect();
    const unsubscribe = client.subscribe('terminal_output', (message) => {
      console.log('Terminal output:', message.data);
    });
    const pongs: ServerMessage[] = [];
    client.subscribe('pong', (m) => pongs.push(m));
    client.send('ping');
    await stateOf(client, 'connected');
    let exited = false;
    client.attach('usage-job', { onExit: () => (exited = true) });
    await until(() => exited && pongs.length === 1, 10_000, 'the job to end and the pong');
    unsubscribe();
    client.disconnect();

    const printed = log.mock.calls.map((c) => c[1]);
    expect(printed).toContainEqual({ output: 'out-line\n', type: 'output' });
    expect(printed).toContainEqual({ output: 'err-line\n', type: 'error' });
    expect(printed.at(-1)).toMatchObject({ type: 'info' });
    expect(log.mock.calls.every((c) => c[0] === 'Terminal output:')).toBe(true);
  });
});

describe('messages from the server', () => {
  it('connected, pong, heartbeat, task_status, notification and activity_log as the server sends them', async () => {
    const client = server.client(TOKEN);
    clients.push(client);
    const seen: ServerMessage[] = [];
    client.subscribe('*', (m) => seen.push(m));
    const tasks: ServerMessage[] = [];
    client.subscribe('task_status', (m) => tasks.push(m));
    client.connect();
    await until(() => seen.some((m) => m.type === 'subscribed'), 5000, 'the subscription');
    client.send('ping');
    client.send('heartbeat');
    const events = [
      { type: 'task_status', taskId: 't1', status: 'running' },
      { type: 'notification', title: 'Build', message: 'done', priority: 'high' },
      { type: 'activity_log', level: 'info', message: 'deployed', metadata: { env: 'prod' } },
    ];
    for (const e of events) expect((await server.call('POST', '/api/events', e, TOKEN)).status).toBe(202);
    await until(() => seen.some((m) => m.type === 'activity_log'), 5000, 'the events');
    const types = seen.map((m) => m.type);
    expect(types[0]).toBe('connected');
    expect(seen[0]).toMatchObject({ client_count: expect.any(Number), message: expect.any(String), clientId: client.clientId });
    expect(types).toContain('pong');
    expect(types).toContain('heartbeat');
    expect(tasks).toEqual([expect.objectContaining({ ...events[0], timestamp: expect.any(Number) })]);
    expect(seen.find((m) => m.type === 'notification')).toMatchObject(events[1]!);
    expect(seen.find((m) => m.type === 'activity_log')).toMatchObject(events[2]!);
  });

  it('a pty session: the screen on attach, input with seq, resize', async () => {
    await server.createSession({ id: 'usage-pty', argv: ['bash', '--norc', '--noprofile'], cols: 80, rows: 24 }, TOKEN);
    const client = server.client(TOKEN);
    clients.push(client);
    client.connect();
    let screen = '';
    let text = '';
    const sizes: { cols: number; rows: number }[] = [];
    const h = client.attach('usage-pty', {
      onRestore: (r) => (screen = r.data),
      onOutput: (d) => (text += d),
      onResize: (s) => sizes.push(s),
    });
    await until(() => h.position !== null, 5000, 'the attach');
    h.input('echo hi-$((40+2))\r');
    await until(() => text.includes('hi-42'), 5000, 'the echo');
    h.resize(100, 30);
    await until(() => sizes.length > 0, 5000, 'the resize');
    expect(sizes.at(-1)).toEqual({ cols: 100, rows: 30 });
    expect(typeof screen).toBe('string');
    h.input('exit\r');
  });

  it('session_update subscribers get the sessions channel, again after a reconnect', async () => {
    const client = server.client(TOKEN);
    clients.push(client);
    const changes: string[] = [];
    client.subscribe('session_update', (m) => changes.push(`${m.change} ${m.sessionId}`));
    const subscribed: unknown[] = [];
    client.subscribe('subscribed', (m) => subscribed.push(m.channels));
    client.connect();
    await until(() => subscribed.length > 0, 5000, 'the subscription');
    await server.createSession({ id: 'watched-1', kind: 'command', command: 'exec sleep 30' }, TOKEN);
    await until(() => changes.includes('created watched-1'), 5000, 'the creation');

    client.disconnect();
    client.connect();
    await until(() => subscribed.length > 1, 5000, 'the subscription after the reconnect');
    expect((await server.call('DELETE', '/api/sessions/watched-1', undefined, TOKEN)).status).toBe(204);
    await until(() => changes.includes('deleted watched-1'), 5000, 'the deletion');
  });
});
