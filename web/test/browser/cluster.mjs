// Checks on a cluster: a real `redis-server` (free port, nothing kept on
// disk) and two nodes joined through it; the page is on the second node
// (`viewer`), the sessions on the first (`owner`). `startCluster` starts
// them; run.mjs runs these checks when the filter names one.
import { strict as assert } from 'node:assert';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServer, rest, openPage, hasView, bash, suite, waitFor, waitText, bufferText, shot } from './harness.mjs';

const [checks, test] = suite();
export { checks };

const run = promisify(execFile);

/** Starts a Redis and two nodes (100 ms heartbeats; a long attach wait); `stop()` ends them all. */
export async function startCluster() {
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const port = probe.address().port;
  await new Promise((r) => probe.close(r));
  const dir = mkdtempSync(join(tmpdir(), 'termstream-web-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  // A Redis that cannot start (not installed, its port taken) fails the
  // start at once, saying why, rather than after the PING wait.
  let dead = null;
  const died = new Promise((_, reject) => {
    child.once('error', (e) => reject((dead = new Error(`redis-server could not be started: ${e.message}`))));
    child.once('exit', (code, signal) => reject((dead = new Error(`redis-server on port ${port} exited (${signal ?? `code ${code}`})`))));
  });
  died.catch(() => {});
  const redis = async (...args) => (await run('redis-cli', ['-p', String(port), '--raw', ...args])).stdout.replace(/\n$/, '');
  const nodes = [];
  const stop = async () => {
    for (const n of nodes) await n.stop();
    // A child never started (`pid` undefined) sends no `exit`.
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    let last = '';
    const ping = async () => dead !== null || (await redis('PING').catch((e) => ((last = e.message), ''))) === 'PONG';
    await Promise.race([waitFor('redis-server to answer PING', ping, 10000).catch((e) => Promise.reject(last ? new Error(`${e.message} (redis-cli: ${last})`) : e)), died]);
    if (dead !== null) throw dead;
    // The viewer's node waits long for a session to be listed again.
    const config = `cluster = "redis://127.0.0.1:${port}"\ncluster_heartbeat_ms = 100\ncluster_lost_ms = 5000\nattach_wait_ms = 60000\n`;
    for (let i = 0; i < 2; i++) nodes.push(await startServer({ config }));
    for (const n of nodes) await waitFor('a node to be ready', async () => (await fetch(n.url + '/readyz')).status === 200, 10000);
  } catch (e) {
    await stop();
    throw e;
  }
  const [owner, viewer] = nodes;
  return { owner, viewer, redis, stop, stderr: () => nodes.map((n) => n.stderr()).join('\n'), freeze: (on) => owner.signal(on ? 'SIGSTOP' : 'SIGCONT') };
}

test('a session the viewer’s node lets go of and takes up again (released) stays in its terminal: not deleted, output once, typing reaches it', async ({ server, api, ctx, owner, redis }) => {
  await owner.create(bash('moving'));
  await waitFor('the session listed on the viewer’s node', () => api.get('moving').then(() => true, () => false));
  const page = await openPage(ctx, server, '#/s/moving');
  await hasView(page, 'moving');
  await waitText(page, 'moving', '$ ');
  await page.evaluate(() => {
    window.detachReasons = [];
    window.termstream.client.subscribe('session.detached', (m) => window.detachReasons.push(m.reason ?? null));
  });
  await owner.input('moving', 'echo before-$((6*7))\n');
  await waitText(page, 'moving', 'before-42');

  // The record leaves the directory, and the change log is emptied in the
  // same step (a record the log says was removed is a deletion): after
  // three heartbeats without it the viewer's node lets go of its copy, as
  // after a Redis restarted empty, and its list says `deleted`, while the
  // session runs on on its owner.
  const record = await redis('HGET', 'termstream:dir', 'moving');
  assert.match(record, /"moving"/);
  await redis('EVAL', "redis.call('DEL', KEYS[2]); return redis.call('HDEL', KEYS[1], ARGV[1])", '2', 'termstream:dir', 'termstream:dirlog', 'moving');
  await waitFor('the release, and the list without the session', () =>
    page.evaluate(() => window.detachReasons.length > 0 && !window.termstream.sessions.has('moving')),
  );
  assert.deepEqual(await page.evaluate(() => window.detachReasons), ['released']);
  await owner.input('moving', 'echo during-$((6*7))\n');
  await redis('EVAL', "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); return redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])", '2', 'termstream:dir', 'termstream:dirlog', 'moving', record);
  await waitText(page, 'moving', 'during-42');

  await page.locator('.term[data-session="moving"] .term-body').click();
  await page.keyboard.type('echo typed-$((6*7))\n');
  await waitText(page, 'moving', 'typed-42');
  const text = await bufferText(page, 'moving');
  for (const word of ['before-42', 'during-42', 'typed-42']) assert.equal(text.split(word).length - 1, 1, `${word} once in:\n${text}`);
  assert.ok(!text.includes('[session deleted]'), `no [session deleted] in:\n${text}`);
  const view = await page.evaluate(() => {
    const v = window.termstream.views.get('moving');
    return { deleted: v.deleted, stdin: !v.term.options.disableStdin, end: v.el.querySelector('.term-end').textContent };
  });
  assert.deepEqual(view, { deleted: false, stdin: true, end: '' });
  await shot(page, 'released');
});

test('a session lost while its node was frozen runs on in its terminal once the node is back (released): the end is taken back', async ({ server, api, ctx, owner, freeze }) => {
  await owner.create(bash('frozen'));
  await waitFor('the session listed on the viewer’s node', () => api.get('frozen').then(() => true, () => false));
  const page = await openPage(ctx, server, '#/s/frozen');
  await hasView(page, 'frozen');
  await waitText(page, 'frozen', '$ ');
  const ended = () => page.evaluate(() => {
    const v = window.termstream.views.get('frozen');
    return { exit: v.exit?.status ?? null, ended: 'ended' in v.el.dataset, end: v.el.querySelector('.term-end').textContent, deleted: v.deleted };
  });
  // Frozen past its liveness (5 s), the owner's session is marked lost.
  freeze(true);
  try {
    await waitFor('the session lost', async () => (await ended()).exit === 'lost', 20000);
    const lost = await ended();
    assert.deepEqual({ ...lost, end: undefined }, { exit: 'lost', ended: true, end: undefined, deleted: false });
    assert.match(lost.end, /lost/);
  } finally {
    freeze(false);
  }
  // Back: the viewer's node takes the session up afresh, the page follows it.
  await waitFor('the end taken back', async () => (await ended()).exit === null, 20000);
  assert.deepEqual(await ended(), { exit: null, ended: false, end: '', deleted: false });
  await page.locator('.term[data-session="frozen"] .term-body').click();
  await page.keyboard.type('echo back-$((6*7))\n');
  await waitText(page, 'frozen', 'back-42');
  assert.ok(!(await bufferText(page, 'frozen')).includes('[session deleted]'));
  await shot(page, 'lost-and-back');
});

test('a paused view of a session the viewer’s node lets go of is not marked deleted: resumed, it follows the session again', async ({ server, api, ctx, owner, redis }) => {
  await owner.create(bash('paused'));
  await waitFor('the session listed on the viewer’s node', () => api.get('paused').then(() => true, () => false));
  const page = await openPage(ctx, server, '#/s/paused');
  await hasView(page, 'paused');
  await waitText(page, 'paused', '$ ');
  // Paused as flow control pauses a view that fell behind: detached, its
  // position kept, nothing attached on the server.
  await page.evaluate(() => window.termstream.views.get('paused').pause());
  const record = await redis('HGET', 'termstream:dir', 'paused');
  await redis('EVAL', "redis.call('DEL', KEYS[2]); return redis.call('HDEL', KEYS[1], ARGV[1])", '2', 'termstream:dir', 'termstream:dirlog', 'paused');
  await waitFor('the list without the session', () => page.evaluate(() => !window.termstream.sessions.has('paused')));
  assert.equal(await page.evaluate(() => window.termstream.views.get('paused').deleted), false, 'a release is not a deletion');
  await owner.input('paused', 'echo during-$((6*7))\n');
  await redis('EVAL', "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); return redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])", '2', 'termstream:dir', 'termstream:dirlog', 'paused', record);
  await page.evaluate(() => window.termstream.views.get('paused').resume());
  await waitText(page, 'paused', 'during-42');
  const text = await bufferText(page, 'paused');
  assert.ok(!text.includes('[session deleted]'), `no [session deleted] in:\n${text}`);
  assert.equal(await page.evaluate(() => window.termstream.views.get('paused').deleted), false);
});

test('a view of an ended session stays un-deleted across a release: the list’s deleted says released', async ({ server, api, ctx, owner, redis }) => {
  await owner.create({ id: 'ended', argv: ['sh', '-c', 'echo done-$((6*7))'] });
  await waitFor('the session ended, listed on the viewer’s node', () => api.get('ended').then((s) => s.status === 'exited', () => false));
  const page = await openPage(ctx, server, '#/s/ended');
  await hasView(page, 'ended');
  await waitText(page, 'ended', 'done-42');
  await page.evaluate(() => {
    window.gone = [];
    window.termstream.client.subscribe('session_update', (m) => m.sessionId === 'ended' && m.change === 'deleted' && window.gone.push(m.reason ?? null));
  });
  // As in the check above: the record leaves the directory (its removal
  // unlogged), the viewer’s node lets go of its copy, then it is back.
  // An ended session is not attached again on a release, so only the
  // list speaks of it: the old page believed its `deleted`.
  const record = await redis('HGET', 'termstream:dir', 'ended');
  assert.match(record, /"ended"/);
  await redis('EVAL', "redis.call('DEL', KEYS[2]); return redis.call('HDEL', KEYS[1], ARGV[1])", '2', 'termstream:dir', 'termstream:dirlog', 'ended');
  await waitFor('the list’s deleted, and the list without the session', () =>
    page.evaluate(() => window.gone.length > 0 && !window.termstream.sessions.has('ended')),
  );
  assert.deepEqual(await page.evaluate(() => window.gone), ['released']);
  await redis('EVAL', "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); return redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])", '2', 'termstream:dir', 'termstream:dirlog', 'ended', record);
  await waitFor('the session listed again', () => page.evaluate(() => window.termstream.sessions.has('ended')));
  const text = await bufferText(page, 'ended');
  assert.ok(!text.includes('[session deleted]'), `no [session deleted] in:\n${text}`);
  assert.equal(await page.evaluate(() => window.termstream.views.get('ended').deleted), false, 'a release is not a deletion');
});

/** Runs the checks whose names include `filter` (with `runAll` of run.mjs) on a cluster of their own. */
export async function runClusterChecks(filter, runAll) {
  if (!checks.some((t) => t.name.includes(filter))) return;
  const c = await startCluster();
  try {
    await runAll(checks, { url: c.viewer.url, stderr: c.stderr }, { api: rest(c.viewer.url), owner: rest(c.owner.url), redis: c.redis, freeze: c.freeze });
  } finally {
    await c.stop();
  }
}
