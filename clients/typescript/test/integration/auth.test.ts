// Tokens and tickets against the real server.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AuthError, type WebSocketConstructor } from '../../src/index.js';
import { TestServer, stateOf, until } from './server.js';

const TOKEN = `tst_${randomBytes(32).toString('hex')}`;
let server: TestServer;

beforeAll(async () => {
  server = await TestServer.start({ env: { TERMSTREAM_ADMIN_TOKEN: TOKEN } });
});
afterAll(async () => {
  await server.cleanup();
});

/** Opens a raw socket; resolves with 'open' or the HTTP status that refused it. */
function rawUpgrade(url: string): Promise<'open' | number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('error', () => {});
  });
}

describe('credentials', () => {
  it('connects with a ticket that works once, and the token is never in a URL', async () => {
    const tickets: string[] = [];
    const urls: string[] = [];
    const recordingFetch: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const body = await res.clone().json();
      tickets.push(body.ticket);
      return res;
    };
    class RecordingWS extends WebSocket {
      constructor(url: string) {
        urls.push(url);
        super(url);
      }
    }
    const client = server.client(TOKEN, { fetch: recordingFetch, WebSocket: RecordingWS as unknown as WebSocketConstructor });
    client.connect();
    await stateOf(client, 'connected');
    client.disconnect();
    expect(tickets).toHaveLength(1);
    expect(tickets[0]).toMatch(/^tkt_/);
    expect(urls).toHaveLength(1);
    expect(urls[0]).toContain(`token=${tickets[0]}`);
    expect(urls.join(' ')).not.toContain(TOKEN);

    const wsUrl = `${server.url.replace('http', 'ws')}/ws?token=${tickets[0]}`;
    expect(await rawUpgrade(wsUrl)).toBe(401);
    // A fresh ticket works, so the refusal is about reuse.
    const fresh = await server.call('POST', '/api/ws-ticket', undefined, TOKEN);
    expect(await rawUpgrade(`${server.url.replace('http', 'ws')}/ws?token=${fresh.body.ticket}`)).toBe('open');
  });

  it('a bad token gives the error state and no retry storm', async () => {
    let ticketRequests = 0;
    let sockets = 0;
    const countingFetch: typeof fetch = async (input, init) => {
      ticketRequests++;
      return fetch(input, init);
    };
    class CountingWS extends WebSocket {
      constructor(url: string) {
        sockets++;
        super(url);
      }
    }
    const client = server.client('tst_not-a-real-token', {
      fetch: countingFetch,
      WebSocket: CountingWS as unknown as WebSocketConstructor,
      reconnect: { initialDelay: 1, maxDelay: 1 },
    });
    client.connect();
    await stateOf(client, 'error');
    expect(client.lastError).toBeInstanceOf(AuthError);
    expect((client.lastError as AuthError).status).toBe(401);
    // Retries would come every millisecond: give them time to show.
    await new Promise((r) => setTimeout(r, 300));
    expect(client.state).toBe('error');
    expect(ticketRequests).toBe(1);
    expect(sockets).toBe(0);
  });

  it('a socket without any credential is refused and retried with backoff, not in a storm', async () => {
    let sockets = 0;
    class CountingWS extends WebSocket {
      constructor(url: string) {
        sockets++;
        super(url);
      }
    }
    const client = server.client(undefined, {
      WebSocket: CountingWS as unknown as WebSocketConstructor,
      reconnect: { maxAttempts: 3, initialDelay: 10, maxDelay: 40 },
    });
    client.connect();
    await stateOf(client, 'error');
    await until(() => sockets === 4, 2000, 'four sockets');
    await new Promise((r) => setTimeout(r, 200));
    expect(sockets).toBe(4);
    expect(client.lastError?.message).toMatch(/gave up after 3 attempts/);
  });
});
