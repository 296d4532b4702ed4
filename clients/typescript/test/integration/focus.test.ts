// Focus (issue 12) against the real server. A server without the focus
// messages answers `sync_request` with an error: then these tests skip.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FocusError, VersionConflictError, type ExitInfo, type FocusState, type WebSocketClient } from '../../src/index.js';
import { TestServer, until } from './server.js';

let server: TestServer;
let hasFocus = false;
const clients: WebSocketClient[] = [];

/** Whether the server answers `sync_request` with `sync_complete`. */
async function probe(url: string): Promise<boolean> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws`);
  try {
    return await new Promise<boolean>((resolve) => {
      ws.on('message', (d) => {
        const m = JSON.parse(String(d));
        if (m.type === 'sync_complete') resolve(true);
        else if (m.type === 'error') resolve(false);
      });
      ws.on('open', () => ws.send(JSON.stringify({ type: 'sync_request', projectId: 'default' })));
      ws.on('error', () => resolve(false));
      setTimeout(() => resolve(false), 5000);
    });
  } finally {
    ws.terminate();
  }
}

beforeAll(async () => {
  server = await TestServer.start();
  hasFocus = await probe(server.url);
  if (!hasFocus) return;
  for (const id of ['f1', 'f2']) await server.createSession({ id, kind: 'command', command: 'sleep 20' });
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await server.cleanup();
});

function connected(): WebSocketClient {
  const c = server.client();
  clients.push(c);
  c.connect();
  return c;
}

describe('focus against the real server', () => {
  it('a change by one client reaches another with the same version; a stale explicit version conflicts', async (ctx) => {
    if (!hasFocus) ctx.skip();
    const a = connected().focus('default');
    const b = connected().focus('default');
    await until(() => a.state !== null && b.state !== null, 5000, 'both synced');
    const seenByB: FocusState[] = [];
    b.subscribe((s) => seenByB.push(s));

    const focused = await a.focus('f1');
    expect(focused.focusedSessions).toContain('f1');
    await until(() => b.state!.version === focused.version, 5000, 'b to see the change');
    expect(b.state!.focusedSessions).toContain('f1');

    const stale = focused.version - 1;
    const err = await a.focus('f2', { expectedVersion: stale }).catch((e) => e);
    expect(err).toBeInstanceOf(VersionConflictError);
    expect(a.state!.focusedSessions).not.toContain('f2');

    const blurred = await b.blur('f1');
    expect(blurred.focusedSessions).not.toContain('f1');
    await until(() => a.state!.version === blurred.version, 5000, 'a to see the blur');
    const versions = seenByB.map((s) => s.version);
    expect(versions).toEqual([...versions].sort((x, y) => x - y));
  });

  it('a REST change (PUT /api/terminal/focus) reaches the tracker', async (ctx) => {
    if (!hasFocus) ctx.skip();
    const t = connected().focus('default');
    await until(() => t.state !== null, 5000, 'synced');
    const r = await server.call('PUT', '/api/terminal/focus', { sessionId: 'f2', focused: true });
    expect(r.status).toBe(200);
    await until(() => t.state!.version === r.body.version, 5000, 'the REST change');
    expect(t.state!.focusedSessions).toContain('f2');
  });

  it("an error about the session that is not the focus request's answer leaves the request alone", async (ctx) => {
    if (!hasFocus) ctx.skip();
    await server.createSession({ id: 'f-ended', kind: 'command', command: 'echo bye', project: 'ended' });
    const client = connected();
    let exit: ExitInfo | null = null;
    const errors: string[] = [];
    const h = client.attach('f-ended', { onExit: (e) => (exit = e), onError: (e) => errors.push(e.code) });
    await until(() => exit !== null, 5000, 'the session to end');
    const t = client.focus('ended');
    await until(() => t.state !== null, 5000, 'synced');
    // An ended session can be focused; input to it is refused (session_not_running).
    const focusing = t.focus('f-ended');
    h.input('too late\n');
    let settled = '';
    focusing.then(
      (s) => (settled = `focused ${s.focusedSessions.join(',')}`),
      (e) => (settled = `failed ${e.code}`),
    );
    await until(() => errors.length > 0 && settled !== '', 5000, 'the input refused and the focus settled');
    expect(errors).toEqual(['session_not_running']);
    expect(settled).toBe('focused f-ended');
    // A refusal of the focus itself still fails it, with its code.
    const err = await t.focus('no-such-session').catch((e) => e);
    expect(err).toBeInstanceOf(FocusError);
    expect(err.code).toBe('session_not_found');
  });

  it('many focus requests of one tracker at once all settle: its own requests conflicting with each other are asked again', async (ctx) => {
    if (!hasFocus) ctx.skip();
    const ids = Array.from({ length: 8 }, (_, i) => `many-${i}`);
    for (const id of ids) await server.createSession({ id, kind: 'command', command: 'exec sleep 20', project: 'many' });
    const a = connected().focus('many');
    const b = connected().focus('many');
    await until(() => a.state !== null && b.state !== null, 5000, 'both synced');
    // Each caller asks without a version of its own: none of these may fail with a conflict.
    const results = await Promise.allSettled([...ids.slice(0, 4).map((id) => a.focus(id)), ...ids.slice(4).map((id) => b.focus(id))]);
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
    expect(failed).toEqual([]);
    await until(() => a.state!.version === b.state!.version && a.state!.version >= 8, 5000, 'both to see every change');
  });
});
