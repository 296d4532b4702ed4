// The connection: states, backoff and giving up, heartbeats, subscriptions,
// tickets and lifecycle events, against the fake socket.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuthError } from '../../src/index.js';
import { setup } from './fake-socket.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('connection state', () => {
  it('goes connecting, connected, reconnecting, connected, disconnected', async () => {
    const { server, client, states } = setup();
    expect(client.state).toBe('disconnected');
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(server.sockets).toHaveLength(1);
    expect(server.last.url).toBe('ws://srv:1/ws?dialect=dotted');
    server.last.accept('c42');
    expect(client.state).toBe('connected');
    expect(client.clientId).toBe('c42');
    server.last.drop();
    expect(client.state).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(999);
    expect(server.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.sockets).toHaveLength(2);
    expect(server.last.url).toContain('clientId=c42');
    server.last.accept();
    client.disconnect();
    expect(server.last.closedByClient).toBe(true);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(server.sockets).toHaveLength(2);
    expect(states).toEqual(['connecting', 'connected', 'reconnecting', 'connected', 'disconnected']);
  });

  it('gives up after 5 attempts with the documented waits, in the error state', async () => {
    const { server, client, states } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    for (let i = 0; i < 6; i++) {
      server.last.drop();
      await vi.advanceTimersByTimeAsync(60_000);
    }
    expect(server.sockets).toHaveLength(6);
    expect(client.state).toBe('error');
    expect(client.lastError?.message).toMatch(/gave up after 5 attempts/);
    expect(states.filter((s) => s === 'reconnecting')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(server.sockets).toHaveLength(6);
  });

  it('waits 1, 2, 4, 8, 16 s between attempts (jitter 0)', async () => {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    for (const wait of [1000, 2000, 4000, 8000, 16000]) {
      server.last.drop();
      const n = server.sockets.length;
      await vi.advanceTimersByTimeAsync(wait - 1);
      expect(server.sockets).toHaveLength(n);
      await vi.advanceTimersByTimeAsync(1);
      expect(server.sockets).toHaveLength(n + 1);
    }
  });

  it('never gives up with maxAttempts: Infinity, and waits at most maxDelay', async () => {
    const { server, client } = setup({ reconnect: { maxAttempts: Infinity, maxDelay: 5000 } });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    for (let i = 0; i < 40; i++) {
      server.last.drop();
      await vi.advanceTimersByTimeAsync(5000);
    }
    expect(server.sockets).toHaveLength(41);
    expect(client.state).toBe('reconnecting');
    expect(client.attempts).toBe(40);
  });

  it('starts counting attempts again only after the connection stayed up minUptime', async () => {
    const { server, client } = setup({ reconnect: { minUptime: 5000 } });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    server.last.accept();
    server.last.drop();
    await vi.advanceTimersByTimeAsync(1000);
    server.last.accept();
    await vi.advanceTimersByTimeAsync(4000);
    server.last.drop();
    expect(client.attempts).toBe(2);
    await vi.advanceTimersByTimeAsync(2000);
    server.last.accept();
    await vi.advanceTimersByTimeAsync(5000);
    expect(client.attempts).toBe(0);
    server.last.drop();
    expect(client.attempts).toBe(1);
  });

  it('ignores events of a socket it has replaced (stale-socket guard)', async () => {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const first = server.last.accept();
    first.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const second = server.last.accept();
    const seen: string[] = [];
    client.subscribe('*', (m) => seen.push(m.type));
    first.onclose?.({ code: 1006 });
    first.message({ type: 'pong' });
    expect(client.state).toBe('connected');
    second.message({ type: 'pong' });
    expect(seen).toEqual(['pong']);
  });

  it('restores attachments and the queue before it says connected', async () => {
    const { server, client } = setup();
    client.attach('s1');
    client.send('notification', { title: 'queued', message: 'm' });
    client.onStateChange((st) => st === 'connected' && client.send('notification', { title: 'from handler', message: 'm' }));
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    expect(s.sent.map((m) => m.title ?? m.type)).toEqual(['session.attach', 'queued', 'from handler']);
  });

  it('counts a socket that does not open in time as a failed attempt', async () => {
    const { server, client } = setup({ connectTimeout: 3000 });
    client.connect();
    await vi.advanceTimersByTimeAsync(3000);
    expect(client.state).toBe('reconnecting');
    expect(server.sockets[0]!.closedByClient).toBe(true);
  });
});

describe('heartbeat', () => {
  it('sends heartbeats and reconnects when nothing arrives within the timeout', async () => {
    const { server, client } = setup({ heartbeatInterval: 10_000, heartbeatTimeout: 25_000 });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(s.ofType('heartbeat')).toHaveLength(1);
    s.message({ type: 'heartbeat', timestamp: 1 });
    await vi.advanceTimersByTimeAsync(20_000);
    expect(client.state).toBe('connected');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(client.state).toBe('reconnecting');
    expect(s.closedByClient).toBe(true);
  });
});

describe('subscriptions', () => {
  it('delivers by type and to the wildcard, until unsubscribed', async () => {
    const { server, client } = setup();
    const pongs: unknown[] = [];
    const all: string[] = [];
    const offPong = client.subscribe('pong', (m) => pongs.push(m));
    const offAll = client.subscribe('*', (m) => all.push(m.type));
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    client.send('ping');
    expect(s.ofType('ping')).toHaveLength(1);
    s.message({ type: 'pong' });
    offPong();
    s.message({ type: 'pong' });
    offAll();
    s.message({ type: 'pong' });
    expect(pongs).toEqual([{ type: 'pong' }]);
    expect(all).toEqual(['connected', 'pong', 'pong']);
  });

  it('asks the server for event channels, and again after a reconnect', async () => {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const off = client.subscribe('task_status', () => {});
    expect(s.ofType('subscribe')).toEqual([{ type: 'subscribe', channels: ['task_status'] }]);
    client.subscribe('notification', () => {});
    expect(s.ofType('subscribe').at(-1)).toEqual({ type: 'subscribe', channels: ['task_status', 'notification'] });
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    expect(t.ofType('subscribe')).toEqual([{ type: 'subscribe', channels: ['task_status', 'notification'] }]);
    off();
    expect(t.ofType('unsubscribe')).toEqual([{ type: 'unsubscribe', channels: ['*'] }]);
    expect(t.ofType('subscribe').at(-1)).toEqual({ type: 'subscribe', channels: ['notification'] });
    const offAll = client.subscribe('*', () => {});
    expect(t.ofType('subscribe').at(-1)).toEqual({ type: 'subscribe', channels: ['*'] });
    offAll();
    expect(t.ofType('subscribe').at(-1)).toEqual({ type: 'subscribe', channels: ['notification'] });
  });

  it('keeps going when a handler throws', async () => {
    const { server, client } = setup();
    const seen: string[] = [];
    client.subscribe('pong', () => {
      throw new Error('boom');
    });
    client.subscribe('pong', (m) => seen.push(m.type));
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    server.last.accept().message({ type: 'pong' });
    expect(seen).toEqual(['pong']);
  });
});

describe('tickets', () => {
  it('gets a ticket with the token in a header, and never puts the token in the URL', async () => {
    const calls: [string, RequestInit | undefined][] = [];
    let n = 0;
    const fetch = (async (url: string, init?: RequestInit) => {
      calls.push([url, init]);
      return new Response(JSON.stringify({ ticket: `tkt_${++n}`, expiresInMs: 30000 }), { status: 200 });
    }) as typeof globalThis.fetch;
    const { server, client } = setup({ fetch }, 'tst_secret');
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls[0]![0]).toBe('http://srv:1/api/ws-ticket');
    expect((calls[0]![1]!.headers as Record<string, string>).authorization).toBe('Bearer tst_secret');
    expect(server.last.url).toContain('token=tkt_1');
    server.last.accept().drop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.last.url).toContain('token=tkt_2');
    expect(server.sockets.every((s) => !s.url.includes('tst_secret'))).toBe(true);
  });

  it('a refused token is the error state, with no retries', async () => {
    let calls = 0;
    const fetch = (async () => {
      calls++;
      return new Response('{"error":{"code":"unauthorized","message":"no"}}', { status: 401 });
    }) as typeof globalThis.fetch;
    const { server, client, states } = setup({ fetch }, 'bad');
    client.connect();
    await vi.advanceTimersByTimeAsync(600_000);
    expect(client.state).toBe('error');
    expect(client.lastError).toBeInstanceOf(AuthError);
    expect(states).toEqual(['connecting', 'error']);
    expect(calls).toBe(1);
    expect(server.sockets).toHaveLength(0);
  });

  it('a failing ticket request (not a refusal) is retried with backoff', async () => {
    let calls = 0;
    const fetch = (async () => {
      calls++;
      if (calls < 3) throw new TypeError('network down');
      return new Response('{"ticket":"tkt_ok"}', { status: 200 });
    }) as typeof globalThis.fetch;
    const { server, client } = setup({ fetch }, 'tok');
    client.connect();
    await vi.advanceTimersByTimeAsync(3000);
    expect(calls).toBe(3);
    expect(server.last.url).toContain('token=tkt_ok');
  });
});

describe('a ticket request that never answers', () => {
  it('counts as a failed attempt after connectTimeout, and is aborted', async () => {
    const signals: AbortSignal[] = [];
    const fetch = ((_url: string, init?: RequestInit) => {
      if (init?.signal) signals.push(init.signal);
      return new Promise<Response>((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)));
    }) as typeof globalThis.fetch;
    const { server, client, states } = setup({ fetch, connectTimeout: 3000, reconnect: { maxAttempts: 2 } }, 'tok');
    client.connect();
    await vi.advanceTimersByTimeAsync(2999);
    expect(client.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(1);
    expect(client.state).toBe('reconnecting');
    expect(client.lastError?.message).toMatch(/ticket request did not finish within 3000 ms/);
    expect(signals[0]?.aborted).toBe(true);
    // Waits 1 s, then 3 s for the second ticket, 2 s, 3 s for the third: then it gives up.
    await vi.advanceTimersByTimeAsync(1000 + 3000 + 2000 + 3000);
    expect(states).toEqual(['connecting', 'reconnecting', 'error']);
    expect(signals).toHaveLength(3);
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(server.sockets).toHaveLength(0);
  });

  it('is aborted by disconnect()', async () => {
    let signal: AbortSignal | undefined;
    const fetch = ((_url: string, init?: RequestInit) => {
      signal = init?.signal ?? undefined;
      return new Promise<Response>(() => {});
    }) as typeof globalThis.fetch;
    const { client } = setup({ fetch }, 'tok');
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    client.disconnect();
    expect(signal?.aborted).toBe(true);
    expect(client.state).toBe('disconnected');
  });
});

describe('browser lifecycle', () => {
  function targets() {
    const window = new EventTarget();
    const document = Object.assign(new EventTarget(), { visibilityState: 'hidden' });
    return { window, document };
  }

  it.each([
    ['online', (t: ReturnType<typeof targets>) => t.window.dispatchEvent(new Event('online'))],
    [
      'visibilitychange',
      (t: ReturnType<typeof targets>) => {
        t.document.visibilityState = 'visible';
        t.document.dispatchEvent(new Event('visibilitychange'));
      },
    ],
  ])('%s reconnects at once instead of waiting out the backoff', async (_name, fire) => {
    const t = targets();
    const { server, client } = setup({ lifecycle: t, reconnect: { initialDelay: 60_000 } });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    server.last.accept().drop();
    expect(client.state).toBe('reconnecting');
    fire(t);
    await vi.advanceTimersByTimeAsync(0);
    expect(server.sockets).toHaveLength(2);
    server.last.accept();
    expect(client.state).toBe('connected');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(server.sockets).toHaveLength(2);
  });

  it('becoming visible while connected asks for a sign of life at once', async () => {
    const t = targets();
    const { server, client } = setup({ lifecycle: t });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    t.document.visibilityState = 'visible';
    t.document.dispatchEvent(new Event('visibilitychange'));
    expect(s.ofType('heartbeat')).toHaveLength(1);
    expect(server.sockets).toHaveLength(1);
  });

  it('pageshow of a page from the back-forward cache replaces the socket; a normal pageshow does not', async () => {
    const t = targets();
    const { server, client } = setup({ lifecycle: t });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    t.window.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: false }));
    expect(server.sockets).toHaveLength(1);
    t.window.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.closedByClient).toBe(true);
    expect(server.sockets).toHaveLength(2);
  });

  it('online brings back a client that gave up, and nothing after disconnect()', async () => {
    const t = targets();
    const { server, client } = setup({ lifecycle: t, reconnect: { maxAttempts: 0 } });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    server.last.drop();
    expect(client.state).toBe('error');
    t.window.dispatchEvent(new Event('online'));
    await vi.advanceTimersByTimeAsync(0);
    expect(server.sockets).toHaveLength(2);
    server.last.accept();
    client.disconnect();
    t.window.dispatchEvent(new Event('online'));
    await vi.advanceTimersByTimeAsync(0);
    expect(server.sockets).toHaveLength(2);
    expect(client.state).toBe('disconnected');
  });
});

