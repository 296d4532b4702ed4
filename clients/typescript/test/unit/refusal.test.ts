// The refusal of an attach that waited for its session in vain, told apart
// from the refusals of other messages naming the id, and the refusal of an
// input (never sent again), against the fake socket.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FocusError } from '../../src/index.js';
import { setup } from './fake-socket.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** The server's answer to an attach whose wait ended without its session. */
const attachRefused = (sessionId: string) => ({ type: 'error', code: 'session_not_found', message: 'no session', sessionId, request: 'session.attach' });
/** The same code for input, a resize or a focus naming the id (or an attach's, from a server older than `request`). */
const notFound = (sessionId: string) => ({ type: 'error', code: 'session_not_found', message: 'no session', sessionId });
const attached = (sessionId: string) => ({ type: 'session.attached', sessionId, epoch: 'e', offset: 0, cols: 80, rows: 24, status: 'running' });

async function open() {
  const { server, client } = setup();
  client.connect();
  await vi.advanceTimersByTimeAsync(0);
  return { server, client, s: server.last.accept() };
}

describe('an attach refused after its wait', () => {
  it('input while the attach waits: its refusal leaves the attachment; the attach\'s own ends it', async () => {
    const { client, s } = await open();
    const errors: string[] = [];
    const h = client.attach('x', { onError: (e) => errors.push(e.code) });
    h.input('early');
    s.message(notFound('x'));
    expect(errors).toEqual(['session_not_found']);
    client.attach('x');
    expect(s.ofType('session.attach')).toHaveLength(1);
    s.message(attachRefused('x'));
    expect(errors).toEqual(['session_not_found', 'session_not_found']);
    // Over: attaching the id again asks the server afresh.
    client.attach('x');
    expect(s.ofType('session.attach')).toHaveLength(2);
  });

  it('a focus sent before the attach: its refusal fails the focus, and the attach still takes the session when it appears', async () => {
    const { client, s } = await open();
    const f = client.focus('p');
    const focus = f.focus('x').catch((e) => e);
    let out = '';
    const errors: string[] = [];
    client.attach('x', { onOutput: (d) => (out += d), onError: (e) => errors.push(e.code) });
    s.message(notFound('x'));
    const err = await focus;
    expect(err).toBeInstanceOf(FocusError);
    expect(err.code).toBe('session_not_found');
    s.message(attached('x'));
    s.output('x', 0, 'hi');
    expect(out).toBe('hi');
    expect(s.ofType('session.attach')).toHaveLength(1);
  });

  it('a reconnect while the attach waits asks again; the new socket\'s refusal ends it, and later reconnects do not attach it', async () => {
    const { server, client, s } = await open();
    const errors: string[] = [];
    client.attach('x', { onError: (e) => errors.push(e.code) });
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    expect(t.ofType('session.attach')).toHaveLength(1);
    t.message(notFound('x'));
    t.message(attachRefused('x'));
    expect(errors).toEqual(['session_not_found', 'session_not_found']);
    t.drop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(server.sockets).toHaveLength(3);
    expect(server.last.accept().ofType('session.attach')).toEqual([]);
  });

  it('detach, then attach again while the first waits: the second is refused by its own answer, not the first\'s', async () => {
    const { client, s } = await open();
    const first: string[] = [];
    const h = client.attach('x', { onError: (e) => first.push(e.code) });
    h.input('early');
    h.detach();
    const second: string[] = [];
    let out = '';
    client.attach('x', { onOutput: (d) => (out += d), onError: (e) => second.push(e.code) });
    expect(s.sent.map((m) => m.type)).toEqual(['session.attach', 'terminal.input', 'session.detach', 'session.attach']);
    // The server: the input refused at once, the waiting attach cancelled, the second waits.
    s.message(notFound('x'));
    s.message({ type: 'session.detached', sessionId: 'x' });
    expect([first, second]).toEqual([[], []]);
    s.message(attached('x'));
    s.output('x', 0, 'ok');
    expect(out).toBe('ok');
    // Once attached, the id's refusals are other messages'.
    s.message(notFound('x'));
    s.output('x', 2, '!');
    expect(out).toBe('ok!');
    expect(second).toEqual(['session_not_found']);
  });

  it('a server that does not say which request a refusal answers (older) never ends the attachment by it', async () => {
    const { server, client, s } = await open();
    const errors: string[] = [];
    client.attach('x', { onError: (e) => errors.push(e.code) });
    s.message(notFound('x'));
    expect(errors).toEqual(['session_not_found']);
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.last.accept().ofType('session.attach')).toHaveLength(1);
  });
});

describe('an attach refused for want of a free slot', () => {
  it("rate_limited with request ends the attach; input's rate_limited does not", async () => {
    const { client, s } = await open();
    const errors: string[] = [];
    const h = client.attach('x', { onError: (e) => errors.push(`${e.code} ${e.request ?? '-'}`) });
    h.input('too much');
    s.message({ type: 'error', code: 'rate_limited', message: 'input over budget', sessionId: 'x' });
    client.attach('x');
    expect(s.ofType('session.attach')).toHaveLength(1);
    s.message({ type: 'error', code: 'rate_limited', message: 'a socket may attach at most 2 sessions', sessionId: 'x', request: 'session.attach' });
    expect(errors).toEqual(['rate_limited -', 'rate_limited session.attach']);
    // Over: attaching the id again asks the server afresh.
    client.attach('x');
    expect(s.ofType('session.attach')).toHaveLength(2);
  });
});

describe('an input refused', () => {
  /** The server's refusal of input `seq` (this server names it). */
  const inputRefused = (sessionId: string, seq: number) => ({ type: 'error', code: 'read_only', message: 'read only', sessionId, request: 'terminal.input', seq });

  it('is not sent again after a reconnect before a heartbeat confirmed it; the input around it is', async () => {
    const { server, client, s } = await open();
    const errors: string[] = [];
    const h = client.attach('x', { onError: (e) => errors.push(`${e.code} ${e.request ?? '-'} ${String(e.seq ?? '-')}`) });
    s.message(attached('x'));
    h.input('a');
    h.input('b');
    h.input('c');
    expect(s.ofType('terminal.input').map((m) => [m.data, m.seq])).toEqual([
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
    // The last one refused: resent, the new socket would apply it (its seq is above the last applied).
    s.message(inputRefused('x', 3));
    s.message(inputRefused('x', 1));
    expect(errors).toEqual(['read_only terminal.input 3', 'read_only terminal.input 1']);
    // The socket is cut inside the confirmation window: no heartbeat answered.
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    expect(t.ofType('terminal.input').map((m) => [m.data, m.seq])).toEqual([['b', 2]]);
    // Refused on the new socket too: never sent again.
    t.message(inputRefused('x', 2));
    t.drop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(server.sockets).toHaveLength(3);
    expect(server.last.accept().ofType('terminal.input')).toEqual([]);
  });

  it('from an older server (no request, no seq): the client cannot tell which, and resends all unconfirmed input', async () => {
    const { server, client, s } = await open();
    const h = client.attach('x');
    s.message(attached('x'));
    h.input('a');
    s.message({ type: 'error', code: 'read_only', message: 'read only', sessionId: 'x' });
    // A seq without the request is not an input's refusal either.
    s.message({ type: 'error', code: 'read_only', message: 'read only', sessionId: 'x', seq: 1 });
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.last.accept().ofType('terminal.input').map((m) => [m.data, m.seq])).toEqual([['a', 1]]);
  });
});
