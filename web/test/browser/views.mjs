// Checks of the page on a phone and in full screen, and of its other
// views: replay, the monitor, and the event log.
import { strict as assert } from 'node:assert';
import { openPage, hasView, bash, suite, waitFor, waitText, shot } from './harness.mjs';

const [checks, test] = suite();
export { checks };

test('a phone: the session list fits the screen, nothing scrolls sideways', async ({ server, api, browser }) => {
  await api.create({ id: 'phone-list-with-a-rather-long-session-id', kind: 'command', project: `a-project-with-a-long-name-${'x'.repeat(100)}`, command: 'echo a command line of many words that does not fit a phone; exit 3' });
  await api.create(bash('phone-list-pty'));
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const page = await openPage(ctx, server, '#/', { width: 390, height: 844 });
  await waitFor('both rows', () => page.locator('tr[data-session^="phone-list"]').count().then((n) => n === 2));
  await shot(page, 'list-phone');
  const wide = await page.evaluate(() =>
    [document.documentElement, ...document.querySelectorAll('.view-list, .table-wrap, .sessions tr')]
      .filter((e) => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > window.innerWidth + 1)
      .map((e) => `${e.tagName.toLowerCase()}.${e.className}${e.dataset.session ? `[${e.dataset.session}]` : ''}: ${e.scrollWidth} > ${e.clientWidth}`),
  );
  assert.deepEqual(wide, [], 'no part of the list is wider than the screen');
  await page.locator('tr[data-session="phone-list-with-a-rather-long-session-id"]').scrollIntoViewIfNeeded();
  await shot(page, 'list-phone-long-project');
  // Every row's buttons are on the screen, and open what they say.
  const row = page.locator('tr[data-session="phone-list-pty"]');
  const box = await row.locator('button', { hasText: 'Terminate' }).boundingBox();
  assert.ok(box && box.x + box.width <= 390, `Terminate on the screen: ${JSON.stringify(box)}`);
  await row.locator('button', { hasText: 'Open' }).tap();
  await hasView(page, 'phone-list-pty');
  await ctx.close();
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
  // More tabs than the phone's width: the active one is scrolled into view.
  for (const n of [1, 2, 3]) await api.create({ id: `phone-extra-${n}`, kind: 'command', command: 'true' });
  await page.evaluate(() => window.termstream.refresh());
  for (const n of [1, 2, 3]) await page.evaluate((id) => window.termstream.go({ view: 'terminal', id }), `phone-extra-${n}`);
  await hasView(page, 'phone-extra-3');
  await page.evaluate(() => window.termstream.go({ view: 'terminal', id: 'phone' }));
  await page.evaluate(() => window.termstream.go({ view: 'terminal', id: 'phone-extra-3' }));
  await waitFor('the active tab in view', () =>
    page.evaluate(() => {
      const t = document.querySelector('.tab[aria-selected="true"][data-session="phone-extra-3"]')?.getBoundingClientRect();
      if (!t) return false;
      const strip = document.querySelector('.tabs').getBoundingClientRect();
      return t.left >= strip.left - 1 && t.right <= strip.right + 1;
    }),
  );
  await page.evaluate(() => window.termstream.go({ view: 'terminal', id: 'phone' }));
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
    // The lock is granted only when the check says so: keys typed while
    // the browser still grants it must reach the program too.
    const granted = new Promise((r) => (window.grantLock = r));
    kb.lock = (keys) => (window.locks.push('lock'), granted.then(() => lock(keys)));
    kb.unlock = () => (window.locks.push('unlock'), unlock());
  });
  await api.create(bash('fs-other'));
  const page = await openPage(ctx, server, '#/s/fs-other');
  await hasView(page, 'fs-other');
  await page.evaluate(() => window.termstream.go({ view: 'terminal', id: 'fs' }));
  await hasView(page, 'fs');
  await waitText(page, 'fs', '$ ');
  assert.ok(await page.evaluate(() => typeof navigator.keyboard?.lock === 'function'), 'this Chromium has navigator.keyboard.lock');
  await page.click('.term[data-session="fs"] .tbtn-fullscreen');
  await waitFor('full screen', () => page.evaluate(() => document.fullscreenElement?.dataset.session === 'fs'));
  await waitFor('the keyboard locked', () => page.evaluate(() => window.locks.includes('lock')));
  // In full screen every key goes to the program, the page's shortcuts too
  // (with two terminals open, where Alt+Shift+→ would switch tabs outside).
  // bash hands the terminal back (ICRNL, echo) before it runs the line, so
  // once `go-42` is printed the keys below meet the cooked tty cat reads
  // from, never readline's raw one (where Enter would stay a lone \r).
  await page.keyboard.type('echo go-$((6*7)); cat -v\n');
  await waitText(page, 'fs', '\ngo-42');
  await page.evaluate(() => window.grantLock());
  await waitFor('the terminal has the keyboard once the lock is granted', () =>
    page.evaluate(() => !!document.activeElement?.closest('.term[data-session="fs"]')),
  );
  await page.keyboard.press('Alt+Shift+G');
  await page.keyboard.press('Alt+Shift+ArrowRight');
  await page.keyboard.press('Enter');
  // (Echoed by the tty, then printed by cat.)
  await waitText(page, 'fs', '\n^[G^[[1;4C\n');
  assert.equal(await page.evaluate(() => document.fullscreenElement?.dataset.session), 'fs', 'still in full screen');
  assert.deepEqual(await page.evaluate(() => [window.termstream.layout.mode, window.termstream.layout.active]), ['tabs', 'fs']);
  await shot(page, 'fullscreen-keys');
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
  // The speed changed while the replay still asks for the session: one player.
  let held;
  const asked = new Promise((r) => (held = r));
  let release;
  const released = new Promise((r) => (release = r));
  await page.route('**/api/sessions/rec', async (r) => (held(), await released, r.continue()));
  await page.evaluate(() => window.termstream.go({ view: 'list' }));
  await page.evaluate(() => window.termstream.go({ view: 'replay', id: 'rec' }));
  await asked;
  await page.selectOption('.view-replay select', '2');
  release();
  await waitFor('the replay ends at 2×', () => page.locator('.view-replay[data-state="ended"]').count(), 20000);
  await page.unroute('**/api/sessions/rec');
  assert.equal(await page.locator('.replay-stage .ap-wrapper').count(), 1, 'one player');
  // A session that is not there: the page says so (the player alone shows an icon).
  await page.evaluate(() => window.termstream.go({ view: 'replay', id: 'no-such-rec' }));
  await waitFor('the replay says why', async () => /There is no session no-such-rec/.test(await page.locator('.replay-stage').innerText()));
});

test('the monitor previews every session: each card shows its own screen, legibly', async ({ server, api, ctx }) => {
  const ids = ['mon-a', 'mon-b', 'mon-c', 'mon-d', 'mon-e'];
  for (const id of ids) await api.create({ id, kind: 'pty', argv: ['bash', '-c', `printf "screen of %s\\n" ${id}; sleep 600`], cols: 80, rows: 24 });
  await api.create({ id: 'mon-cmd', kind: 'command', command: 'echo output of mon-cmd; sleep 600' });
  // Enough cards that some are out of view, for a dashboard's long page.
  const tiles = Array.from({ length: 14 }, (_, i) => `mon-tile-${String(i).padStart(2, '0')}`);
  for (const id of tiles) await api.create({ id, kind: 'pty', argv: ['sh', '-c', `echo tile ${id}; exec sleep 600`], cols: 40, rows: 6 });
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
  // Every card in view shows its preview, also after scrolling to the end.
  const blankInView = () =>
    page.evaluate(() =>
      [...document.querySelectorAll('.view-monitor .card')]
        .filter((c) => {
          const r = c.getBoundingClientRect();
          return r.bottom > 0 && r.top < innerHeight;
        })
        .filter((c) => c.dataset.previewed === undefined)
        .map((c) => c.dataset.session),
    );
  let blank;
  const filled = (what) =>
    waitFor(what, async () => (blank = await blankInView()).length === 0, 10000).catch((e) => {
      console.log('cards in view without a preview:', JSON.stringify(blank));
      throw e;
    });
  await filled('every card in view has its preview');
  await shot(page, 'monitor');
  await page.evaluate(() => document.querySelector('.view-monitor .card:last-child').scrollIntoView());
  await filled('every card in view at the end has its preview');
  await shot(page, 'monitor-end');
  assert.match(await page.locator(`.card[data-session="${tiles[0]}"] .preview`).innerText(), new RegExp(`tile ${tiles[0]}`));
  for (const id of [...all, ...tiles]) await api.terminate(id);
});

test('events: notifications as toasts, task status and activity in the log', async ({ server, api, ctx }) => {
  // Empty states: a monitor without sessions (the list answered empty) and an event log without events say so.
  await ctx.route('**/api/sessions', (r) => r.fulfill({ json: { sessions: [], total: 0 } }));
  const page = await openPage(ctx, server, '#/monitor');
  await waitFor('the empty monitor says so', async () => /No sessions to watch yet/.test(await page.locator('.view-monitor').innerText()));
  await ctx.unroute('**/api/sessions');
  await page.click('.events-btn');
  assert.match(await page.locator('.log-panel').innerText(), /No events yet/);
  await page.click('.events-btn');
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
  assert.ok(!(await page.locator('.log-none').isVisible()), 'no "No events yet" once there are events');
});
