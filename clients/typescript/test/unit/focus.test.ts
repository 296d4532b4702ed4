// Focus trackers against the fake socket.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createWebSocketClient, FocusError, VersionConflictError, type FocusState } from '../../src/index.js';
import { fakeServer } from './fake-socket.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

async function connected() {
  const server = fakeServer();
  const client = createWebSocketClient(undefined, { url: 'http://srv', WebSocket: server.WebSocket, lifecycle: null, random: () => 0 });
  client.connect();
  await vi.advanceTimersByTimeAsync(0);
  return { server, client, socket: server.last.accept() };
}

const update = (version: number, focusedSessions: string[], sessionId = 'x', focused = true) => ({
  type: 'focus_update',
  projectId: 'p',
  sessionId,
  focused,
  focusedSessions,
  totalFocused: focusedSessions.length,
  maxFocused: 4,
  version,
  timestamp: 1,
});

describe('focus', () => {
  it('syncs on first use, follows updates in version order, and ignores older ones and other projects', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    expect(socket.ofType('sync_request')).toEqual([{ type: 'sync_request', projectId: 'p' }]);
    const seen: FocusState[] = [];
    f.subscribe((s) => seen.push(s));
    socket.message({ type: 'connection_status', status: 'connected', projectId: 'p', focusedSessions: ['a'], version: 3, maxFocused: 4, timestamp: 1 });
    socket.message(update(4, ['a', 'b'], 'b'));
    socket.message(update(2, ['z']));
    socket.message({ ...update(9, ['q']), projectId: 'other' });
    expect(f.state).toEqual({ projectId: 'p', focusedSessions: ['a', 'b'], version: 4, maxFocused: 4 });
    expect(seen.map((s) => s.version)).toEqual([3, 4]);
    expect(client.focus('p')).toBe(f);
  });

  it('focus sends the version held and settles when the state shows it', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 7, maxFocused: 4, timestamp: 1 });
    const done = f.focus('s1');
    const sent = socket.ofType('focus')[0]!;
    expect(sent).toMatchObject({ type: 'focus', sessionId: 's1', projectId: 'p', expectedVersion: 7 });
    expect(typeof sent.timestamp).toBe('number');
    socket.message(update(8, ['s1'], 's1'));
    await expect(done).resolves.toMatchObject({ focusedSessions: ['s1'], version: 8 });
    const b = f.blur('s1');
    expect(socket.ofType('blur')[0]).toMatchObject({ sessionId: 's1', expectedVersion: 8 });
    socket.message(update(9, [], 's1', false));
    await expect(b).resolves.toMatchObject({ focusedSessions: [], version: 9 });
  });

  it('a version conflict adopts the server state and asks again with the new version', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 1, maxFocused: 4, timestamp: 1 });
    const done = f.focus('s1');
    socket.message({ type: 'error', code: 'version_conflict', message: 'stale', projectId: 'p', sessionId: 's1', focusedSessions: ['s9'], version: 5 });
    expect(f.state?.version).toBe(5);
    expect(socket.ofType('focus').map((m) => m.expectedVersion)).toEqual([1, 5]);
    socket.message(update(6, ['s9', 's1'], 's1'));
    await expect(done).resolves.toMatchObject({ version: 6 });
  });

  it('requests of one tracker made at once, which conflict with each other, all get through', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 0, maxFocused: 8, timestamp: 1 });
    const ids = ['s1', 's2', 's3', 's4', 's5', 's6'];
    const done = Promise.allSettled(ids.map((id) => f.focus(id)));
    // The server: applies a request whose expectedVersion is the project's, refuses any other with the state.
    let version = 0;
    const set: string[] = [];
    for (let handled = 0; handled < socket.ofType('focus').length; handled++) {
      const m = socket.ofType('focus')[handled]!;
      if (m.expectedVersion !== version) {
        socket.message({ type: 'error', code: 'version_conflict', message: 'stale', projectId: 'p', sessionId: m.sessionId, focusedSessions: [...set], version, maxFocused: 8 });
      } else if (!set.includes(m.sessionId)) {
        set.push(m.sessionId);
        socket.message(update(++version, [...set], m.sessionId));
      }
    }
    const results = await done;
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(f.state).toMatchObject({ focusedSessions: ids, version: 6 });
    // One request in flight per session at a time: 6 + 5 + 4 + 3 + 2 + 1 sent.
    expect(socket.ofType('focus')).toHaveLength(21);
  });

  it('asks again only after a conflict at another version than the one sent, once for the requests that want the same', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 1, maxFocused: 4, timestamp: 1 });
    const first = f.focus('s1');
    const second = f.focus('s1');
    expect(socket.ofType('focus')).toHaveLength(2);
    const conflict = { type: 'error', code: 'version_conflict', message: 'stale', projectId: 'p', sessionId: 's1', focusedSessions: ['s9'], version: 2 };
    socket.message(conflict);
    socket.message({ ...conflict, version: 3 });
    // The answer to the request sent with 2: the one sent with 3 is on its way.
    socket.message({ ...conflict, version: 3 });
    expect(socket.ofType('focus').map((m) => m.expectedVersion)).toEqual([1, 1, 2, 3]);
    socket.message(update(4, ['s9', 's1'], 's1'));
    await expect(Promise.all([first, second])).resolves.toHaveLength(2);
  });

  it('focus then blur of one session at once: the blur refused by the applied focus is asked again', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 5, maxFocused: 4, timestamp: 1 });
    const focused = f.focus('s1');
    const blurred = f.blur('s1');
    expect(socket.ofType('focus').map((m) => m.expectedVersion)).toEqual([5]);
    expect(socket.ofType('blur').map((m) => m.expectedVersion)).toEqual([5]);
    // The server applies the focus (v6) and refuses the blur, sent with 5, at v6.
    socket.message(update(6, ['s1'], 's1'));
    await expect(focused).resolves.toMatchObject({ version: 6 });
    socket.message({ type: 'error', code: 'version_conflict', message: 'stale', projectId: 'p', sessionId: 's1', focusedSessions: ['s1'], version: 6, maxFocused: 4 });
    expect(socket.ofType('blur').map((m) => m.expectedVersion)).toEqual([5, 6]);
    socket.message(update(7, [], 's1', false));
    await expect(blurred).resolves.toMatchObject({ focusedSessions: [], version: 7 });
  });

  it("a server whose focus state is older than the client's (its store reset): its state is adopted and the request asked once more", async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: ['old'], version: 10, maxFocused: 4, timestamp: 1 });
    const done = f.focus('s1');
    socket.message({ type: 'error', code: 'version_conflict', message: 'stale', projectId: 'p', sessionId: 's1', focusedSessions: [], version: 2, maxFocused: 4 });
    expect(f.state).toMatchObject({ focusedSessions: [], version: 2 });
    // The same conflict again (an answer to nothing sent since) asks nothing more.
    socket.message({ type: 'error', code: 'version_conflict', message: 'stale', projectId: 'p', sessionId: 's1', focusedSessions: [], version: 2, maxFocused: 4 });
    expect(socket.ofType('focus').map((m) => m.expectedVersion)).toEqual([10, 2]);
    socket.message(update(3, ['s1'], 's1'));
    await expect(done).resolves.toMatchObject({ version: 3 });
  });

  it('an error naming the session that answers another message (session_not_running for input) leaves a pending focus pending', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 1, maxFocused: 4, timestamp: 1 });
    let settled = false;
    const done = f.focus('s1').finally(() => (settled = true));
    socket.message({ type: 'error', code: 'session_not_running', message: 'ended', sessionId: 's1' });
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toBe(false);
    socket.message(update(2, ['s1'], 's1'));
    await expect(done).resolves.toMatchObject({ version: 2 });
  });

  it("an attach's refusal naming the session (request: session.attach) leaves a pending focus pending", async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 1, maxFocused: 4, timestamp: 1 });
    let settled = false;
    const done = f.focus('s1').finally(() => (settled = true));
    socket.message({ type: 'error', code: 'session_not_found', message: 'no session has id "s1"', sessionId: 's1', request: 'session.attach' });
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toBe(false);
    socket.message(update(2, ['s1'], 's1'));
    await expect(done).resolves.toMatchObject({ version: 2 });
  });

  it('an explicit expectedVersion that is stale fails with VersionConflictError', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    const done = f.focus('s1', { expectedVersion: 2 });
    expect(socket.ofType('focus')[0]!.expectedVersion).toBe(2);
    socket.message({ type: 'error', code: 'version_conflict', message: 'stale', projectId: 'p', focusedSessions: [], version: 4 });
    const err = await done.catch((e) => e);
    expect(err).toBeInstanceOf(VersionConflictError);
    expect(err.current).toMatchObject({ version: 4 });
    expect(socket.ofType('focus')).toHaveLength(1);
  });

  it('a refused change fails with its code; an unanswered one times out', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    const refused = f.focus('s1');
    socket.message({ type: 'error', code: 'read_only', message: 'may only watch', sessionId: 's1' });
    await expect(refused).rejects.toMatchObject({ name: 'FocusError', code: 'read_only' });
    const lost = f.blur('s2').catch((e) => e);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await lost).toBeInstanceOf(FocusError);
  });

  it('disconnect() fails the requests still pending at once, and leaves no timer behind', async () => {
    const { client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 1, timestamp: 1 });
    const pending = f.focus('s1').catch((e) => e);
    client.disconnect();
    const err = await pending;
    expect(err).toBeInstanceOf(FocusError);
    expect(err.code).toBe('disconnected');
    expect(vi.getTimerCount()).toBe(0);
    // The tracker itself stays: after connect() it syncs again and takes new requests.
    client.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(f.state?.version).toBe(1);
  });

  it('after a reconnect to a server whose focus state is older (restarted with another store), its answer to the sync is believed', async () => {
    const { server, client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: ['a'], version: 10, timestamp: 1 });
    socket.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    t.message({ type: 'connection_status', status: 'connected', projectId: 'p', focusedSessions: [], version: 0, maxFocused: 4, timestamp: 2 });
    expect(f.state).toMatchObject({ focusedSessions: [], version: 0 });
    // Later states are in version order again.
    t.message(update(2, ['b'], 'b'));
    t.message(update(1, ['c'], 'c'));
    expect(f.state).toMatchObject({ focusedSessions: ['b'], version: 2 });
  });

  it('after a reconnect it syncs again and resends what is pending', async () => {
    const { server, client, socket } = await connected();
    const f = client.focus('p');
    socket.message({ type: 'sync_complete', projectId: 'p', focusedSessions: [], version: 1, timestamp: 1 });
    const done = f.focus('s1');
    socket.drop();
    await vi.advanceTimersByTimeAsync(1000);
    const t = server.last.accept();
    expect(t.sent.map((m) => m.type)).toEqual(['sync_request', 'focus']);
    t.message(update(2, ['s1'], 's1'));
    await expect(done).resolves.toMatchObject({ version: 2 });
    f.close();
    t.drop();
    await vi.advanceTimersByTimeAsync(2000);
    expect(server.sockets).toHaveLength(3);
    expect(server.last.accept().ofType('sync_request')).toEqual([]);
  });
});
