// Checks that the page's screen is the server's: a full-screen program
// resized and reloaded, OSC 52 and wide characters, two pages typing into
// one session.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Headless, openPage, hasView, renderSnapshot, suite, waitFor, waitText, bufferText, bash } from './harness.mjs';

const [checks, test] = suite();
export { checks };

/**
 * Prints whether a session's program runs, waits, or is stuck writing (a
 * server that stopped reading): its state and kernel wait channel, with the
 * session's output offset.
 */
async function processState(api, id) {
  try {
    const { pid, outputOffset } = await api.get(id);
    const ps = spawnSync('ps', ['-o', 'pid,stat,wchan:32,etime,time,args', '-p', String(pid)], { encoding: 'utf8' });
    console.log(ps.stdout, outputOffset);
  } catch (more) {
    console.log(`  (no process state: ${more})`);
  }
}

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
  await waitText(page, id, 'line 1: the quick').catch(async (e) => {
    console.log(JSON.stringify({ page: await bufferText(page, id), server: await renderSnapshot(await api.snapshot(id)) }, null, 1));
    await processState(api, id);
    throw e;
  });
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
  const agree = (ms) =>
    waitFor('page and server agree', async () => {
      const snap = await api.snapshot(id);
      const [mine, theirs] = [await screen(page), await renderSnapshot(snap)];
      last = { mine, theirs, cols: snap.cols, rows: snap.rows };
      // Escape leaves insert mode only after vim's escape delay.
      return mine === theirs && !mine.includes('-- INSERT --') && mine;
    }, ms);
  const settled = await agree(10000)
    .catch(async (e) => {
      // Rarely (about 1 full suite in 15 here) vim, waiting for input in
      // poll(), stays in insert mode at a size it had before, while page
      // and server agree on its screen: its last Escape and resize are not
      // taken. Not explained; the process state is printed. Pressed again,
      // as a person would, and the screens must still agree.
      if (!(last && last.mine === last.theirs && last.mine.includes('-- INSERT --'))) throw e;
      console.log('  vim is still in insert mode with page and server agreeing; Escape again. Its state:');
      await processState(api, id);
      await page.keyboard.press('Escape');
      return agree(20000);
    })
    .catch(async (e) => {
      console.log(JSON.stringify(last, null, 1));
      await processState(api, id);
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

test('an OSC 52 write the browser holds back does not hold up the output after it', async ({ server, api, browser }) => {
  // The clipboard addon hands OSC 52 to navigator.clipboard.writeText and
  // xterm.js waits for its promise before it parses on: a write refused
  // (or one that never settles, as in a page without focus) held up every
  // byte after it.
  const ctx = await browser.newContext();
  await ctx.addInitScript(() => {
    navigator.clipboard.writeText = () => new Promise(() => {});
  });
  await api.create(bash('osc-held'));
  const page = await openPage(ctx, server, '#/s/osc-held');
  await hasView(page, 'osc-held');
  await waitText(page, 'osc-held', '$ ');
  const b64 = Buffer.from('never written').toString('base64');
  await api.input('osc-held', `printf '\\033]52;c;${b64}\\a'; echo after-$((6*7))\n`);
  await waitText(page, 'osc-held', '\nafter-42');
  await ctx.close();
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
  // A program may set the clipboard, never read it: the page's terminal
  // does not answer an OSC 52 read (it would send the viewer's clipboard to
  // the program), even with the focus and permission a read needs.
  await page.bringToFront();
  await page.locator('.term[data-session="wide"] .xterm').click();
  const read = await page.evaluate(async () => {
    const term = window.termstream.views.get('wide').term;
    const sent = [];
    const listening = term.onData((d) => sent.push(d));
    await new Promise((r) => term.write('\x1b]52;c;?\x07', r));
    const clipboard = await navigator.clipboard.readText();
    // The addon reads the clipboard asynchronously: time for an answer.
    await new Promise((r) => setTimeout(r, 300));
    listening.dispose();
    return { sent, clipboard };
  });
  assert.equal(read.clipboard, 'copied by osc52', 'the page may read the clipboard');
  assert.deepEqual(read.sent, [], 'an OSC 52 read was answered');
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
    last = { mine, theirs, snap };
    return mine[0] === theirs[0] && mine[1] === theirs[1] && mine[0] > 0;
  }).catch(async (e) => {
    // The server's snapshot and the session's whole output: tells a model
    // that missed bytes from one that parsed them differently.
    const log = await fetch(`${server.url}/api/sessions/wide/output?since=0`).then((r) => r.text(), (err) => String(err));
    console.log(JSON.stringify({ snapshot: last?.snap, log }, null, 1));
    throw new Error(`${e.message}: ${JSON.stringify({ mine: last?.mine, theirs: last?.theirs })}`);
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

test('two pages on one session: a terminal query (CSI 6n) is answered once', async ({ server, api, ctx, browser }) => {
  await api.create(bash('asked'));
  const a = await openPage(ctx, server, '#/s/asked');
  const ctx2 = await browser.newContext();
  const b = await openPage(ctx2, server, '#/s/asked');
  await hasView(a, 'asked');
  await hasView(b, 'asked');
  await waitText(a, 'asked', '$ ');
  await waitText(b, 'asked', '$ ');
  // The program asks for the cursor position, reads one answer, then
  // reports whatever else arrives within 2 s (a second answer would).
  const ask = `printf '\\e[6n'; IFS= read -rsd R r; printf 'got:%q\\n' "$r"; IFS= read -rs -t 2 -n 64 more; printf 'extra:[%q]\\n' "$more"\n`;
  await api.input('asked', ask);
  await waitText(a, 'asked', '\nextra:[');
  const text = await bufferText(a, 'asked');
  // How many answers each page's terminal gave (sent or not), for a failure's message.
  const answers = await Promise.all([a, b].map((p) => p.evaluate(() => [...window.termstream.views.values()].map((v) => [v.id, v.stats.answers, v.shown]))));
  assert.match(text, /got:\$'\\E\[\d+;1'/, `one answer arrived:\n${text}`);
  assert.match(text, /extra:\[''\]/, `a second answer arrived (answers per page: ${JSON.stringify(answers)}):\n${text}`);
  await ctx2.close();
});

test('a page that parses old output again (a command session shown from its start) does not answer its queries', async ({ server, api, ctx }) => {
  // The query is in the log before any page shows it; the program then
  // waits 4 s for an answer on its input.
  await api.create({ id: 'asked-before', kind: 'command', argv: ['bash', '-c', `printf 'asking\\e[6n\\n'; IFS= read -r -t 4 -d R r; printf 'stdin:[%q]\\n' "$r"`] });
  await waitFor('the query in the log', async () => (await api.get('asked-before')).outputOffset > 0);
  const page = await openPage(ctx, server, '#/s/asked-before');
  await hasView(page, 'asked-before');
  await waitText(page, 'asked-before', 'stdin:[');
  const text = await bufferText(page, 'asked-before');
  assert.match(text, /stdin:\[''\]/, `an old query was answered:\n${text}`);
});

