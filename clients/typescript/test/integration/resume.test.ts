// Resume against the real server: cut connections and a restarted server.
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientOptions, ExitInfo, GapInfo, WebSocketClient } from '../../src/index.js';
import { CuttingProxy, TestServer, stateOf, until } from './server.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server, a proxy in front of it that the test may cut, and a client
 * through the proxy (the proxy's port is not the server's: its Host is
 * allowed); all cleaned up after the test. */
async function throughProxy(env: Record<string, string> = {}, options: ClientOptions = {}) {
  const server = await TestServer.start({ env: { TERMSTREAM_ALLOWED_HOSTS: '["127.0.0.1"]', ...env } });
  cleanups.push(() => server.cleanup());
  const proxy = await CuttingProxy.start(server.port);
  cleanups.push(() => proxy.close());
  const client = server.client(undefined, { url: `http://127.0.0.1:${proxy.port}`, ...options });
  cleanups.push(() => client.disconnect());
  return { server, proxy, client };
}

describe('resume against the real server', () => {
  it('delivers 200,000 numbered lines exactly once, in order, through a proxy that keeps cutting', async () => {
    const { server, proxy, client } = await throughProxy();
    let reconnects = 0;
    client.onStateChange((s) => s === 'reconnecting' && reconnects++);
    client.connect();
    await stateOf(client, 'connected');

    // A command that prints slowly enough for many cuts to land mid-stream.
    await server.createSession({
      id: 'numbers',
      kind: 'command',
      command: 'i=1; while [ $i -le 200000 ]; do echo $i; if [ $((i % 2000)) -eq 0 ]; then sleep 0.02; fi; i=$((i+1)); done',
    });
    const chunks: string[] = [];
    const gaps: GapInfo[] = [];
    let exit: ExitInfo | null = null;
    client.attach('numbers', { onOutput: (d) => chunks.push(d), onGap: (g) => gaps.push(g), onExit: (e) => (exit = e) });
    const cutter = setInterval(() => proxy.cut(), 150);
    cleanups.push(() => clearInterval(cutter));
    await until(() => exit !== null, 60_000, 'the session to exit and all its output to arrive');
    clearInterval(cutter);

    expect(gaps).toEqual([]);
    const lines = chunks.join('').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.length).toBe(200_000);
    for (let i = 0; i < lines.length; i++) {
      if (lines[i] !== String(i + 1)) throw new Error(`line ${i + 1} is ${JSON.stringify(lines[i])}`);
    }
    expect(exit).toMatchObject({ status: 'exited', exitCode: 0 });
    console.info(`200,000 lines through ${proxy.cuts} cuts and ${reconnects} reconnects`);
    expect(proxy.cuts).toBeGreaterThanOrEqual(3);
    expect(reconnects).toBeGreaterThanOrEqual(3);
  });

  it('applies every input exactly once while the proxy keeps cutting (seq, resent until a heartbeat confirms it)', async () => {
    const { server, proxy, client } = await throughProxy();
    client.connect();
    await stateOf(client, 'connected');
    await server.createSession({ id: 'echoer', kind: 'command', argv: ['cat'] });
    let text = '';
    const h = client.attach('echoer', { onOutput: (d) => (text += d) });
    const cutter = setInterval(() => proxy.cut(), 120);
    cleanups.push(() => clearInterval(cutter));
    const expected: string[] = [];
    for (let i = 1; i <= 300; i++) {
      expected.push(`in-${i}\n`);
      h.input(`in-${i}\n`);
      await new Promise((r) => setTimeout(r, 3));
    }
    const want = expected.join('');
    await until(() => text.length >= want.length, 30_000, 'every input echoed');
    clearInterval(cutter);
    // Anything applied twice would show up after the last line: give it a heartbeat's time.
    await new Promise((r) => setTimeout(r, 300));
    expect(text).toBe(want);
    expect(proxy.cuts).toBeGreaterThanOrEqual(3);
  });

  it('never sends a refused input again: cut before a heartbeat confirmed it, the new socket does not get it', async () => {
    // A socket may send 64 input bytes at once, and gets 1 more a second: a new socket starts with 64.
    const env = { TERMSTREAM_WS_INPUT_BURST_BYTES: '64', TERMSTREAM_WS_INPUT_BYTES_PER_SEC: '1' };
    const { server, proxy, client } = await throughProxy(env);
    client.connect();
    await stateOf(client, 'connected');
    await server.createSession({ id: 'echoer', kind: 'command', argv: ['cat'] });
    // Spends 60 of the socket's 64 bytes: a terminal's answer from a socket
    // not attached is dropped without a word (and has no seq: never resent).
    client.send('terminal.input', { sessionId: 'echoer', data: 'x'.repeat(60), response: true });
    let text = '';
    let attached = 0;
    const refused: string[] = [];
    const h = client.attach('echoer', {
      onOutput: (d) => (text += d),
      onAttached: () => attached++,
      onError: (e) => {
        refused.push(`${e.code} ${e.request} ${e.seq}`);
        // Cut at once, as the page does when a project turns writable: the
        // heartbeat that would confirm the input goes 250 ms after it, and
        // its reply comes after this refusal.
        proxy.cut();
      },
    });
    await until(() => attached === 1, 10_000, 'the attach');
    h.input('refused-input-number-one\n');
    await until(() => attached === 2, 10_000, 'the attach on the socket after the cut');
    expect(refused).toEqual(['rate_limited terminal.input 1']);
    // Input goes in order: had the refused one been sent again, it would be echoed before this one.
    h.input('after\n');
    await until(() => text.includes('after\n'), 10_000, 'the input after the reconnect echoed');
    expect(text).toBe('after\n');
    expect(proxy.cuts).toBe(1);
  });

  it('notices a connection that went silent (heartbeat timeout) and resumes on a new one', async () => {
    const { server, proxy, client } = await throughProxy({}, { heartbeatInterval: 100, heartbeatTimeout: 400 });
    client.connect();
    await stateOf(client, 'connected');
    await server.createSession({ id: 'ticker', kind: 'command', command: 'for i in $(seq 1 30); do echo tick-$i; sleep 0.05; done' });
    let text = '';
    let ended = false;
    client.attach('ticker', { onOutput: (d) => (text += d), onExit: () => (ended = true) });
    await until(() => text.includes('tick-3\n'), 10_000, 'the first ticks');
    const states: string[] = [];
    client.onStateChange((s) => states.push(s));
    proxy.freeze();
    await until(() => ended, 20_000, 'the end of the ticker after the freeze');
    expect(states.slice(0, 2)).toEqual(['reconnecting', 'connected']);
    expect(client.lastError?.message).toMatch(/no message for 400 ms/);
    expect(text).toBe(Array.from({ length: 30 }, (_, i) => `tick-${i + 1}\n`).join(''));
  });

  it('reconnects to a server restarted on the same port and data dir, and shows its lost sessions with their output', async () => {
    const first = await TestServer.start();
    cleanups.push(() => first.cleanup());
    const info = await first.createSession({
      id: 'survivor',
      kind: 'command',
      command: 'echo before-1; echo before-2; exec sleep 30',
    });
    cleanups.push(() => {
      try {
        if (info.pid) process.kill(info.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    });
    const client = first.client();
    cleanups.push(() => client.disconnect());
    client.connect();
    let text = '';
    let exit: ExitInfo | null = null;
    const handle = client.attach('survivor', { onOutput: (d) => (text += d), onExit: (e) => (exit = e) });
    await until(() => text === 'before-1\nbefore-2\n', 10_000, 'the output before the crash');
    const before = handle.position!;

    await first.stop();
    await stateOf(client, 'reconnecting');
    const second = await TestServer.start({ port: first.port, dataDir: first.dataDir });
    cleanups.push(() => second.stop());
    await stateOf(client, 'connected', 15_000);
    await until(() => exit !== null, 10_000, 'the lost session to be reported');
    expect(exit).toMatchObject({ status: 'lost' });
    expect(handle.status).toBe('lost');
    expect(handle.position).toEqual(before);
    expect(text).toBe('before-1\nbefore-2\n');

    // A new client sees the lost session as such, with its output (from
    // disk: the restarted server holds none of it in memory, so it asks from 0).
    const rest = await second.call('GET', '/api/sessions/survivor');
    expect(rest.body.status).toBe('lost');
    const late = second.client();
    cleanups.push(() => late.disconnect());
    late.connect();
    let lateText = '';
    let lateExit: ExitInfo | null = null;
    late.attach('survivor', {
      since: { epoch: rest.body.epoch, offset: 0 }, onOutput: (d) => (lateText += d), onExit: (e) => (lateExit = e) });
    await until(() => lateExit !== null, 10_000, 'the late client to see the end');
    expect(lateText).toBe('before-1\nbefore-2\n');
    expect(lateExit).toMatchObject({ status: 'lost' });
  });
});

export type { WebSocketClient };
