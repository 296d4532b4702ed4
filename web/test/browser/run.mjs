// The browser suite: the page in Debian's Chromium (playwright-core) against
// the real server binary. Run `node test/browser/run.mjs [name-filter]`
// after `cargo build`; screenshots go to target/screenshots/.
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import xtermHeadless from '@xterm/headless';
import { startServer, launchBrowser, rest, waitFor, waitText, bufferText, shot } from './harness.mjs';

const { Terminal: Headless } = xtermHeadless;
const tests = [];
const test = (name, f) => tests.push({ name, f });

/** A page on `server` at `hash`, with the app started. */
async function openPage(ctx, server, hash = '#/', viewport = { width: 1280, height: 800 }) {
  const page = await ctx.newPage({ viewport });
  page.on('pageerror', (e) => console.error(`  [pageerror] ${e.message}`));
  page.on('dialog', (d) => void d.accept());
  await page.goto(server.url + '/' + hash);
  await waitFor('the app', () => page.evaluate(() => !!window.termstream?.started));
  return page;
}

const hasView = (page, id) => waitFor(`terminal ${id}`, () => page.evaluate((id) => window.termstream.views.has(id), id));

/** The screen of a snapshot, rendered in a headless xterm.js, lines right-trimmed. */
async function renderSnapshot(snap) {
  const t = new Headless({ cols: snap.cols, rows: snap.rows, allowProposedApi: true, scrollback: 1000 });
  await new Promise((r) => t.write(snap.data, r));
  const b = t.buffer.active;
  const lines = [];
  for (let i = b.baseY; i < b.baseY + t.rows; i++) lines.push((b.getLine(i)?.translateToString(true) ?? '').trimEnd());
  t.dispose();
  return lines.join('\n');
}

const bash = (id, extra = {}) => ({ id, kind: 'pty', argv: ['bash', '--norc', '--noprofile', '-i'], env: { PS1: '$ ' }, cols: 100, rows: 30, ...extra });

test('type echo hello and see it; the list shows the session', async ({ server, api, ctx }) => {
  await api.create(bash('hello'));
  await api.create({ id: 'listed-cmd', kind: 'command', command: 'echo done; exit 2', project: 'builds' });
  const page = await openPage(ctx, server);
  await waitFor('the list', () => page.locator('tr[data-session="listed-cmd"][data-status="exited"]').count());
  assert.match(await page.locator('tr[data-session="listed-cmd"] .exit').innerText(), /exit 2/);
  await shot(page, 'list');
  await page.click('tr[data-session="hello"]');
  await page.locator('.term[data-session="hello"] .term-body').click();
  await hasView(page, 'hello');
  assert.equal(new URL(page.url()).hash, '#/s/hello');
  await waitText(page, 'hello', '$ ');
  await page.keyboard.type('echo hello\n');
  await waitFor('hello echoed', async () => /\nhello\n/.test(await bufferText(page, 'hello')));
  await shot(page, 'tabs');
  // Search: Ctrl+Shift+F, a word, Enter selects it.
  await page.keyboard.press('Control+Shift+F');
  await page.keyboard.type('hello');
  await page.keyboard.press('Enter');
  await waitFor('the match selected', () => page.evaluate(() => window.termstream.views.get('hello').term.getSelection() === 'hello'));
  await page.keyboard.press('Escape');
  // Closing the tab while a terminal has the keyboard asks first.
  page.removeAllListeners('dialog');
  const asked = new Promise((resolve) => page.once('dialog', (d) => (resolve(d.type()), void d.accept())));
  await page.close({ runBeforeUnload: true });
  assert.equal(await asked, 'beforeunload');
  // A new session appears in another page's list without a reload.
  const other = await openPage(ctx, server);
  await api.create({ id: 'late', kind: 'command', command: 'true' });
  await waitFor('the new session listed live', () => other.locator('tr[data-session="late"]').count());
});

test('viewer counts in the list follow attaches and detaches live', async ({ server, api, ctx, browser }) => {
  await api.create(bash('watched'));
  const list = await openPage(ctx, server);
  const cell = list.locator('tr[data-session="watched"] td.viewers');
  await waitFor('no viewers', async () => (await cell.innerText()) === '0');
  // Another browser opens the session, then a second one: the list counts them without a reload.
  const others = [];
  for (const n of [1, 2]) {
    const c = await browser.newContext();
    others.push(c);
    const p = await openPage(c, server, '#/s/watched');
    await hasView(p, 'watched');
    await waitFor(`${n} viewer(s) in the list`, async () => (await cell.innerText()) === String(n));
  }
  await others[0].close();
  await waitFor('1 viewer after one page closed', async () => (await cell.innerText()) === '1');
  await others[1].close();
  await waitFor('no viewers after both closed', async () => (await cell.innerText()) === '0');
});

test('start, terminate and delete from the page (dark theme)', async ({ server, api, browser }) => {
  const ctx = await browser.newContext({ colorScheme: 'dark' });
  const page = await openPage(ctx, server);
  await page.click('.new-btn');
  await page.selectOption('.create-form select[name="kind"]', 'command');
  await page.fill('.create-form input[name="program"]', 'echo via-dialog; sleep 600');
  await page.fill('.create-form input[name="project"]', 'dialogs');
  await page.click('.create-form button[type="submit"]');
  const id = await waitFor('a terminal route', () => /^#\/s\/(.+)$/.exec(new URL(page.url()).hash)?.[1]);
  await hasView(page, id);
  await waitText(page, id, 'via-dialog');
  assert.equal((await api.get(id)).project, 'dialogs');
  await shot(page, 'dark');
  await page.click(`.term[data-session="${id}"] .tbtn-terminate`);
  await waitFor('terminated', () => page.evaluate((id) => !!window.termstream.views.get(id).exit, id));
  await page.click('.nav-link[href="#/"]');
  const row = page.locator(`tr[data-session="${id}"]`);
  await waitFor('the row shows the end', async () => (await row.getAttribute('data-status')) !== 'running');
  await row.locator('button', { hasText: 'Delete' }).click();
  await waitFor('the row is gone', async () => (await row.count()) === 0);
  await ctx.close();
});

test('a command session shows stderr in red and its exit code', async ({ server, api, ctx }) => {
  await api.create({ id: 'cmd', kind: 'command', command: 'echo to-stdout; echo to-stderr >&2; exit 3' });
  const page = await openPage(ctx, server, '#/s/cmd');
  await hasView(page, 'cmd');
  await waitText(page, 'cmd', '[exit 3]');
  const colours = await page.evaluate(() => {
    const t = window.termstream.views.get('cmd').term;
    const b = t.buffer.active;
    const out = {};
    for (let y = 0; y < b.length; y++) {
      const line = b.getLine(y);
      const text = line.translateToString(true);
      for (const word of ['to-stdout', 'to-stderr']) {
        const x = text.indexOf(word);
        if (x >= 0) {
          const c = line.getCell(x);
          out[word] = { palette: c.isFgPalette(), colour: c.getFgColor() };
        }
      }
    }
    return out;
  });
  assert.deepEqual(colours['to-stderr'], { palette: true, colour: 1 }, 'stderr is red (palette 1)');
  assert.notDeepEqual(colours['to-stdout'], { palette: true, colour: 1 }, 'stdout is not red');
  assert.equal(await page.locator('.term[data-session="cmd"]').getAttribute('data-exit'), '3');
});

test('a full-screen program (vim): resized while typing and reloaded, the page shows the same screen as the server', async ({ server, api, ctx }) => {
  const id = 'vim';
  const file = join(server.dir, 'poem.txt');
  writeFileSync(file, Array.from({ length: 60 }, (_, i) => `line ${i + 1}: the quick brown fox ${'*'.repeat(i % 17)}`).join('\n') + '\n');
  // A short escape delay: Escape leaves insert mode 20 ms after it is typed.
  await api.create({ id, kind: 'pty', argv: ['vim', '-u', 'NONE', '-N', '-n', '--cmd', 'set ttimeout ttimeoutlen=20', file], cols: 100, rows: 30 });
  // A slow page (as on a busy CI machine): output queues in xterm.js, so a
  // size taken at once instead of at its place in the stream shows (issue 15).
  const page = await openPage(ctx, server, `#/s/${id}`);
  await hasView(page, id);
  await waitText(page, id, 'line 1: the quick');
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Emulation.setCPUThrottlingRate', { rate: 10 });
  // The page's own resizes (the window changes) between edits.
  const sizes = [[1160, 740], [1290, 670], [900, 600], [1030, 810]];
  for (const [j, [width, height]] of sizes.entries()) {
    await page.setViewportSize({ width, height });
    await page.keyboard.type(`${10 + j}Go+${j}`);
    await page.keyboard.press('Escape');
  }
  await waitText(page, id, '+3');
    const screen = async (p) => (await bufferText(p, id, { screenOnly: true })).split('\n').map((l) => l.trimEnd()).join('\n');
  // The server's screen and the page's agree once the output has settled.
  let last;
  const settled = await waitFor('page and server agree', async () => {
    const snap = await api.snapshot(id);
    const [mine, theirs] = [await screen(page), await renderSnapshot(snap)];
    last = { mine, theirs, cols: snap.cols, rows: snap.rows };
    // Escape leaves insert mode only after vim's escape delay.
    return mine === theirs && !mine.includes('-- INSERT --') && mine;
  }, 20000).catch((e) => {
    console.log(JSON.stringify(last, null, 1));
    throw e;
  });
  await cdp.send('Emulation.setCPUThrottlingRate', { rate: 1 });
  await page.reload();
  await waitFor('the app again', () => page.evaluate(() => !!window.termstream?.started));
  await hasView(page, id);
  let after;
  await waitFor('the same screen after reload', async () => (after = await screen(page)) === settled).catch(async (e) => {
    const snap = await api.snapshot(id);
    console.log(JSON.stringify({ settled, after, server: await renderSnapshot(snap), size: [snap.cols, snap.rows] }, null, 1));
    throw e;
  });
  // And it carries on live.
  await page.keyboard.type('Oand live after reload');
  await waitText(page, id, 'and live after reload');
  await page.keyboard.press('Escape');
});

test('OSC 52 reaches the clipboard; emoji and CJK widths agree with the server', async ({ server, api, browser }) => {
  const ctx = await browser.newContext({ permissions: ['clipboard-read', 'clipboard-write'] });
  await api.create(bash('wide'));
  const page = await openPage(ctx, server, '#/s/wide');
  await hasView(page, 'wide');
  await waitText(page, 'wide', '$ ');
  const b64 = Buffer.from('copied by osc52').toString('base64');
  await api.input('wide', `printf '\\033]52;c;${b64}\\a'; echo osc-sent\n`);
  await waitText(page, 'wide', '\nosc-sent');
  await waitFor('the clipboard', () => page.evaluate(() => navigator.clipboard.readText().then((t) => t === 'copied by osc52')));
  // The cursor after wide characters (no newline) stands where the server's screen model has it.
  await api.input('wide', `clear; printf '\\u754c\\u9762 \\U0001F600\\U0001F680 x'; sleep 600\n`);
  await waitText(page, 'wide', ' x');
  let last;
  await waitFor('the same cursor', async () => {
    const mine = await page.evaluate(() => {
      const b = window.termstream.views.get('wide').term.buffer.active;
      return [b.cursorX, b.cursorY];
    });
    const snap = await api.snapshot('wide');
    const t = new Headless({ cols: snap.cols, rows: snap.rows, allowProposedApi: true });
    await new Promise((r) => t.write(snap.data, r));
    const theirs = [t.buffer.active.cursorX, t.buffer.active.cursorY];
    t.dispose();
    last = { mine, theirs };
    return mine[0] === theirs[0] && mine[1] === theirs[1] && mine[0] > 0;
  }).catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(last)}`);
  });
  await ctx.close();
});

test('two pages on one session: typing in one appears in the other', async ({ server, api, ctx, browser }) => {
  await api.create(bash('shared'));
  const a = await openPage(ctx, server, '#/s/shared');
  const ctx2 = await browser.newContext();
  const b = await openPage(ctx2, server, '#/s/shared');
  await hasView(a, 'shared');
  await hasView(b, 'shared');
  await waitText(a, 'shared', '$ ');
  await a.bringToFront();
  await a.keyboard.type('echo typed-in-a-$((6*7))\n');
  await waitText(b, 'shared', 'typed-in-a-42');
  await b.bringToFront();
  await b.keyboard.type('echo typed-in-b-$((6*8))\n');
  await waitText(a, 'shared', 'typed-in-b-48');
  await ctx2.close();
});

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
  const lines = (await bufferText(page, 'behind')).split('\n').filter((l) => /^n-\d+\.$/.test(l));
  assert.deepEqual(lines, Array.from({ length: n }, (_, i) => `n-${i + 1}.`), 'every line once, in order');
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

test('a phone: the key row sends Ctrl-C to a running sleep', async ({ server, api, browser }) => {
  await api.create(bash('phone', { cols: 40, rows: 20 }));
  const ctx = await browser.newContext({ viewport: { width: 390, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const page = await openPage(ctx, server, '#/s/phone', { width: 390, height: 740 });
  await hasView(page, 'phone');
  await waitText(page, 'phone', '$ ');
  assert.ok(await page.locator('.keyrow').isVisible(), 'the key row shows on a phone');
  // Every label fits its key, and no two keys overlap.
  const keys = await page.evaluate(() =>
    [...document.querySelectorAll('.keyrow .key')].map((b) => {
      const r = b.getBoundingClientRect();
      return { key: b.dataset.key, left: r.left, right: r.right, fits: b.scrollWidth <= b.clientWidth };
    }),
  );
  for (const [i, k] of keys.entries()) {
    assert.ok(k.fits, `the label of ${k.key} fits its key`);
    if (i > 0) assert.ok(k.left >= keys[i - 1].right, `${k.key} does not overlap ${keys[i - 1].key}`);
  }
  await page.locator('.term[data-session="phone"] .term-body').tap();
  await page.keyboard.type('sleep 1000\n');
  await waitText(page, 'phone', 'sleep 1000');
  await page.locator('.key[data-key="Ctrl"]').tap();
  assert.equal(await page.locator('.key[data-key="Ctrl"]').getAttribute('aria-pressed'), 'true');
  await page.keyboard.type('c');
  await page.keyboard.type('echo status-$?\n');
  await waitText(page, 'phone', 'status-130');
  await shot(page, 'phone');
  await ctx.close();
});

test('a phone: the terminal fits above the on-screen keyboard (visualViewport)', async ({ server, api, browser }) => {
  await api.create(bash('vv', { cols: 40, rows: 20 }));
  const ctx = await browser.newContext({ viewport: { width: 390, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  // Headless Chromium has no on-screen keyboard: the visual viewport is made to
  // shrink as when one opens (the layout viewport stays as it is).
  await ctx.addInitScript(() => {
    const vv = window.visualViewport;
    let height = null;
    Object.defineProperty(vv, 'height', { get: () => height ?? window.innerHeight });
    window.openKeyboard = (h) => {
      height = h;
      vv.dispatchEvent(new Event('resize'));
    };
  });
  const page = await openPage(ctx, server, '#/s/vv', { width: 390, height: 740 });
  await hasView(page, 'vv');
  await waitText(page, 'vv', '$ ');
  const rowsBefore = await waitFor('fitted to the phone', async () => {
    const s = await api.get('vv');
    return s.rows > 20 && s.rows;
  });
  await page.evaluate(() => window.openKeyboard(400));
  const rowsAfter = await waitFor('fitted above the keyboard', async () => {
    const s = await api.get('vv');
    return s.rows < rowsBefore && s.rows;
  });
  const keyrowBottom = await page.evaluate(() => document.querySelector('.keyrow').getBoundingClientRect().bottom);
  assert.ok(keyrowBottom <= 400, `the key row stays above the keyboard (bottom at ${keyrowBottom})`);
  console.log(`  rows ${rowsBefore} -> ${rowsAfter} with the keyboard open`);
  await shot(page, 'phone-keyboard');
  await ctx.close();
});

test('full screen locks the keyboard where the browser can (Ctrl+W, Ctrl+T reach the program)', async ({ server, api, ctx }) => {
  await api.create(bash('fs'));
  await ctx.addInitScript(() => {
    window.locks = [];
    const kb = navigator.keyboard;
    if (!kb) return;
    const lock = kb.lock.bind(kb);
    const unlock = kb.unlock.bind(kb);
    kb.lock = (keys) => (window.locks.push('lock'), lock(keys));
    kb.unlock = () => (window.locks.push('unlock'), unlock());
  });
  const page = await openPage(ctx, server, '#/s/fs');
  await hasView(page, 'fs');
  assert.ok(await page.evaluate(() => typeof navigator.keyboard?.lock === 'function'), 'this Chromium has navigator.keyboard.lock');
  await page.click('.term[data-session="fs"] .tbtn-fullscreen');
  await waitFor('full screen', () => page.evaluate(() => document.fullscreenElement?.dataset.session === 'fs'));
  await waitFor('the keyboard locked', () => page.evaluate(() => window.locks.includes('lock')));
  await page.evaluate(() => document.exitFullscreen());
  await waitFor('unlocked on leaving full screen', () => page.evaluate(() => window.locks.at(-1) === 'unlock'));
});

test('replay plays a recording to its end', async ({ server, api, ctx }) => {
  await api.create({ id: 'rec', kind: 'pty', argv: ['bash', '-c', 'for i in 1 2 3; do echo "frame $i"; sleep 0.2; done'], cols: 80, rows: 20 });
  await waitFor('rec exited', async () => (await api.get('rec')).status === 'exited');
  const page = await openPage(ctx, server, '#/replay/rec');
  await waitFor('the replay ends', () => page.locator('.view-replay[data-state="ended"]').count(), 20000);
  // The player says it ended as it takes the last event; its screen shows
  // that event at its next paint.
  let text = '';
  const drawn = await waitFor('the last frame is drawn', async () => /frame 3/.test((text = await page.locator('.replay-stage').innerText())), 5000).then(() => true, () => false);
  assert.ok(drawn, `the replay's screen lacks its last frame: ${JSON.stringify(text)}`);
  await shot(page, 'replay');
});

test('the monitor previews every session: each card shows its own screen, legibly', async ({ server, api, ctx }) => {
  const ids = ['mon-a', 'mon-b', 'mon-c', 'mon-d', 'mon-e'];
  for (const id of ids) await api.create({ id, kind: 'pty', argv: ['bash', '-c', `printf "screen of %s\\n" ${id}; sleep 600`], cols: 80, rows: 24 });
  await api.create({ id: 'mon-cmd', kind: 'command', command: 'echo output of mon-cmd; sleep 600' });
  // From the list to the monitor, as a person goes: the cards exist before the monitor shows.
  const page = await openPage(ctx, server, '#/');
  await waitFor('the list', () => page.locator('tr[data-session="mon-cmd"]').count());
  await page.click('.nav-link[href="#/monitor"]');
  const all = [...ids, 'mon-cmd'];
  const previews = () => page.evaluate((all) => Object.fromEntries(all.map((id) => [id, document.querySelector(`.card[data-session="${id}"] .preview`)?.textContent ?? ''])), all);
  let last;
  await waitFor('every preview shows its own marker', async () => {
    last = await previews();
    return ids.every((id) => last[id].includes(`screen of ${id}`)) && last['mon-cmd'].includes('output of mon-cmd');
  }, 20000).catch((e) => {
    console.log(JSON.stringify(last));
    throw e;
  });
  for (const id of all) {
    const others = all.filter((o) => o !== id && last[id].split('\n').some((l) => [`screen of ${o}`, `output of ${o}`].includes(l.trim())));
    assert.deepEqual(others, [], `${id}'s preview shows only its own screen`);
  }
  // Legible: the marker's text as drawn (transforms included) is at least 10 px high.
  const look = await page.evaluate(() => {
    const p = document.querySelector('.card[data-session="mon-a"] .preview');
    const walk = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const at = n.textContent.indexOf('screen of mon-a');
      if (at < 0) continue;
      const r = document.createRange();
      r.setStart(n, at);
      r.setEnd(n, at + 'screen of mon-a'.length);
      const box = r.getBoundingClientRect();
      return { height: box.height, width: box.width };
    }
    return null;
  });
  assert.ok(look && look.height >= 10, `legible preview text: ${JSON.stringify(look)}`);
  await shot(page, 'monitor');
  for (const id of all) await api.terminate(id);
});

test('events: notifications as toasts, task status and activity in the log', async ({ server, api, ctx }) => {
  const page = await openPage(ctx, server);
  await waitFor('connected', () => page.evaluate(() => window.termstream.client.state === 'connected'));
  // Subscribed once connected: retry until a receiver is counted.
  await waitFor('a receiver', async () => (await api.event({ type: 'activity_log', level: 'info', message: 'deploy started' })).receivers > 0);
  await api.event({ type: 'notification', title: 'Build', message: 'build 42 passed', priority: 'high' });
  await api.event({ type: 'task_status', taskId: 't-7', status: 'running' });
  await waitFor('a toast', () => page.locator('.toast', { hasText: 'build 42 passed' }).count());
  await page.click('.events-btn');
  await waitFor('the log lines', async () => {
    const t = await page.locator('.log-lines').innerText();
    return t.includes('deploy started') && t.includes('t-7 running');
  });
});

/** Tests with their own server with tokens. */
const secured = [];
const securedTest = (name, f) => secured.push({ name, f });

securedTest('without a credential the page says how to log in', async ({ server, ctx }) => {
  const page = await ctx.newPage();
  await page.goto(server.url + '/');
  await waitFor('the login help', () => page.locator('.login').count());
  assert.match(await page.locator('.login').innerText(), /login-codes/);
  await shot(page, 'login');
});

securedTest('a read-only share link: the viewer sees output and its typing reaches nothing', async ({ server, ctx, browser, admin }) => {
  await admin.create({ id: 'ro', kind: 'pty', project: 'web', argv: ['bash', '--norc', '--noprofile', '-i'], env: { PS1: '$ ' }, cols: 90, rows: 24 });
  // The owner logs in with a login code of the admin token...
  const { path } = await admin.loginCode({});
  const owner = await ctx.newPage();
  await owner.goto(server.url + path + '#/s/ro');
  await waitFor('the owner app', () => owner.evaluate(() => !!window.termstream?.views.has('ro')));
  await waitText(owner, 'ro', '$ ');
  // ...and shares a read-only link.
  await owner.click('.term[data-session="ro"] .tbtn-share');
  const link = await waitFor('a link', () => owner.locator('.share-box').getAttribute('data-link'));
  assert.match(link, /\/login\?code=lc_[0-9a-f]+#\/s\/ro$/);
  const viewerCtx = await browser.newContext();
  const viewer = await viewerCtx.newPage();
  await viewer.goto(link);
  await waitFor('the viewer app', () => viewer.evaluate(() => !!window.termstream?.views.has('ro')));
  await owner.bringToFront();
  await owner.click('.share-box button');
  await owner.locator('.term[data-session="ro"] .term-body').click();
  await owner.keyboard.type('echo owner-$((2+3))\n');
  await waitText(viewer, 'ro', 'owner-5');
  await viewer.bringToFront();
  await viewer.locator('.term[data-session="ro"] .term-body').click();
  await viewer.keyboard.type('echo viewer-typed\n');
  await waitFor('read-only shown', () => viewer.locator('.tab .ro').count());
  await owner.bringToFront();
  await owner.locator('.term[data-session="ro"] .term-body').click();
  await owner.keyboard.type('echo marker-$((3+4))\n');
  await waitText(viewer, 'ro', 'marker-7');
  assert.ok(!(await bufferText(owner, 'ro')).includes('viewer-typed'), "the viewer's typing reached the program");
  await viewerCtx.close();
});

// ---- runner ---------------------------------------------------------------

const filter = process.argv[2] ?? '';
const started = Date.now();
let failed = 0;
const browser = await launchBrowser();
async function runAll(list, server, extra) {
  for (const t of list) {
    if (!t.name.includes(filter)) continue;
    const ctx = await browser.newContext();
    const t0 = Date.now();
    try {
      await t.f({ server, api: extra.api, ctx, browser, ...extra });
      console.log(`ok   ${t.name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${t.name} (${Date.now() - t0} ms)\n  ${e.stack ?? e}`);
      if (server.stderr()) console.log(`  server stderr: ${server.stderr().slice(-2000)}`);
    } finally {
      await ctx.close().catch(() => {});
    }
  }
}
const open = await startServer();
try {
  await runAll(tests, open, { api: rest(open.url) });
} finally {
  await open.stop();
}
const adminToken = 'tok_' + randomBytes(24).toString('hex');
const sha = createHash('sha256').update(adminToken).digest('hex');
const withTokens = await startServer({ config: `[[tokens]]\nname = "admin"\nsha256 = "${sha}"\nadmin = true\n` });
try {
  const admin = rest(withTokens.url, adminToken);
  await runAll(secured, withTokens, { api: admin, admin });
} finally {
  await withTokens.stop();
}
await browser.close();
console.log(`${failed ? 'FAILED' : 'passed'}: browser suite in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(failed ? 1 : 0);
