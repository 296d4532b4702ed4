// Attachments, input and the outgoing queue, against the fake socket.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type DetachInfo, MessageTooLargeError, QueueFullError, inputRefusal, isDeletion } from '../../src/index.js';
import { quiet, setup } from './fake-socket.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('attach', () => {
  it('delivers each byte once across a reconnect, re-attaching with since', async () => {
    const { server, client } = setup();
    const out: string[] = [];
    const gaps: unknown[] = [];
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const h = client.attach('job', { onOutput: (d) => out.push(d), onGap: (g) => gaps.push(g) });
    expect(s.ofType('session.attach')).toEqual([{ type: 'session.attach', sessionId: 'job', output: 'binary' }]);
    s.message({ type: 'session.attached', sessionId: 'job', epoch: 'e1', offset: 0, cols: 0, rows: 0, status: 'running' });
    s.output('job', 0, 'hello', 'stdout');
    expect(h.position).toEqual({ epoch: 'e1', offset: 5 });
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    expect(t.ofType('session.attach')).toEqual([
      { type: 'session.attach', sessionId: 'job', output: 'binary', since: { epoch: 'e1', offset: 5 } },
    ]);
    t.message({ type: 'session.attached', sessionId: 'job', epoch: 'e1', offset: 5, cols: 0, rows: 0, status: 'running', recovered: true });
    t.output('job', 3, 'lo world', 'stdout');
    t.output('job', 0, 'hello', 'stdout');
    expect(out.join('')).toBe('hello world');
    t.output('job', 20, 'later', 'stdout');
    expect(gaps).toEqual([{ from: 11, to: 20, reason: 'missing' }]);
    t.message({ type: 'session.gap', sessionId: 'job', recovered: false, from: 25, to: 40, reason: 'evicted' });
    expect(gaps.at(-1)).toEqual({ from: 25, to: 40, reason: 'evicted' });
    expect(h.position).toEqual({ epoch: 'e1', offset: 40 });
  });

  it('tells onAttached where live output starts (end), and leaves it out for an older server', async () => {
    const { server, client } = setup();
    const infos: unknown[] = [];
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    client.attach('job', { onAttached: (i) => infos.push(i) });
    s.message({ type: 'session.attached', sessionId: 'job', epoch: 'e1', offset: 3, cols: 80, rows: 24, status: 'running', recovered: true, end: 10 });
    expect(infos).toEqual([{ epoch: 'e1', offset: 3, cols: 80, rows: 24, status: 'running', recovered: true, end: 10 }]);
    s.message({ type: 'session.attached', sessionId: 'job', epoch: 'e2', offset: 0, cols: 80, rows: 24, status: 'running' });
    expect(infos.at(-1)).toEqual({ epoch: 'e2', offset: 0, cols: 80, rows: 24, status: 'running' });
  });

  it('switches between focus-aware and full streaming by attaching again, taking no byte twice', async () => {
    const { server, client } = setup();
    const out: string[] = [];
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const h = client.attach('job', { stream: 'focus', onOutput: (d) => out.push(d) });
    expect(s.ofType('session.attach')).toEqual([{ type: 'session.attach', sessionId: 'job', output: 'binary', stream: 'focus' }]);
    s.message({ type: 'session.attached', sessionId: 'job', epoch: 'e1', offset: 0, cols: 0, rows: 0, status: 'running' });
    s.output('job', 0, 'ab', 'stdout');
    h.setStream('live');
    expect(s.ofType('session.attach').at(-1)).toEqual({ type: 'session.attach', sessionId: 'job', output: 'binary', since: { epoch: 'e1', offset: 2 } });
    // The earlier attachment's output still comes before the answer...
    s.output('job', 2, 'cd', 'stdout');
    // ...and the new one starts where it was asked to, below what was taken.
    s.message({ type: 'session.attached', sessionId: 'job', epoch: 'e1', offset: 2, cols: 0, rows: 0, status: 'running', recovered: true });
    expect(h.position).toEqual({ epoch: 'e1', offset: 4 });
    s.output('job', 2, 'cdef', 'stdout');
    expect(out.join('')).toBe('abcdef');
    h.setStream('live');
    expect(s.ofType('session.attach')).toHaveLength(2);
  });

  it('holds a UTF-8 sequence split across frames until it is whole, and hands bytes in binary mode', async () => {
    const { server, client } = setup();
    const text: string[] = [];
    const bytes: number[] = [];
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    client.attach('a', { onOutput: (d) => text.push(d) });
    client.attach('b', { output: 'binary', onOutput: (d) => bytes.push(...d) });
    const euro = new TextEncoder().encode('€');
    for (const id of ['a', 'b']) {
      s.message({ type: 'session.attached', sessionId: id, epoch: 'e', offset: 0, cols: 80, rows: 24, status: 'running' });
      s.onmessage?.({ data: frame(id, 0, euro.subarray(0, 2)) });
      s.onmessage?.({ data: frame(id, 2, euro.subarray(2)) });
    }
    expect(text).toEqual(['€']);
    expect(bytes).toEqual([...euro]);
  });

  it('gives the terminal_output view: output, errors and info', async () => {
    const { server, client } = setup();
    const view: unknown[] = [];
    client.subscribe('terminal_output', (m) => view.push({ sessionId: m.sessionId, data: m.data }));
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const exits: unknown[] = [];
    client.attach('job', { onExit: (e) => exits.push(e) });
    s.message({ type: 'session.attached', sessionId: 'job', epoch: 'e', offset: 0, cols: 0, rows: 0, status: 'running' });
    s.output('job', 0, 'out\n', 'stdout');
    s.output('job', 4, 'err\n', 'stderr');
    s.message({ type: 'session.exit', sessionId: 'job', status: 'exited', exitCode: 3, signal: null, duration: 5 });
    expect(view).toEqual([
      { sessionId: 'job', data: { output: 'out\n', type: 'output' } },
      { sessionId: 'job', data: { output: 'err\n', type: 'error' } },
      { sessionId: 'job', data: { output: '[session job exited, exit code 3]\n', type: 'info' } },
    ]);
    expect(exits).toEqual([{ status: 'exited', exitCode: 3, signal: null, duration: 5 }]);
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.last.accept().ofType('session.attach')).toEqual([]);
  });

  it('sends input with rising seq, resends unconfirmed input after a reconnect, not confirmed input', async () => {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const h = client.attach('sh');
    h.input('a');
    h.input('b');
    expect(s.ofType('terminal.input')).toEqual([
      { type: 'terminal.input', sessionId: 'sh', data: 'a', seq: 1 },
      { type: 'terminal.input', sessionId: 'sh', data: 'b', seq: 2 },
    ]);
    await vi.advanceTimersByTimeAsync(250);
    expect(s.ofType('heartbeat')).toHaveLength(1);
    s.message({ type: 'heartbeat', timestamp: 1 });
    h.input('c');
    s.drop();
    h.input('d');
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    expect(t.ofType('terminal.input').map((m) => [m.data, m.seq])).toEqual([
      ['c', 3],
      ['d', 4],
    ]);
    const order = t.sent.map((m) => m.type);
    expect(order.indexOf('session.attach')).toBeLessThan(order.indexOf('terminal.input'));
  });

  it('sends a response tagged, without seq, only while connected, and never again after a reconnect', async () => {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const h = client.attach('sh');
    h.input('\x1b[2;1R', { response: true });
    h.input('typed');
    expect(s.ofType('terminal.input')).toEqual([
      { type: 'terminal.input', sessionId: 'sh', data: '\x1b[2;1R', response: true },
      { type: 'terminal.input', sessionId: 'sh', data: 'typed', seq: 1 },
    ]);
    s.drop();
    h.input('\x1b[3;1R', { response: true });
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    expect(t.ofType('terminal.input').map((m) => [m.data, m.seq, m.response])).toEqual([['typed', 1, undefined]]);
  });

  it('with a client id of its own, input seq starts from the clock, above an earlier page\'s', async () => {
    const { server, client } = setup({ clientId: 'dashboard-1' });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept('dashboard-1');
    expect(s.url).toContain('clientId=dashboard-1');
    client.attach('sh').input('x');
    const seq = s.ofType('terminal.input')[0]!.seq as number;
    expect(seq).toBeGreaterThan(Date.now() * 1000 - 1);
    expect(Number.isSafeInteger(seq)).toBe(true);
  });

  it('sends a resize asked while disconnected after the re-attach', async () => {
    const { server, client } = setup();
    const h = client.attach('sh');
    h.resize(100, 30);
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    expect(s.sent.map((m) => m.type)).toEqual(['session.attach', 'terminal.resize']);
    h.detach();
    expect(s.ofType('session.detach')).toEqual([{ type: 'session.detach', sessionId: 'sh' }]);
  });
});

describe('detach, then attach the same session again', () => {
  it("ignores the old subscription's messages until the server answered the detach", async () => {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const stale: string[] = [];
    client.attach('job', { onOutput: (d) => stale.push(d) }).detach();
    const out: string[] = [];
    const exits: unknown[] = [];
    const h = client.attach('job', { onOutput: (d) => out.push(d), onExit: (e) => exits.push(e) });
    expect(s.sent.map((m) => m.type)).toEqual(['session.attach', 'session.detach', 'session.attach']);
    const attached = { type: 'session.attached', sessionId: 'job', epoch: 'e', offset: 0, cols: 0, rows: 0, status: 'running' };
    s.message(attached);
    s.output('job', 0, 'abc', 'stdout');
    s.message({ type: 'session.detached', sessionId: 'job' });
    s.message(attached);
    s.output('job', 0, 'abc', 'stdout');
    s.output('job', 3, 'def', 'stdout');
    expect(stale).toEqual([]);
    expect(out.join('')).toBe('abcdef');
    expect(h.position).toEqual({ epoch: 'e', offset: 6 });
    s.message({ type: 'session.exit', sessionId: 'job', status: 'exited', exitCode: 0, signal: null, duration: 1 });
    expect(exits).toHaveLength(1);
  });
});

describe('a release or deletion racing our own detach', () => {
  it('is not taken for the detach’s answer: the answer that follows (not_attached) reaches no new attachment', async () => {
    for (const reason of ['released', 'deleted']) {
      const { server, client } = setup();
      client.connect();
      await vi.advanceTimersByTimeAsync(0);
      const s = server.last.accept();
      const attached = { type: 'session.attached', sessionId: 'job', epoch: 'e', offset: 0, cols: 0, rows: 0, status: 'running' };
      client.attach('job').detach();
      const errors: unknown[] = [];
      const detached: unknown[] = [];
      const out: string[] = [];
      client.attach('job', { onError: (e) => errors.push(e.code), onDetached: (d) => detached.push(d), onOutput: (d) => out.push(d) });
      s.message(attached);
      // The node let go of the old attachment (or the session was deleted)
      // before it read our detach, which it then answers not_attached.
      s.message({ type: 'session.detached', sessionId: 'job', reason });
      s.message({ type: 'error', code: 'not_attached', message: 'not attached', sessionId: 'job' });
      s.message(attached);
      s.output('job', 0, 'abc', 'stdout');
      expect(errors).toEqual([]);
      expect(detached).toEqual([]);
      expect(out.join('')).toBe('abc');
    }
  });
});

describe('several attaches of one session', () => {
  it('share one server attachment; each gets output in its mode; the last detach ends it', async () => {
    const { server, client } = setup({ logger: quiet });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const text: string[] = [];
    const bytes: number[] = [];
    const first = client.attach('job', {
      onOutput: (d) => {
        text.push(d);
        throw new Error('a broken handler');
      },
    });
    const second = client.attach('job', { output: 'binary', onOutput: (d) => bytes.push(d.length) });
    expect(s.ofType('session.attach')).toHaveLength(1);
    s.message({ type: 'session.attached', sessionId: 'job', epoch: 'e', offset: 0, cols: 0, rows: 0, status: 'running' });
    s.output('job', 0, 'abc', 'stdout');
    expect(text).toEqual(['abc']);
    expect(bytes).toEqual([3]);
    first.detach();
    first.detach();
    expect(s.ofType('session.detach')).toEqual([]);
    s.output('job', 3, 'de', 'stdout');
    expect(text).toEqual(['abc']);
    expect(bytes).toEqual([3, 2]);
    second.detach();
    expect(s.ofType('session.detach')).toEqual([{ type: 'session.detach', sessionId: 'job' }]);
  });
});

describe('outgoing queue', () => {
  it('queues while disconnected, sends in order on connect, and throws past 1 MiB', async () => {
    const { server, client } = setup();
    const big = 'x'.repeat(600 * 1024);
    client.send('notification', { title: 't', message: big });
    expect(() => client.send('notification', { title: 't2', message: big })).toThrow(QueueFullError);
    client.send('terminal.input', { sessionId: 's', data: 'small' });
    client.send('ping');
    client.send('heartbeat');
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    expect(s.sent.map((m) => [m.type, m.title ?? m.data])).toEqual([
      ['notification', 't'],
      ['terminal.input', 'small'],
      ['ping', undefined],
    ]);
  });

  it('splits long input into messages of at most 16 Ki code units, never inside a surrogate pair, each with its seq', async () => {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const h = client.attach('job');
    const paste = 'a' + '😀'.repeat(20_000) + 'tail';
    h.input(paste);
    const sent = s.ofType('terminal.input');
    expect(sent.length).toBe(3);
    expect(sent.map((m) => m.data).join('')).toBe(paste);
    for (const m of sent) {
      expect(m.data.length).toBeLessThanOrEqual(16 * 1024);
      expect(m.data.isWellFormed()).toBe(true);
    }
    expect(sent.map((m) => m.seq)).toEqual([sent[0]!.seq, sent[0]!.seq + 1, sent[0]!.seq + 2]);
  });

  it('queues a long input while disconnected whole or not at all', async () => {
    const { server, client } = setup({ maxQueueBytes: 100 * 1024 });
    const h = client.attach('job');
    expect(() => h.input('x'.repeat(120 * 1024))).toThrow(QueueFullError);
    h.input('y'.repeat(40 * 1024));
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    expect(s.ofType('terminal.input').map((m) => m.data).join('')).toBe('y'.repeat(40 * 1024));
  });

  it('writes one input larger than maxQueueBytes while connected, whole', async () => {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const h = client.attach('job');
    // 200 Ki escapes: 1.2 MB of JSON, above the default 1 MiB bound.
    const paste = '\u001b'.repeat(200 * 1024);
    h.input(paste);
    expect(s.ofType('terminal.input').map((m) => m.data).join('')).toBe(paste);
  });

  it('does not resend any of a call larger than maxQueueBytes after the socket died under it, and resends the calls around it', async () => {
    const { server, client } = setup({ maxQueueBytes: 100 * 1024 });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const h = client.attach('job');
    h.input('a'.repeat(10 * 1024));
    h.input('x'.repeat(120 * 1024));
    h.input('c'.repeat(10 * 1024));
    expect(s.ofType('terminal.input').map((m) => m.data).join('')).toBe('a'.repeat(10 * 1024) + 'x'.repeat(120 * 1024) + 'c'.repeat(10 * 1024));
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    expect(t.ofType('terminal.input').map((m) => m.data).join('')).toBe('a'.repeat(10 * 1024) + 'c'.repeat(10 * 1024));
  });

  it('resends the input of a socket that died whole calls at a time, never the tail of a paste', async () => {
    const { server, client } = setup({ maxQueueBytes: 100 * 1024 });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const h = client.attach('job');
    h.input('a'.repeat(60 * 1024));
    h.input('b'.repeat(60 * 1024));
    expect(s.ofType('terminal.input').map((m) => m.data).join('')).toBe('a'.repeat(60 * 1024) + 'b'.repeat(60 * 1024));
    s.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    // Both would exceed the bound: the older paste is forgotten whole (the likelier applied), the newer resent whole.
    expect(t.ofType('terminal.input').map((m) => m.data).join('')).toBe('b'.repeat(60 * 1024));
  });

  it('refuses a message larger than the server takes, and writes nothing of it', async () => {
    const { server, client } = setup({ maxMessageBytes: 10_000 });
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    expect(() => client.send('notification', { title: 't', message: 'x'.repeat(10_000) })).toThrow(MessageTooLargeError);
    expect(s.ofType('notification')).toEqual([]);
    // Input is split to fit that bound instead.
    client.attach('job').input('\u001b'.repeat(5_000));
    const sent = s.ofType('terminal.input');
    expect(sent.map((m) => m.data).join('')).toBe('\u001b'.repeat(5_000));
    for (const m of sent) expect(JSON.stringify(m).length).toBeLessThanOrEqual(10_000);
  });

  it('inputRefusal words the errors input() throws for the user, and no others', () => {
    const { client } = setup({ maxQueueBytes: 100 });
    const h = client.attach('job');
    let thrown: unknown;
    try {
      h.input('x'.repeat(200));
    } catch (e) {
      thrown = e;
    }
    expect(inputRefusal(thrown)).toMatch(/^input not sent: with it the queue kept while disconnected would hold \d+ bytes, more than its 100$/);
    expect(inputRefusal(new MessageTooLargeError(2000, 1000))).toBe('input not sent: a message of 2000 bytes is larger than the server takes (1000)');
    expect(inputRefusal(new Error('other'))).toBeNull();
  });

  it('honours a smaller maxQueueBytes', () => {
    const { client } = setup({ maxQueueBytes: 100 });
    client.send('x', { d: 'y'.repeat(50) });
    expect(() => client.send('x', { d: 'y'.repeat(50) })).toThrow(/exceed 100/);
  });
});

function frame(sessionId: string, offset: number, data: Uint8Array): ArrayBuffer {
  const id = new TextEncoder().encode(sessionId);
  const out = new Uint8Array(11 + id.length + data.length);
  out[0] = 1;
  out[1] = 0;
  out[2] = id.length;
  new DataView(out.buffer).setBigUint64(3, BigInt(offset));
  out.set(id, 11);
  out.set(data, 11 + id.length);
  return out.buffer;
}

describe("session.detached's reason", () => {
  const attached = { type: 'session.attached', sessionId: 'job', epoch: 'e', offset: 0, cols: 0, rows: 0, status: 'running' };

  async function attachedJob() {
    const { server, client } = setup();
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    const s = server.last.accept();
    const out: string[] = [];
    const detached: unknown[] = [];
    const exits: unknown[] = [];
    const h = client.attach('job', { onOutput: (d) => out.push(d), onDetached: (d) => detached.push(d), onExit: (e) => exits.push(e) });
    s.message(attached);
    s.output('job', 0, 'abc', 'stdout');
    return { s, h, out, detached, exits };
  }

  it('released: attached again from the position reached, the listeners told nothing', async () => {
    const { s, out, detached } = await attachedJob();
    s.message({ type: 'session.detached', sessionId: 'job', reason: 'released' });
    expect(s.ofType('session.attach').at(-1)).toEqual({ type: 'session.attach', sessionId: 'job', output: 'binary', since: { epoch: 'e', offset: 3 } });
    s.message({ ...attached, offset: 3 });
    s.output('job', 3, 'def', 'stdout');
    expect(out.join('')).toBe('abcdef');
    expect(detached).toEqual([]);
  });

  it('deleted, none (an older server) or one unknown: the end, told with the reason as given; isDeletion says which is a deletion', async () => {
    for (const [reason, told, deletion] of [
      ['deleted', 'deleted', true],
      [undefined, null, true],
      ['moved', 'moved', false],
    ] as const) {
      const { s, detached } = await attachedJob();
      s.message({ type: 'session.detached', sessionId: 'job', ...(reason ? { reason } : {}) });
      expect(detached).toEqual([{ reason: told }]);
      expect(isDeletion(detached[0] as DetachInfo)).toBe(deletion);
      expect(s.ofType('session.attach')).toHaveLength(1);
    }
    // A detach this client asked for is never told, but its reason is no deletion either.
    expect(isDeletion({ reason: 'detach' })).toBe(false);
    expect(isDeletion({ reason: 'released' })).toBe(false);
  });

  it('released after the session ended (not lost): not attached again, its end not told twice', async () => {
    const { s, detached, exits } = await attachedJob();
    s.message({ type: 'session.exit', sessionId: 'job', status: 'exited', exitCode: 0, signal: null, duration: 1 });
    s.message({ type: 'session.detached', sessionId: 'job', reason: 'released' });
    expect(s.ofType('session.attach')).toHaveLength(1);
    expect(exits).toHaveLength(1);
    expect(detached).toEqual([]);
  });
});
