// Sessions that are not there, against the real server: an attach that waited
// for its session in vain, and a session deleted while the client was away.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ExitInfo, ServerMessage, WebSocketClient } from '../../src/index.js';
import { TestServer, stateOf, until } from './server.js';

let server: TestServer;
const clients: WebSocketClient[] = [];

beforeAll(async () => {
  // A short attach wait, so a missing session is answered soon.
  server = await TestServer.start({ env: { TERMSTREAM_ATTACH_WAIT_MS: '1500' } });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});
afterAll(async () => {
  await server.cleanup();
});

async function connected(on: TestServer = server): Promise<WebSocketClient> {
  const client = on.client();
  clients.push(client);
  client.connect();
  await stateOf(client, 'connected');
  return client;
}

/** Resolves once the server answered a ping sent now: it has handled everything sent before. */
async function roundTrip(client: WebSocketClient): Promise<void> {
  let ponged = false;
  const off = client.subscribe('pong', () => (ponged = true));
  client.send('ping');
  await until(() => ponged, 10_000, 'pong');
  off();
}

describe('a session that is not there', () => {
  it('an attach refused with session_not_found is over: attaching the id again, once it exists, asks the server afresh', async () => {
    const client = await connected();
    const errors: string[] = [];
    client.attach('not-yet', { onError: (e) => errors.push(e.code) });
    await until(() => errors.length > 0, 10_000, 'the attach to be refused');
    expect(errors).toEqual(['session_not_found']);

    await server.createSession({ id: 'not-yet', kind: 'command', command: 'echo here-now' });
    let text = '';
    let exit: ExitInfo | null = null;
    client.attach('not-yet', { onOutput: (d) => (text += d), onExit: (e) => (exit = e) });
    await until(() => exit !== null, 10_000, 'the second attach to see the session end');
    expect(text).toBe('here-now\n');
  });

  it('a session deleted while the client was away is reported once, and not attached again after later reconnects', async () => {
    const client = await connected();
    await server.createSession({ id: 'gone', kind: 'command', command: 'echo before; exec sleep 30' });
    let text = '';
    const errors: string[] = [];
    client.attach('gone', { onOutput: (d) => (text += d), onError: (e) => errors.push(e.code) });
    await until(() => text === 'before\n', 10_000, 'the output before the delete');
    client.disconnect();
    expect((await server.call('DELETE', '/api/sessions/gone')).status).toBe(204);
    client.connect();
    await until(() => errors.length > 0, 10_000, 'the resumed attach to be refused');
    expect(errors).toEqual(['session_not_found']);

    // Away and back again: an attach of `gone` would be refused after the
    // same wait as this one of an id that never existed.
    const refused: string[] = [];
    client.subscribe<ServerMessage>('error', (m) => m.code === 'session_not_found' && refused.push(String(m.sessionId)));
    client.disconnect();
    client.connect();
    await stateOf(client, 'connected');
    client.attach('never-was');
    await until(() => refused.includes('never-was'), 10_000, 'the refusal of never-was');
    await roundTrip(client);
    expect(refused).toEqual(['never-was']);
    expect(errors).toEqual(['session_not_found']);
  });
});

describe('messages naming a session an attach waits for', () => {
  // An attach wait no loaded machine outlasts: the session is created within it.
  let patient: TestServer;
  beforeAll(async () => {
    patient = await TestServer.start({ env: { TERMSTREAM_ATTACH_WAIT_MS: '120000' } });
  });
  afterAll(async () => {
    await patient.cleanup();
  });

  it('input refused while the attach waits for its session does not end the attach', async () => {
    const client = await connected(patient);
    const errors: string[] = [];
    let text = '';
    let exit: ExitInfo | null = null;
    const h = client.attach('soon', { onOutput: (d) => (text += d), onExit: (e) => (exit = e), onError: (e) => errors.push(e.code) });
    h.input('too early\n');
    await until(() => errors.length > 0, 10_000, 'the input to be refused');
    expect(errors).toEqual(['session_not_found']);
    // Within the attach wait: the waiting attach takes the new session.
    await patient.createSession({ id: 'soon', kind: 'command', command: 'echo in-time' });
    await until(() => exit !== null, 10_000, 'the attach to see the session end');
    expect(text).toBe('in-time\n');
    expect(errors).toEqual(['session_not_found']);
  });

  it('a focus refused before the attach does not end it: the attach takes the session when it appears', async () => {
    const client = await connected(patient);
    const focus = client.focus('default').focus('later').catch((e) => e);
    let text = '';
    let exit: ExitInfo | null = null;
    const errors: string[] = [];
    client.attach('later', { onOutput: (d) => (text += d), onExit: (e) => (exit = e), onError: (e) => errors.push(e.code) });
    expect((await focus).code).toBe('session_not_found');
    await patient.createSession({ id: 'later', kind: 'command', command: 'echo attached-after-all' });
    await until(() => exit !== null, 10_000, 'the attach to see the session end');
    expect(text).toBe('attached-after-all\n');
  });
});
