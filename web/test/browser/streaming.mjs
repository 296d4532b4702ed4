// Checks of output delivery: a socket cut again and again, a hidden
// terminal's periodic updates, a grid with no cross-talk and WebGL, 64 MiB
// under flow control, focus shared between pages, and a page restored from
// the back-forward cache.
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser, openPage, hasView, bash, suite, waitFor, waitText, bufferText, shot } from './harness.mjs';

const [checks, test] = suite();
export { checks };

test('cutting the socket again and again: every numbered line exactly once', async ({ server, api, ctx }) => {
  const N = 3000;
  const page = await openPage(ctx, server);
  await api.create({ id: 'numbers', kind: 'command', command: `i=1; while [ $i -le ${N} ]; do echo "n$i"; i=$((i+1)); case $i in *0) sleep 0.02;; esac; done` });
  await page.evaluate(() => (location.hash = '#/s/numbers'));
  await hasView(page, 'numbers');
  let cuts = 0;
  const states = new Set();
  while (!(await page.evaluate(() => !!window.termstream.views.get('numbers').exit))) {
    // Cut, and tell the page the network is back, so it retries at once
    // instead of waiting out its backoff.
    await page.evaluate(() => window.termstream.cutSocket());
    cuts++;
    await waitFor('the page noticed', () => page.evaluate(() => window.termstream.client.state !== 'connected'), 5000, 5);
    states.add(await page.locator('.conn').getAttribute('data-state'));
    await page.evaluate(() => window.dispatchEvent(new Event('online')));
    await waitFor('reconnected', () => page.evaluate(() => window.termstream.client.state === 'connected'), 10000, 20);
    await page.waitForTimeout(50);
  }
  assert.ok(cuts >= 3, `the socket was cut ${cuts} times`);
  assert.ok(states.has('reconnecting') || states.has('connecting'), `the indicator showed a reconnect: ${[...states]}`);
  const text = await bufferText(page, 'numbers');
  const seen = new Map();
  for (const m of text.matchAll(/^n(\d+)$/gm)) seen.set(m[1], (seen.get(m[1]) ?? 0) + 1);
  const missing = [];
  const twice = [];
  for (let i = 1; i <= N; i++) {
    const c = seen.get(String(i)) ?? 0;
    if (c === 0) missing.push(i);
    if (c > 1) twice.push(i);
  }
  assert.deepEqual({ missing: missing.slice(0, 10), twice: twice.slice(0, 10) }, { missing: [], twice: [] }, `after ${cuts} cuts`);
  console.log(`  ${N} lines exactly once through ${cuts} cuts`);
});

test('a hidden terminal gets periodic updates (focus-aware streaming), the full stream once shown, nothing lost or repeated', async ({ server, api, ctx }) => {
  // 200 lines 20 ms apart: once shown, at least 3 s of output remain, which
  // the full stream brings in many chunks and periodic updates (1/s) in few.
  const n = 200;
  await api.create(bash('front'));
  await api.create({ id: 'behind', kind: 'pty', argv: ['bash', '-c', `read go; for i in $(seq 1 ${n}); do echo n-$i.; sleep 0.02; done; sleep 600`], cols: 100, rows: 30 });
  const page = await openPage(ctx, server, '#/s/front');
  await page.evaluate(() => (window.termstream.dispatch({ type: 'open', id: 'behind' }), window.termstream.dispatch({ type: 'activate', id: 'front' })));
  await hasView(page, 'behind');
  const stats = () => page.evaluate(() => ({ ...window.termstream.views.get('behind').stats }));
  const before = await stats();
  await api.input('behind', 'go\n');
  // Hidden and not focused on the server: the lines come in a few updates, not one frame each.
  await waitText(page, 'behind', 'n-40.', 20000);
  const hidden = await stats();
  assert.ok(hidden.frames - before.frames <= 6, `a hidden terminal got ${hidden.frames - before.frames} chunks for 40 lines or more`);
  // Shown: the rest as it comes, line by line.
  await page.evaluate(() => window.termstream.dispatch({ type: 'activate', id: 'behind' }));
  await waitText(page, 'behind', `n-${n}.`, 20000);
  const shown = await stats();
  const text = await bufferText(page, 'behind');
  // Trailing blanks trimmed: lines drawn by a screen snapshot (the page's
  // attach may come after the first lines) carry their cells' spaces.
  const lines = text.split('\n').map((l) => l.trimEnd()).filter((l) => /^n-\d+\.$/.test(l));
  const want = Array.from({ length: n }, (_, i) => `n-${i + 1}.`);
  if (JSON.stringify(lines) !== JSON.stringify(want)) {
    // What the server's log holds, against what the page shows: tells a
    // delivery fault from a page fault.
    const log = await (await fetch(`${server.url}/api/sessions/behind/output?since=0`)).text();
    console.log(JSON.stringify({ page: text.slice(0, 300), log: log.slice(0, 300), stats: await stats() }, null, 1));
  }
  assert.deepEqual(lines, want, 'every line once, in order');
  assert.ok(shown.frames - hidden.frames >= 10, `the shown terminal follows the full stream (${shown.frames - hidden.frames} chunks)`);
});

test('a grid of four busy sessions shows no cross-talk', async ({ server, api, ctx }) => {
  const ids = ['g1', 'g2', 'g3', 'g4'];
  for (const id of ids) {
    await api.create(bash(id));
  }
  const page = await openPage(ctx, server, '#/s/g1');
  for (const id of ids) await page.evaluate((id) => window.termstream.dispatch({ type: 'open', id }), id);
  await page.evaluate(() => window.termstream.dispatch({ type: 'mode', mode: 'grid' }));
  for (const id of ids) await hasView(page, id);
  for (const id of ids) {
    await waitText(page, id, '$ ');
    await api.input(id, `for i in $(seq 1 400); do echo "${id.toUpperCase()}-$i"; done\n`);
  }
  for (const id of ids) await waitText(page, id, `${id.toUpperCase()}-400`);
  for (const id of ids) {
    const text = await bufferText(page, id);
    for (const other of ids) {
      if (other !== id) assert.ok(!text.includes(`${other.toUpperCase()}-`), `${other}'s output in ${id}`);
    }
  }
  assert.equal(await page.locator('.terms[data-mode="grid"] .term:not([hidden])').count(), 4);
  await shot(page, 'grid');
  // WebGL (forced: this Chromium has only a software one) for visible terminals only.
  const forced = await openPage(ctx, server, '?renderer=webgl#/s/g1');
  for (const id of ids) await hasView(forced, id);
  await waitFor('four WebGL contexts in the grid', async () => (await forced.evaluate(() => window.termstream.webglContexts())) === 4);
  // A lost context falls back to the DOM renderer, which keeps drawing.
  await forced.evaluate(() => {
    for (const c of document.querySelectorAll('.term[data-session="g1"] canvas')) c.getContext('webgl2')?.getExtension('WEBGL_lose_context')?.loseContext();
  });
  await waitFor('g1 back on the DOM renderer', async () => (await forced.evaluate(() => window.termstream.webglContexts())) === 3);
  await api.input('g1', 'echo after-loss-$((5*5))\n');
  await waitFor('g1 draws after the loss', () =>
    forced.evaluate(() => document.querySelector('.term[data-session="g1"] .xterm-rows')?.textContent?.includes('after-loss-25')),
  );
  await forced.evaluate(() => window.termstream.dispatch({ type: 'mode', mode: 'tabs' }));
  assert.ok((await forced.evaluate(() => window.termstream.webglContexts())) <= 1, 'hidden tabs give their context back');
});

test('cat of 64 MiB: every line arrives, memory stays bounded, another terminal stays responsive', async ({ server, api, ctx }) => {
  const lines = 1 << 20;
  const file = join(server.dir, 'big.txt');
  // 64-byte lines: "%010d" + 53 characters + "\n".
  const pad = 'x'.repeat(53);
  const chunks = [];
  for (let i = 0; i < lines; i++) chunks.push(`${String(i).padStart(10, '0')}${pad}\n`);
  const body = chunks.join('');
  writeFileSync(file, body);
  assert.equal(body.length, 64 << 20);
  await api.create(bash('echoer'));
  // A 128 KiB high mark (instead of 4 MiB), so the view must stop and catch up by offset.
  const page = await openPage(ctx, server, `?flow=128${process.env.RENDERER ? `&renderer=${process.env.RENDERER}` : ''}#/s/echoer`);
  await hasView(page, 'echoer');
  await waitText(page, 'echoer', '$ ');
  // Whether the header ever showed "catching up" while the view was paused.
  await page.evaluate(() => {
    window.caughtUpShown = false;
    // Only class changes, and a layout read only for the view's own element.
    new MutationObserver((records) => {
      if (window.caughtUpShown || !records.some((r) => r.target.matches?.('.term.catching-up[data-session="cat"]'))) return;
      const b = document.querySelector('.term.catching-up[data-session="cat"] .term-badge');
      if (b && b.getBoundingClientRect().width > 0 && b.textContent === 'catching up') window.caughtUpShown = true;
    }).observe(document.querySelector('.terms'), { subtree: true, attributes: true, attributeFilter: ['class'] });
  });
  await api.create({ id: 'cat', kind: 'command', argv: ['cat', file] });
  await page.evaluate(() => window.termstream.dispatch({ type: 'open', id: 'cat' }));
  await page.evaluate(() => window.termstream.dispatch({ type: 'mode', mode: 'grid' }));
  await hasView(page, 'cat');
  const started = Date.now();
  // Meanwhile a keystroke in the other terminal echoes.
  await page.locator('.term[data-session="echoer"] .term-body').click();
  const t0 = Date.now();
  await page.keyboard.type('echo responsive\n');
  await waitText(page, 'echoer', '\nresponsive', 20000);
  const echoMs = Date.now() - t0;
  const done = await waitFor('all of the cat', () => page.evaluate(() => {
    const v = window.termstream.views.get('cat');
    return v.exit && v.pending === 0 ? { ...v.stats } : null;
  }), 150000, 200);
  const ms = Date.now() - started;
  const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
  console.log(`  64 MiB rendered in ${ms} ms, echo meanwhile ${echoMs} ms, max queued ${(done.maxPending / 1048576).toFixed(1)} MiB, ${done.pauses} pauses, heap ${(heap / 1048576).toFixed(0)} MiB`);
  assert.equal(done.bytes, body.length, 'every byte arrived');
  assert.equal(done.newlines, lines, 'every line arrived');
  assert.ok(done.maxPending <= 1 << 20, `at most the high mark and a few frames queued in xterm.js (${done.maxPending})`);
  assert.ok(done.pauses > 0, 'the view stopped taking output at least once');
  assert.ok(await page.evaluate(() => window.caughtUpShown), 'the header said "catching up" while the view was paused');
  // A million lines outgrew the scrollback: the header says only the last ones are kept here.
  // (Shown, not only present: the note is in the header from the start, hidden.)
  const note = await page.evaluate(() => {
    const el = document.querySelector('.term[data-session="cat"] .term-trimmed');
    return el ? { shown: !el.hidden && el.checkVisibility(), text: el.textContent } : null;
  });
  assert.deepEqual(note, { shown: true, text: 'last 5000 lines' });
  assert.ok(heap < 400 << 20, `the heap stays bounded (${heap})`);
  const last = String(lines - 1).padStart(10, '0');
  await waitText(page, 'cat', last + pad);
  assert.ok(echoMs < 10000, `a keystroke echoed in ${echoMs} ms while the cat ran`);
});

test('focus in one page shows in the other (needs the server focus API, issue 12)', async ({ server, api, ctx, browser }) => {
  if (!(await fetch(server.url + '/api/projects').then((r) => r.ok))) {
    console.log('  skipped: this server has no GET /api/projects (the focus API of issue 12)');
    return;
  }
  await api.create(bash('f1', { project: 'fp' }));
  await api.create(bash('f2', { project: 'fp' }));
  const a = await openPage(ctx, server, '#/s/f1');
  await a.evaluate(() => window.termstream.dispatch({ type: 'open', id: 'f2' }));
  const ctx2 = await browser.newContext();
  const b = await openPage(ctx2, server, '#/s/f1');
  await b.evaluate(() => window.termstream.dispatch({ type: 'open', id: 'f2' }));
  for (const p of [a, b]) for (const id of ['f1', 'f2']) await hasView(p, id);
  await a.click('.term[data-session="f2"] .term-header');
  await waitFor('f2 focused in the other page', () => b.evaluate(() => window.termstream.views.get('f2').focused));
  await a.click('.tab[data-session="f1"]');
  await a.click('.term[data-session="f1"] .term-header');
  await waitFor('f1 focused in the other page', () => b.evaluate(() => window.termstream.views.get('f1').focused));
  await ctx2.close();
});

test('GET /api/projects: a passing failure on load is asked again (the focus API is not given up); a plain refresh does not ask it', async ({ server, api, ctx }) => {
  if (!(await fetch(server.url + '/api/projects').then((r) => r.ok))) {
    console.log('  skipped: this server has no GET /api/projects (the focus API of issue 12)');
    return;
  }
  await api.create(bash('fa', { project: 'fap' }));
  // The page's first ask is answered with a passing 503 (a cluster without Redis for a moment).
  let projects = 0;
  const unavailable = { status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'cluster_unavailable', message: 'try again' } }) };
  await ctx.route((u) => u.pathname === '/api/projects', (r) => (++projects === 1 ? r.fulfill(unavailable) : r.continue()));
  const page = await openPage(ctx, server, '#/s/fa');
  await hasView(page, 'fa');
  await page.evaluate(() => window.termstream.refresh());
  assert.equal(projects, 2, 'asked again at the next refresh');
  // The focus API found: a click on the header focuses the session on the server.
  await page.click('.term[data-session="fa"] .term-header');
  const focused = async () => (await api.call('GET', '/api/projects')).projects.find((p) => p.projectId === 'fap')?.focusedSessions ?? [];
  await waitFor('fa focused on the server', async () => (await focused()).includes('fa'), 5000);
  // Known now: a refresh (a session event's) asks only the list and the viewer counts.
  await page.evaluate(() => window.termstream.refresh());
  await page.evaluate(() => window.termstream.refresh());
  assert.equal(projects, 2, 'no GET /api/projects for a plain refresh');
});

test('a page restored from the back-forward cache reconnects at once and carries on', async ({ server, api }) => {
  await api.create(bash('bfc'));
  const withCache = await launchBrowser({ bfcache: true });
  const page = await openPage(await withCache.newContext(), server, '#/s/bfc');
  await hasView(page, 'bfc');
  await waitText(page, 'bfc', '$ ');
  await page.evaluate(() => {
    window.shows = [];
    window.addEventListener('pageshow', (e) => window.shows.push({ persisted: e.persisted, at: performance.now() }));
    window.termstream.client.onStateChange((s) => s === 'connected' && (window.connectedAt = performance.now()));
  });
  await page.goto(server.url + '/api/sessions');
  await page.goBack({ waitUntil: 'commit' });
  const shows = await waitFor('the page shown again', () => page.evaluate(() => window.shows?.length > 0 && window.shows));
  assert.equal(shows[0].persisted, true, 'restored from the back-forward cache');
  const ms = await waitFor('connected', () => page.evaluate(() => window.connectedAt > window.shows[0].at && window.connectedAt - window.shows[0].at), 5000);
  console.log(`  connected ${ms.toFixed(0)} ms after the page was restored`);
  // At once: the first retry after a dropped socket waits at least 750 ms (1 s, jitter 25 %).
  assert.ok(ms < 700, `reconnected ${ms} ms after pageshow`);
  await api.input('bfc', 'echo back-$((20+1))\n');
  await waitText(page, 'bfc', 'back-21');
  await withCache.close();
});

test('a query the program printed while the socket was down is not answered when the page catches up after the reconnect', async ({ server, api, ctx }) => {
  await api.create(bash('late-query'));
  let down = false;
  let spaced = false;
  await ctx.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    if (down) return ws.close();
    const srv = ws.connectToServer();
    if (!spaced) return;
    // After the reconnect the server's frames reach the page 150 ms apart,
    // in order: the page parses each frame of the replay before the next
    // one comes, as on a slow network.
    let chain = Promise.resolve();
    srv.onMessage((m) => {
      chain = chain.then(() => new Promise((r) => setTimeout(r, 150))).then(() => ws.send(m));
    });
  });
  const page = await openPage(ctx, server, '#/s/late-query');
  await hasView(page, 'late-query');
  await waitText(page, 'late-query', '$ ');
  down = true;
  await page.evaluate(() => window.termstream.cutSocket());
  await waitFor('the page noticed', () => page.evaluate(() => window.termstream.client.state !== 'connected'), 5000, 5);
  // The program asks for the cursor position (DSR) while no viewer is
  // there, prints a marker, and reads up to an `R`: an answer would come
  // only from the page parsing that old output after the reconnect, too
  // late to be meant. No timeout on the read (a slow reconnect would
  // outlast one, and the check pass untested): once the page shows the
  // marker it parsed the query, and an answer it made went into its input
  // before the `R` typed into the page then, which ends the read. A first
  // line and a pause before the query put it in a chunk of its own, so the
  // replay comes in several frames, spaced out by the route (a page that
  // guessed the end of the catch-up from its first frame answered the
  // query in the next).
  await api.input('late-query', 'echo first-$((5*5)); sleep 0.3; printf \'\\e[6n\'; echo asked-$((6*7)); read -rs -d R ans; echo "got:${ans:1}:end"\n');
  await waitFor('the query in the log', async () => (await (await fetch(`${server.url}/api/sessions/late-query/output`)).text()).includes('\x1b[6n'));
  down = false;
  spaced = true;
  await page.evaluate(() => window.dispatchEvent(new Event('online')));
  await waitFor('reconnected', () => page.evaluate(() => window.termstream.client.state === 'connected'));
  await waitText(page, 'late-query', 'asked-42');
  await page.keyboard.type('R');
  const got = await waitFor('the read to end', async () => /got:[^:\n]*:end/.exec(await bufferText(page, 'late-query'))?.[0], 15000);
  assert.equal(got, 'got::end', 'no answer to the old query');
});
