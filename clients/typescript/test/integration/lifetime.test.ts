// What a long-lived socket meets, against the real server: many sessions
// attached, ended and detached one after another; a paste larger than the
// server takes in one message.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClientOptions, ConnectionState, ExitInfo, WebSocketClient } from '../../src/index.js';
import { TestServer, stateOf, until } from './server.js';

let server: TestServer;
const clients: WebSocketClient[] = [];

beforeAll(async () => {
  // Two slots per socket, so a slot that is never given back shows at once.
  server = await TestServer.start({ env: { TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET: '2' } });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});
afterAll(async () => {
  await server.cleanup();
});

async function connected(options: ClientOptions = {}): Promise<WebSocketClient> {
  const client = server.client(undefined, options);
  clients.push(client);
  client.connect();
  await stateOf(client, 'connected');
  return client;
}

describe('a long-lived socket', () => {
  it('gives the server its slot back when a session that ended is detached', async () => {
    const client = await connected();
    for (let i = 0; i < 4; i++) {
      const id = `ended-${i}`;
      await server.createSession({ id, kind: 'command', command: `echo job-${i}` });
      let text = '';
      let exit: ExitInfo | null = null;
      const errors: string[] = [];
      const h = client.attach(id, { onOutput: (d) => (text += d), onExit: (e) => (exit = e), onError: (e) => errors.push(e.code) });
      await until(() => exit !== null || errors.length > 0, 10_000, `${id} to end or fail`);
      expect(errors).toEqual([]);
      expect(text).toBe(`job-${i}\n`);
      h.detach();
    }
  });

  it('gives the server its slot back when a session that was deleted is detached', async () => {
    const client = await connected();
    for (let i = 0; i < 4; i++) {
      const id = `deleted-${i}`;
      await server.createSession({ id, kind: 'command', command: `echo del-${i}; exec sleep 30` });
      let text = '';
      let detached = false;
      const errors: string[] = [];
      const h = client.attach(id, { onOutput: (d) => (text += d), onDetached: () => (detached = true), onError: (e) => errors.push(e.code) });
      await until(() => text === `del-${i}\n` || errors.length > 0, 10_000, `${id}'s output`);
      expect(errors).toEqual([]);
      expect((await server.call('DELETE', `/api/sessions/${id}`)).status).toBe(204);
      await until(() => detached, 10_000, `${id} to be reported deleted`);
      h.detach();
    }
  });

  it('sends a paste larger than the server takes in one message as several, and stays connected', async () => {
    // Above maxQueueBytes too (1 MiB by default): written while connected (only not kept for a resend).
    const client = await connected();
    const states: ConnectionState[] = [];
    client.onStateChange((s) => states.push(s));
    // 1.5 MB, above the server's 1 MiB per message (and below its input burst).
    const size = 1_500_000;
    await server.createSession({ id: 'paste', kind: 'command', argv: ['sh', '-c', `head -c ${size} | wc -c`] });
    let text = '';
    let exit: ExitInfo | null = null;
    const h = client.attach('paste', { onOutput: (d) => (text += d), onExit: (e) => (exit = e) });
    h.input('é'.repeat(size / 4) + 'x'.repeat(size / 2));
    await until(() => exit !== null, 15_000, 'the program to count the whole paste');
    expect(text.trim()).toBe(String(size));
    expect(states).toEqual([]);
  });
});
