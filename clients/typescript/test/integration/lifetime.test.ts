// What an attachment costs the socket over a long life: many sessions attached,
// ended and detached one after another on one client, against the real server.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ExitInfo, WebSocketClient } from '../../src/index.js';
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

async function connected(): Promise<WebSocketClient> {
  const client = server.client();
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
});
