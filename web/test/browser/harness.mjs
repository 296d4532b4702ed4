// The browser suite's harness: the real server binary on 127.0.0.1:0 with
// its own data dir, Debian's Chromium through playwright-core, REST helpers,
// the page helpers every check uses, and waits on conditions (never sleeps).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import xtermHeadless from '@xterm/headless';

export const { Terminal: Headless } = xtermHeadless;

export const repo = new URL('../../../', import.meta.url).pathname;
export const screenshots = join(repo, 'target/screenshots');

export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Starts `target/debug/termstream serve` with `extraArgs`; resolves when it listens. */
export async function startServer({ config } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'termstream-web-'));
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')];
  if (config) {
    writeFileSync(join(dir, 'config.toml'), config);
    args.push('--config', join(dir, 'config.toml'));
  }
  const bin = process.env.TERMSTREAM_BIN ?? join(repo, 'target/debug/termstream');
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-8000)));
  const url = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`the server did not start: ${stderr}`)), 20000);
    rl.once('line', (line) => {
      clearTimeout(timer);
      const m = /^listening on (http:\/\/\S+)/.exec(line);
      m ? resolve(m[1]) : reject(new Error(`unexpected first line: ${line}`));
    });
    child.once('exit', (code) => reject(new Error(`the server exited (${code}): ${stderr}`)));
  });
  return {
    url,
    dir,
    stderr: () => stderr,
    /** Sends the server process `sig` (`SIGSTOP` freezes it, `SIGCONT` lets it go on). */
    signal: (sig) => child.kill(sig),
    /** Ends the server (SIGTERM; SIGKILL if it has not exited 10 s later) and removes its dir. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        // A frozen (SIGSTOPped) node takes SIGTERM only once let go on.
        child.kill('SIGCONT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** REST calls against `base`, with an optional bearer token. */
export function rest(base, token) {
  const call = async (method, path, body) => {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON.
    }
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return json ?? text;
  };
  return {
    call,
    create: (body) => call('POST', '/api/sessions', body),
    get: (id) => call('GET', `/api/sessions/${id}`),
    input: (id, data) => call('POST', `/api/sessions/${id}/input`, { data }),
    snapshot: (id) => call('GET', `/api/sessions/${id}/snapshot`),
    terminate: (id) => call('POST', `/api/sessions/${id}/terminate`),
    event: (ev) => call('POST', '/api/events', ev),
    loginCode: (body) => call('POST', '/api/login-codes', body),
  };
}

/** Chromium with our flags; `bfcache` keeps the back-forward cache, which playwright turns off by default. */
export async function launchBrowser({ bfcache = false } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_FLAGS,
    headless: true,
    ignoreDefaultArgs: bfcache ? ['--disable-back-forward-cache'] : [],
  });
}

/** Polls `f` until it returns a truthy value; throws `what` after `ms`. */
export async function waitFor(what, f, ms = 15000, every = 50) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)?.slice(0, 400)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** The text of terminal `id`'s buffer in `page` (scrollback and screen), lines trimmed. */
export function bufferText(page, id, { screenOnly = false } = {}) {
  return page.evaluate(
    ([id, screenOnly]) => {
      const v = window.termstream.views.get(id);
      if (!v) return null;
      const b = v.term.buffer.active;
      const lines = [];
      const from = screenOnly ? b.baseY : 0;
      for (let i = from; i < b.baseY + v.term.rows; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
      return lines.join('\n');
    },
    [id, screenOnly],
  );
}

/** Waits until terminal `id` in `page` shows `needle`. */
export function waitText(page, id, needle, ms = 15000) {
  return waitFor(`${JSON.stringify(needle)} in ${id}`, async () => ((await bufferText(page, id)) ?? '').includes(needle), ms);
}

export async function shot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  // Two frames, so the terminals have painted what they hold.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await page.screenshot({ path: join(screenshots, `${name}.png`) });
}

/** A list of checks and the function that adds one: `[list, test]`. */
export function suite() {
  const list = [];
  return [list, (name, f) => list.push({ name, f })];
}

/** A page on `server` at `hash`, with the app started. */
export async function openPage(ctx, server, hash = '#/', viewport = { width: 1280, height: 800 }) {
  const page = await ctx.newPage({ viewport });
  page.on('pageerror', (e) => console.error(`  [pageerror] ${e.message}`));
  page.on('dialog', (d) => void d.accept());
  await page.goto(server.url + '/' + hash);
  await waitFor('the app', () => page.evaluate(() => !!window.termstream?.started));
  return page;
}

export const hasView = (page, id) => waitFor(`terminal ${id}`, () => page.evaluate((id) => window.termstream.views.has(id), id));

/** The screen of a snapshot, rendered in a headless xterm.js, lines right-trimmed. */
export async function renderSnapshot(snap) {
  const t = new Headless({ cols: snap.cols, rows: snap.rows, allowProposedApi: true, scrollback: 1000 });
  await new Promise((r) => t.write(snap.data, r));
  const b = t.buffer.active;
  const lines = [];
  for (let i = b.baseY; i < b.baseY + t.rows; i++) lines.push((b.getLine(i)?.translateToString(true) ?? '').trimEnd());
  t.dispose();
  return lines.join('\n');
}

/** A bash session with a `$ ` prompt, 100×30, plus `extra`. */
export const bash = (id, extra = {}) => ({ id, kind: 'pty', argv: ['bash', '--norc', '--noprofile', '-i'], env: { PS1: '$ ' }, cols: 100, rows: 30, ...extra });
