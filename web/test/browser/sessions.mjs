// Checks of the session list and a session's life in the page: create,
// type, search, close; viewer counts; start, terminate and delete from the
// page; a command session's stderr and exit code; a session deleted while
// its view was paused or the socket was down; input the server drops.
import { strict as assert } from 'node:assert';
import { startServer, rest, openPage, hasView, bash, suite, waitFor, waitText, bufferText, shot } from './harness.mjs';

const [checks, test] = suite();
/** A duration as the page writes it: 850ms, 12s, 3m 04s, 2h 05m. */
const DURATION = String.raw`(\d+(ms|s)|\d+m \d{2}s|\d+h \d{2}m)`;
export { checks };

test('type echo hello and see it; the list shows the session', async ({ server, api, ctx }) => {
  await api.create(bash('hello'));
  await api.create({ id: 'listed-cmd', kind: 'command', command: 'echo done; exit 2', project: 'builds' });
  const page = await openPage(ctx, server);
  await waitFor('the list', () => page.locator('tr[data-session="listed-cmd"][data-status="exited"]').count());
  assert.match(await page.locator('tr[data-session="listed-cmd"] .exit').innerText(), /exit 2/);
  // A failed job stands out from a passed one: its exit in the theme's --danger.
  // (Read in one step in the page: the list may draw the row again between
  // two steps, and a row taken out of the page has no computed colour.)
  const colours = () =>
    page.evaluate(() => {
      const e = document.querySelector('tr[data-session="listed-cmd"] .exit');
      const probe = document.body.appendChild(Object.assign(document.createElement('span'), { style: 'color: var(--danger)' }));
      const c = getComputedStyle(probe).color;
      probe.remove();
      return [e && getComputedStyle(e).color, c];
    });
  let seen;
  await waitFor('the failed exit in --danger', async () => ((seen = await colours()), seen[0] === seen[1]), 5000).catch(() => {
    assert.fail(`the failed exit's colour ${seen?.[0]} is not --danger's ${seen?.[1]}`);
  });
  await shot(page, 'list');
  await page.click('tr[data-session="hello"]');
  await page.locator('.term[data-session="hello"] .term-body').click();
  await hasView(page, 'hello');
  assert.equal(new URL(page.url()).hash, '#/s/hello');
  await waitText(page, 'hello', '$ ');
  await page.keyboard.type('echo hello\n');
  await waitFor('hello echoed', async () => /\nhello\n/.test(await bufferText(page, 'hello')));
  await shot(page, 'tabs');
  // The page's shortcuts work while the terminal has the keyboard, and do
  // not reach the program (`cat -v` shows what does); Alt+Shift+→ with one
  // terminal open has nothing to switch to, and goes to the program.
  // Waiting for `go-42` means bash has handed the cooked tty to the line
  // (it does so before running it), so Enter below reaches cat as \n.
  await page.keyboard.type('echo go-$((6*7)); cat -v\n');
  await waitText(page, 'hello', '\ngo-42');
  await page.keyboard.press('Alt+Shift+G');
  await waitFor('grid mode by Alt+Shift+G', async () => (await page.locator('.terms').getAttribute('data-mode')) === 'grid');
  await page.keyboard.press('Alt+Shift+G');
  await waitFor('tabs again', async () => (await page.locator('.terms').getAttribute('data-mode')) === 'tabs');
  assert.ok(await page.evaluate(() => !!document.activeElement?.closest('.term[data-session="hello"]')), 'the terminal keeps the keyboard');
  await page.keyboard.press('Alt+Shift+ArrowRight');
  await page.keyboard.press('Enter');
  // (Echoed by the tty, then printed by cat.)
  await waitText(page, 'hello', '\n^[[1;4C\n');
  assert.ok(!(await bufferText(page, 'hello')).includes('^[G'), 'Alt+Shift+G did not reach the program');
  await page.keyboard.press('Control+C');
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
  // The server out of reach: the form says so (not the browser's "Failed to fetch").
  await page.route('**/api/sessions', (r) => r.abort('connectionrefused'));
  await page.click('.create-form button[type="submit"]');
  await waitFor('the form error', async () => /cannot reach the server/.test(await page.locator('.create-form .form-error').innerText()));
  await page.unroute('**/api/sessions');
  await page.click('.create-form button[type="submit"]');
  const id = await waitFor('a terminal route', () => /^#\/s\/(.+)$/.exec(new URL(page.url()).hash)?.[1]);
  await hasView(page, id);
  await waitText(page, id, 'via-dialog');
  assert.equal((await api.get(id)).project, 'dialogs');
  await shot(page, 'dark');
  await page.click(`.term[data-session="${id}"] .tbtn-terminate`);
  await waitFor('terminated', () => page.evaluate((id) => !!window.termstream.views.get(id).exit, id));
  // The header says how it ended and for how long, and offers no Stop.
  const term = page.locator(`.term[data-session="${id}"]`);
  assert.match(await term.locator('.term-header').innerText(), new RegExp(`SIG[A-Z]+ · ${DURATION}`));
  assert.ok(!(await term.locator('.tbtn-terminate').isVisible()), 'no Stop button for an ended session');
  await page.click('.nav-link[href="#/"]');
  const row = page.locator(`tr[data-session="${id}"]`);
  await waitFor('the row shows the end', async () => (await row.getAttribute('data-status')) !== 'running');
  await row.locator('button', { hasText: 'Delete' }).click();
  await waitFor('the row is gone', async () => (await row.count()) === 0);
  // Its open terminal says it was deleted, and keeps its output.
  await waitText(page, id, '[session deleted]');
  assert.match(await term.locator('.term-end').textContent(), /deleted$/);
  assert.match(await bufferText(page, id), /via-dialog/);
  // Loaded again, the page drops the deleted session's tab (it would show nothing).
  await page.reload();
  await waitFor('the app again', () => page.evaluate(() => !!window.termstream?.started));
  await waitFor('no tab of the deleted session', async () => (await page.locator(`.tab[data-session="${id}"]`).count()) === 0 && !(await page.evaluate(() => window.termstream.layout.open.length)));
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
  assert.match(await page.locator('.term[data-session="cmd"] .term-header').innerText(), new RegExp(`exit 3 · ${DURATION}`), 'the header shows the exit code and duration');
});

test('a session terminated and deleted at once while its terminal is hidden: the header says how it ended and that it was deleted', async ({ server, api, ctx }) => {
  await api.create(bash('gone-hidden'));
  await api.create(bash('gone-front'));
  const page = await openPage(ctx, server, '#/s/gone-hidden');
  await hasView(page, 'gone-hidden');
  await waitText(page, 'gone-hidden', '$ ');
  await page.evaluate(() => window.termstream.go({ view: 'terminal', id: 'gone-front' }));
  await hasView(page, 'gone-front');
  // Hidden, the view follows the session with periodic updates: the list's
  // `deleted` comes before the view's own exit.
  await api.terminate('gone-hidden');
  await api.call('DELETE', '/api/sessions/gone-hidden');
  const end = await waitFor('the exit and the deletion in the header', () =>
    page.evaluate(() => {
      const v = window.termstream.views.get('gone-hidden');
      const t = v.el.querySelector('.term-end').textContent;
      return v.exit && v.info.status === 'deleted' && t;
    }),
  );
  assert.match(end, new RegExp(`^SIG[A-Z]+ · ${DURATION} · deleted$`));
  // Whatever comes last, the marker is written once.
  await api.create({ id: 'gone-after', kind: 'command', command: 'true' });
  await waitFor('a later event', () => page.locator('tr[data-session="gone-after"]').count());
  assert.equal((await bufferText(page, 'gone-hidden')).split('[session deleted]').length - 1, 1, 'one [session deleted]');
  await page.evaluate(() => window.termstream.go({ view: 'terminal', id: 'gone-hidden' }));
  await shot(page, 'deleted-hidden');
});

test('a session deleted and made again under its id gets a fresh terminal in its open tab', async ({ server, api, ctx }) => {
  await api.create(bash('again'));
  const page = await openPage(ctx, server, '#/s/again');
  await hasView(page, 'again');
  await waitText(page, 'again', '$ ');
  await api.call('DELETE', '/api/sessions/again');
  await waitText(page, 'again', '[session deleted]');
  // Automation re-uses the id: the tab shows the new session, and takes typing.
  await api.create(bash('again'));
  await waitFor('a fresh view', () =>
    page.evaluate(() => {
      const v = window.termstream.views.get('again');
      return v && !v.deleted && !('ended' in v.el.dataset) && !v.term.options.disableStdin;
    }),
  );
  await waitText(page, 'again', '$ ');
  await page.locator('.term[data-session="again"] .term-body').click();
  await page.keyboard.type('echo second-$((1+1))\n');
  await waitText(page, 'again', 'second-2');
  assert.ok(!(await bufferText(page, 'again')).includes('[session deleted]'), 'nothing of the old view');
  assert.equal(await page.locator('.term[data-session="again"] .term-end').textContent(), '');
  assert.equal(await page.locator('.term[data-session="again"]').count(), 1, 'one view');
});

test('a view paused by flow control shows its session deleted as soon as the list says so, not on resume', async ({ server, api, ctx }) => {
  await api.create(bash('paused-gone'));
  const page = await openPage(ctx, server, '#/s/paused-gone');
  await hasView(page, 'paused-gone');
  await waitText(page, 'paused-gone', '$ ');
  // Paused as flow control pauses a view that fell behind: detached, its
  // position kept, until what it holds is parsed.
  await page.evaluate(() => window.termstream.views.get('paused-gone').pause());
  assert.ok(await page.locator('.term[data-session="paused-gone"].catching-up').count(), 'paused');
  await api.call('DELETE', '/api/sessions/paused-gone');
  await waitFor('the list without the session', () => page.evaluate(() => !window.termstream.sessions.has('paused-gone')));
  await waitFor('the paused view marked deleted', () => page.evaluate(() => window.termstream.views.get('paused-gone').deleted), 5000);
  await waitText(page, 'paused-gone', '[session deleted]', 5000);
  assert.equal(await page.locator('.term[data-session="paused-gone"] .term-end').textContent(), 'deleted');
  assert.equal(await page.evaluate(() => window.termstream.views.get('paused-gone').term.options.disableStdin), true);
  assert.equal(await page.locator('.term[data-session="paused-gone"].catching-up').count(), 0, 'no more "catching up"');
  await shot(page, 'deleted-paused');
  // Resumed (what it held parsed), it does not attach again: nothing more is written.
  await page.evaluate(() => window.termstream.views.get('paused-gone').resume());
  assert.equal(await page.evaluate(() => window.termstream.views.get('paused-gone').handle), null, 'not attached again');
  await api.create({ id: 'paused-gone-after', kind: 'command', command: 'true' });
  await waitFor('a later event', () => page.evaluate(() => window.termstream.sessions.has('paused-gone-after')));
  const text = await bufferText(page, 'paused-gone');
  assert.equal(text.split('[session deleted]').length - 1, 1, 'one [session deleted]');
  assert.ok(!text.includes('[session detached'), text);
});

test('a session deleted while the socket is down: after the reconnect its tab says so, and takes no typing', async ({ server, api, ctx }) => {
  await api.create(bash('lost'));
  // The page's sockets go through this route: while `down`, each attempt
  // to connect is closed at once, so the deletion's event never reaches it.
  let down = false;
  await ctx.routeWebSocket(/\/ws(\?|$)/, (ws) => (down ? ws.close() : ws.connectToServer()));
  const page = await openPage(ctx, server, '#/s/lost');
  await hasView(page, 'lost');
  await waitText(page, 'lost', '$ ');
  down = true;
  await page.evaluate(() => window.termstream.cutSocket());
  await waitFor('the page noticed', () => page.evaluate(() => window.termstream.client.state !== 'connected'));
  await api.call('DELETE', '/api/sessions/lost');
  down = false;
  await page.evaluate(() => window.dispatchEvent(new Event('online')));
  await waitFor('reconnected', () => page.evaluate(() => window.termstream.client.state === 'connected'));
  // The re-attach is refused (`session_not_found` for `session.attach`,
  // after the server's attach wait): the view is the deleted session's.
  await waitText(page, 'lost', '[session deleted]');
  assert.deepEqual(
    await page.evaluate(() => {
      const v = window.termstream.views.get('lost');
      return [v.info.status, v.term.options.disableStdin];
    }),
    ['deleted', true],
  );
});

test('a session that ended, then the socket reconnected, then deleted: its tab says so (the server holds no attachment of it any more)', async ({ server, api, ctx }) => {
  await api.create(bash('ended-then-gone'));
  const page = await openPage(ctx, server, '#/s/ended-then-gone');
  await hasView(page, 'ended-then-gone');
  await waitText(page, 'ended-then-gone', '$ ');
  await api.terminate('ended-then-gone');
  await waitFor('the exit', () => page.evaluate(() => !!window.termstream.views.get('ended-then-gone').exit));
  // A blip: the client does not attach an ended session again, so only
  // the list can tell its deletion now.
  await page.evaluate(() => window.termstream.cutSocket());
  await waitFor('the page noticed', () => page.evaluate(() => window.termstream.client.state !== 'connected'), 5000, 5);
  await page.evaluate(() => window.dispatchEvent(new Event('online')));
  await waitFor('reconnected', () => page.evaluate(() => window.termstream.client.state === 'connected'));
  // The list follows again (a session made now is listed) before the deletion.
  await api.create({ id: 'ended-then-gone-marker', kind: 'command', command: 'true' });
  await waitFor('the list again', () => page.evaluate(() => window.termstream.sessions.has('ended-then-gone-marker')));
  await api.call('DELETE', '/api/sessions/ended-then-gone');
  await waitText(page, 'ended-then-gone', '[session deleted]');
  assert.match(await page.locator('.term[data-session="ended-then-gone"] .term-end').textContent(), /deleted$/);
});

test('input the server drops (a paste over its input budget) is told in the terminal', async ({ ctx }) => {
  // A server of its own whose sockets may send 1000 bytes at once, then
  // 100 a second: a 3000-byte paste (one message) is dropped.
  const limited = await startServer({ config: 'ws_input_burst_bytes = 1000\nws_input_bytes_per_sec = 100\n' });
  try {
    await rest(limited.url).create(bash('limited'));
    const page = await openPage(ctx, limited, '#/s/limited');
    await hasView(page, 'limited');
    await waitText(page, 'limited', '$ ');
    await page.evaluate(() => window.termstream.views.get('limited').term.input('x'.repeat(3000), true));
    await waitText(page, 'limited', '[input over 100 bytes/s was dropped; send it again later]');
  } finally {
    await limited.stop();
  }
});

test('tabs restored from the last visit whose sessions are gone are checked a few at a time, and dropped', async ({ server, ctx }) => {
  const ids = Array.from({ length: 12 }, (_, i) => `gone-${i}`);
  await ctx.addInitScript((ids) => localStorage.getItem('termstream.layout') ?? localStorage.setItem('termstream.layout', JSON.stringify({ mode: 'tabs', open: ids, active: ids[0] })), ids);
  // Each check answered after 100 ms, so checks sent together overlap.
  let inFlight = 0;
  let most = 0;
  await ctx.route(/\/api\/sessions\/gone-\d+$/, (r) => {
    most = Math.max(most, ++inFlight);
    setTimeout(() => (inFlight--, void r.continue()), 100);
  });
  const page = await openPage(ctx, server);
  await waitFor('every gone tab dropped', () => page.evaluate(() => window.termstream.layout.open.length === 0));
  assert.ok(most <= 4, `${most} checks at once`);
});
