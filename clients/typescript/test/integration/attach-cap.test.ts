// The socket's attachment cap against the real server: an attach past it is
// refused (`rate_limited`, `request: "session.attach"`), which ends that
// attach, and the attachments before it stream on.
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { AttachError, WebSocketClient } from '../../src/index.js';
import { TestServer, stateOf, until } from './server.js';

let server: TestServer;
const clients: WebSocketClient[] = [];

beforeAll(async () => {
  server = await TestServer.start({ env: { TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET: '2' } });
  for (const id of ['cap-1', 'cap-2', 'cap-3']) await server.createSession({ id, kind: 'command', command: 'exec cat' });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});
afterAll(async () => {
  await server.cleanup();
});

it('an attach past the socket cap is refused and over; the earlier attachments stream on; a later attach asks again', async () => {
  const client = server.client();
  clients.push(client);
  client.connect();
  await stateOf(client, 'connected');

  const text: Record<string, string> = { 'cap-1': '', 'cap-2': '', 'cap-3': '' };
  const attached = new Set<string>();
  const handles = ['cap-1', 'cap-2'].map((id) =>
    client.attach(id, {
      onOutput: (d) => (text[id] += d),
      onAttached: () => attached.add(id),
    }),
  );
  await until(() => attached.size === 2, 10_000, 'the first two attaches');

  const errors: AttachError[] = [];
  client.attach('cap-3', { onOutput: (d) => (text['cap-3'] += d), onError: (e) => errors.push(e) });
  await until(() => errors.length > 0, 10_000, 'the third attach to be refused');
  expect(errors).toEqual([{ code: 'rate_limited', message: expect.any(String), request: 'session.attach' }]);

  // The attachments that hold the slots still stream.
  handles[0]!.input('one\n');
  handles[1]!.input('two\n');
  await until(() => text['cap-1'] === 'one\n' && text['cap-2'] === 'two\n', 10_000, 'output of the first two sessions');

  // The refused attach is over: with a slot free, attaching the id again asks the server afresh.
  handles[0]!.detach();
  const again = client.attach('cap-3', { onOutput: (d) => (text['cap-3'] += d) });
  again.input('three\n');
  await until(() => text['cap-3'] === 'three\n', 10_000, 'output of the third session, attached again');
  expect(errors.length).toBe(1);
});
