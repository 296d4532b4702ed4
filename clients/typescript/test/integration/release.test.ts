// A cluster node letting go of its copy of another node's session
// (`session.detached` reason `released`), against two real nodes and a real
// Redis: the client attaches again from where it was, and its listeners see
// every byte once and no end.
import { expect, it } from 'vitest';
import type { AttachError, DetachInfo, ExitInfo, ServerMessage, WebSocketClient } from '../../src/index.js';
import { eventually } from './redis.js';
import { releaseCluster } from './release-cluster.js';
import { type TestServer, stateOf, until } from './server.js';

const cluster = releaseCluster();

async function input(node: TestServer, id: string, data: string): Promise<void> {
  const r = await node.call('POST', `/api/sessions/${id}/input`, { data });
  expect(r.status).toBe(200);
}

it('a session released by the viewer’s node is attached again from where it was: its output arrives once, with no end', async () => {
  const { redis, owner, viewer } = cluster;
  await owner.createSession({ id: 'moving', kind: 'command', command: 'exec cat' });
  await eventually(() => viewer.call('GET', '/api/sessions/moving').then((r) => r.status === 200), 10_000, 'the session to be listed on the viewer’s node');

  const client: WebSocketClient = viewer.client();
  try {
    client.connect();
    await stateOf(client, 'connected');
    let text = '';
    let attaches = 0;
    const detached: DetachInfo[] = [];
    const errors: AttachError[] = [];
    const reasons: unknown[] = [];
    client.subscribe<ServerMessage>('session.detached', (m) => reasons.push(m.reason));
    client.attach('moving', {
      onOutput: (d) => (text += d),
      onAttached: () => attaches++,
      onDetached: (d) => detached.push(d),
      onError: (e) => errors.push(e),
    });
    await input(owner, 'moving', 'before\n');
    await until(() => text.length >= 'before\n'.length, 10_000, 'the output before the release');
    expect(text).toBe('before\n');

    // The session's record leaves the directory (with no logged change
    // naming it): after three heartbeats without it, the viewer's node lets
    // go of its copy, while the session runs on on its owner.
    const record = await redis.dropRecord('moving');
    await until(() => reasons.length > 0, 10_000, 'the viewer’s node to release the session');
    expect(reasons).toEqual(['released']);

    // Output while the viewer's node holds no copy; then the record is back.
    await input(owner, 'moving', 'during\n');
    await redis.putRecord('moving', record);
    await until(() => text.length >= 'before\nduring\n'.length, 20_000, 'the output made while released');
    expect(text).toBe('before\nduring\n');
    await input(owner, 'moving', 'after\n');
    await until(() => text.length >= 'before\nduring\nafter\n'.length, 10_000, 'the output after the release');
    expect(text).toBe('before\nduring\nafter\n');

    expect(attaches).toBe(2);
    expect(detached).toEqual([]);
    expect(errors).toEqual([]);
    expect(reasons).toEqual(['released']);
  } finally {
    client.disconnect();
  }
}, 90_000);

it('a session lost when its node froze, and released when the node came back, is attached again: its output carries on once', async () => {
  const { owner, viewer } = cluster;
  await owner.createSession({ id: 'frozen', kind: 'command', command: 'exec cat' });
  await eventually(() => viewer.call('GET', '/api/sessions/frozen').then((r) => r.status === 200), 10_000, 'the session to be listed on the viewer’s node');

  const client: WebSocketClient = viewer.client();
  let frozen = false;
  try {
    client.connect();
    await stateOf(client, 'connected');
    let text = '';
    const statuses: string[] = [];
    const exits: ExitInfo[] = [];
    const detached: DetachInfo[] = [];
    const errors: AttachError[] = [];
    const reasons: unknown[] = [];
    client.subscribe<ServerMessage>('session.detached', (m) => reasons.push(m.reason));
    const h = client.attach('frozen', {
      onOutput: (d) => (text += d),
      onAttached: (a) => statuses.push(a.status),
      onExit: (e) => exits.push(e),
      onDetached: (d) => detached.push(d),
      onError: (e) => errors.push(e),
    });
    await input(owner, 'frozen', 'before\n');
    await until(() => text.length >= 'before\n'.length, 10_000, 'the output before the freeze');

    // The owner stops answering: once its liveness key expires (5 s) the
    // viewer's node marks the session lost and says so; the owner let go on,
    // it registers again, and the viewer's node takes the session up afresh.
    owner.signal('SIGSTOP');
    frozen = true;
    await until(() => exits.length > 0, 20_000, 'the session to be lost');
    expect(exits[0]!.status).toBe('lost');
    owner.signal('SIGCONT');
    frozen = false;
    await until(() => reasons.length > 0, 20_000, 'the viewer’s node to release the lost session');
    expect(reasons).toEqual(['released']);
    await until(() => statuses.length === 2, 20_000, 'the attach after the release');
    expect(statuses).toEqual(['running', 'running']);
    expect(h.status).toBe('running');

    await input(owner, 'frozen', 'after\n');
    await until(() => text.length >= 'before\nafter\n'.length, 10_000, 'the output after the owner came back');
    expect(text).toBe('before\nafter\n');
    expect(detached).toEqual([]);
    expect(errors).toEqual([]);
  } finally {
    if (frozen) owner.signal('SIGCONT');
    client.disconnect();
  }
}, 90_000);
