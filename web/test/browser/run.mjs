// The browser suite: the page in Debian's Chromium (playwright-core) against
// the real server binary. Run `node test/browser/run.mjs [name-filter]`
// after `cargo build`; screenshots go to target/screenshots/. The checks
// are in sessions.mjs, screen.mjs, streaming.mjs and views.mjs, run one
// after another in that order on one server; the checks below need a
// server with tokens of their own, and those of cluster.mjs two nodes and a
// Redis of their own.
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { startServer, launchBrowser, rest, waitFor, waitText, bufferText, shot } from './harness.mjs';
import { checks as sessions } from './sessions.mjs';
import { checks as screen } from './screen.mjs';
import { checks as streaming } from './streaming.mjs';
import { checks as views } from './views.mjs';
import { runClusterChecks } from './cluster.mjs';

const tests = [...sessions, ...screen, ...streaming, ...views];

/** Tests with their own server with tokens. */
const secured = [];
const securedTest = (name, f) => secured.push({ name, f });

securedTest('without a credential the page says how to log in', async ({ server, ctx }) => {
  const page = await ctx.newPage();
  await page.goto(server.url + '/');
  await waitFor('the login help', () => page.locator('.login').count());
  assert.match(await page.locator('.login').innerText(), /login-codes/);
  await shot(page, 'login');
  // A used or expired login link: a page that says so, not the API's JSON.
  const res = await page.goto(server.url + '/login?code=lc_0000');
  assert.equal(res.status(), 401);
  assert.match(await page.locator('body').innerText(), /This login link is unknown, used or expired/);
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
  // The viewer's login ends (here by logging out) and the socket drops: the
  // page says so, instead of reconnecting in silence.
  await viewer.evaluate(() => fetch('/api/logout', { method: 'POST' }));
  await viewer.evaluate(() => window.termstream.cutSocket());
  await waitFor('the login-ended banner', () => viewer.locator('.auth-banner').isVisible());
  assert.match(await viewer.locator('.auth-banner').innerText(), /login has ended/);
  assert.match(await bufferText(viewer, 'ro'), /marker-7/, 'the terminal keeps what it showed');
  await shot(viewer, 'login-ended');
  // A new login in this browser (another tab) hides the banner at the next
  // call that succeeds...
  const again = await admin.loginCode({ projects: { web: 'read' } });
  const tab2 = await viewerCtx.newPage();
  await tab2.goto(server.url + again.path);
  await viewer.evaluate(() => window.termstream.refresh());
  await waitFor('the banner gone after a call that succeeded', async () => !(await viewer.locator('.auth-banner').isVisible()));
  await waitFor('connected again', () => viewer.evaluate(() => window.termstream.client.state === 'connected'));
  // ...also while the socket stays up all along (the server does not close
  // it when a login ends): here the terminals keep streaming.
  await viewer.evaluate(() => fetch('/api/logout', { method: 'POST' }));
  await viewer.evaluate(() => window.termstream.refresh().catch(() => {}));
  await waitFor('the banner on a refused call', () => viewer.locator('.auth-banner').isVisible());
  await tab2.goto(server.url + (await admin.loginCode({ projects: { web: 'read' } })).path);
  await viewer.evaluate(() => window.termstream.refresh());
  await waitFor('the banner gone with the socket never dropped', async () => !(await viewer.locator('.auth-banner').isVisible()));
  // The first check after a drop may not reach the server (it restarts):
  // each failed attempt to reconnect checks again, so the banner comes
  // long before the client gives up (5 attempts, ~31 s).
  await viewer.evaluate(() => fetch('/api/logout', { method: 'POST' }));
  // (Every call of the first check fails: the list, the viewer counts and,
  // if it asks them, the projects with their rights; the check is over
  // when the list failed, and the next check asks the list again.)
  let lists = 0;
  await viewer.route(
    (u) => /^\/(api\/sessions|terminal\/sessions|api\/projects)$/.test(u.pathname),
    (r) => {
      if (new URL(r.request().url()).pathname === '/api/sessions') lists++;
      return lists <= 1 ? r.abort('connectionrefused') : r.continue();
    },
  );
  await viewer.evaluate(() => window.termstream.cutSocket());
  await waitFor('the banner after a failed attempt', () => viewer.locator('.auth-banner').isVisible(), 6000);
  assert.ok(lists > 1, 'a check after the first');
  await viewerCtx.close();
});

securedTest('a read-only viewer is shown no control that would fail: no Stop, Terminate or Delete, no key row, no typing; no write is sent to learn it; a new login with write rights brings them back', async ({ server, ctx, browser, admin }) => {
  await admin.create({ id: 'ro-live', kind: 'pty', project: 'watch', argv: ['bash', '--norc', '--noprofile', '-i'], env: { PS1: '$ ' }, cols: 80, rows: 24 });
  await admin.create({ id: 'ro-ended', kind: 'command', project: 'watch', command: 'true' });
  const danger = (page) => page.locator('tr[data-session^="ro-"] .danger');
  // The page learns its rights from the project list: loading it asks no
  // write (an earlier page asked each project with a focus PUT).
  const focusPuts = [];
  const watchPuts = (page, who) => page.on('request', (r) => r.method() === 'PUT' && r.url().includes('/api/terminal/focus') && focusPuts.push(`${who} ${r.url()}`));
  // The owner (a login with the admin token's grant) keeps every control.
  const owner = await ctx.newPage();
  watchPuts(owner, 'owner');
  await owner.goto(server.url + (await admin.loginCode({})).path + '#/');
  await waitFor('the owner app', () => owner.evaluate(() => window.termstream?.started));
  // A viewer with read access to the project (as a share link gives), on a
  // phone. In the list, before any terminal asked anything of the server:
  // no Terminate or Delete.
  const viewerCtx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const viewer = await viewerCtx.newPage();
  watchPuts(viewer, 'viewer');
  await viewer.goto(server.url + (await admin.loginCode({ projects: { watch: 'read' } })).path + '#/');
  await waitFor('both rows', () => viewer.locator('tr[data-session^="ro-"]').count().then((n) => n === 2));
  await waitFor('no Terminate or Delete for the viewer', () => danger(viewer).count().then((n) => n === 0), 5000);
  assert.equal(await viewer.locator('tr[data-session="ro-live"] button', { hasText: 'Open' }).count(), 1, 'Open stays');
  await shot(viewer, 'read-only-list');
  // Its terminal is read-only from the start: no Stop, no key row, no typing.
  await viewer.evaluate(() => window.termstream.go({ view: 'terminal', id: 'ro-live' }));
  await waitText(viewer, 'ro-live', '$ ');
  assert.equal(await viewer.evaluate(() => window.termstream.views.get('ro-live').readOnly), true);
  assert.equal(await viewer.locator('.term[data-session="ro-live"] .tbtn-terminate').isVisible(), false, 'no Stop for the viewer');
  assert.ok(await viewer.locator('.tab .ro').isVisible(), 'the tab says read-only');
  assert.equal(await viewer.locator('.keyrow').isVisible(), false, 'no key row for the viewer');
  assert.equal(await viewer.evaluate(() => window.termstream.views.get('ro-live').term.options.disableStdin), true);
  await shot(viewer, 'read-only-phone');
  // The owner still has them all.
  await waitFor('the owner known to write', () => owner.evaluate(() => window.termstream.rights.said.get('watch') === 'write'));
  assert.equal(await danger(owner).count(), 2, 'Terminate and Delete for the owner');
  assert.deepEqual(focusPuts, [], 'no focus PUT from loading the page');
  await owner.evaluate(() => window.termstream.go({ view: 'terminal', id: 'ro-live' }));
  await waitText(owner, 'ro-live', '$ ');
  assert.equal(await owner.evaluate(() => window.termstream.views.get('ro-live').readOnly), false);
  assert.ok(await owner.locator('.term[data-session="ro-live"] .tbtn-terminate').isVisible(), 'Stop for the owner');
  // A session of the project deleted while the viewer shows it: its view takes no typing, whatever the rights.
  await admin.create({ id: 'gone-ro', kind: 'pty', project: 'watch', argv: ['bash', '--norc', '--noprofile', '-i'], env: { PS1: '$ ' }, cols: 80, rows: 24 });
  await viewer.evaluate(() => window.termstream.go({ view: 'terminal', id: 'gone-ro' }));
  await waitText(viewer, 'gone-ro', '$ ');
  await admin.call('DELETE', '/api/sessions/gone-ro');
  await waitFor('the deleted view', () => viewer.evaluate(() => window.termstream.views.get('gone-ro').deleted), 5000);
  await viewer.evaluate(() => window.termstream.go({ view: 'terminal', id: 'ro-live' }));
  // The viewer logs in again in another tab, now with write rights; back
  // on its first tab (shown again), the controls come back without a reload.
  const relogin = await viewerCtx.newPage();
  await relogin.goto(server.url + (await admin.loginCode({ projects: { watch: 'write' } })).path + '#/');
  await waitFor('the new login', () => relogin.evaluate(() => window.termstream?.started));
  await relogin.close();
  await viewer.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
  await waitFor('the viewer may write again', () => viewer.evaluate(() => window.termstream.views.get('ro-live').readOnly === false), 5000);
  assert.ok(await viewer.locator('.term[data-session="ro-live"] .tbtn-terminate').isVisible(), 'Stop for the new login');
  assert.ok(await viewer.locator('.keyrow').isVisible(), 'the key row for the new login');
  assert.equal(await viewer.evaluate(() => window.termstream.views.get('ro-live').term.options.disableStdin), false);
  assert.equal(await viewer.evaluate(() => window.termstream.views.get('gone-ro').term.options.disableStdin), true, 'the deleted view takes no typing');
  // The socket, opened with the old login, connected again with the new
  // one: typing and the view's size request are taken, and the view stays
  // writable (over the old socket they were refused: read-only again).
  await viewer.evaluate(() => window.termstream.views.get('ro-live').focusInput());
  await viewer.keyboard.type('echo rw-$((6*7))\n');
  await waitText(viewer, 'ro-live', 'rw-42');
  await waitFor(
    "the viewer's size request answered",
    () => viewer.evaluate(() => {
      const v = window.termstream.views.get('ro-live');
      return v.asked !== null && v.size.cols === v.asked.cols && v.size.rows === v.asked.rows;
    }),
    5000,
  );
  assert.equal(await viewer.evaluate(() => window.termstream.views.get('ro-live').readOnly), false, 'still writable after its size request');
  await viewer.evaluate(() => window.termstream.go({ view: 'list' }));
  await waitFor('Terminate and Delete for the new login', () => danger(viewer).count().then((n) => n === 2), 5000);
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
try {
  await runClusterChecks(filter, runAll);
} catch (e) {
  // The cluster (its Redis, a node) did not start, or did not stop.
  failed++;
  console.log(`FAIL the cluster checks\n  ${e.stack ?? e}`);
}
await browser.close();
console.log(`${failed ? 'FAILED' : 'passed'}: browser suite in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(failed ? 1 : 0);
