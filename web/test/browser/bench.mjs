// Browser rows of the benchmark: how long a 64 MiB `cat` takes to be fully
// rendered in the page (default flow control), and keystroke-to-screen
// latency in the page on a quiet session (p50/p99). Prints Markdown rows.
//
//   node web/test/browser/bench.mjs [--server target/release/termstream] [--runs 3]
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, launchBrowser, rest, waitFor } from './harness.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
if (arg('--server')) process.env.TERMSTREAM_BIN = arg('--server');
const runs = Number(arg('--runs', '3'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const server = await startServer();
const api = rest(server.url);
const browser = await launchBrowser();
const file = join(server.dir, 'big.txt');
const line = (i) => `${String(i).padStart(10, '0')}${'x'.repeat(53)}\n`;
writeFileSync(file, Array.from({ length: 1 << 20 }, (_, i) => line(i)).join(''));

const catMs = [];
/** MiB of the cat's output the page parsed (the rest skipped by a fresh screen when far behind). */
const parsed = [];
const p50s = [];
const p99s = [];
for (let r = 0; r < runs; r++) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(server.url + '/#/');
  await waitFor('the app', () => page.evaluate(() => window.termstream?.client.state === 'connected'));
  // The view attaches first, then the program starts: the time covers the
  // program's output, the server, the socket and xterm.js's parsing.
  const id = `cat${r}`;
  const quiet = `quiet${r}`;
  await api.create({ id: quiet, kind: 'pty', argv: ['cat'], cols: 100, rows: 30 });
  await api.create({ id, kind: 'pty', argv: ['sh', '-c', `read go; cat ${file}`], cols: 100, rows: 30 });
  // Both visible (a grid), so both follow the full stream.
  await page.evaluate(([a, b]) => {
    const app = window.termstream;
    app.dispatch({ type: 'mode', mode: 'grid' });
    app.dispatch({ type: 'open', id: a });
    app.go({ view: 'terminal', id: b });
  }, [quiet, id]);
  await waitFor('views', () => page.evaluate(([a, b]) => window.termstream.views.has(a) && window.termstream.views.has(b), [quiet, id]));
  await page.waitForFunction((id) => window.termstream.client.state === 'connected' && window.termstream.views.get(id).term.buffer.active, id);
  const t0 = Date.now();
  await api.input(id, 'go\n');
  const got = await waitFor('all rendered', () => page.evaluate((id) => {
    const v = window.termstream.views.get(id);
    return v.exit && v.pending === 0 && { ...v.stats };
  }, id), 300000, 100);
  catMs.push(Date.now() - t0);
  parsed.push(got.bytes / 1048576);
  const times = await page.evaluate(async (id) => {
    const v = window.termstream.views.get(id);
    const out = [];
    for (let i = 0; i < 210; i++) {
      const before = v.stats.bytes;
      const t = performance.now();
      await new Promise((resolve) => {
        const d = v.term.onWriteParsed(() => v.stats.bytes > before && (d.dispose(), resolve()));
        v.term.input('k', true);
      });
      out.push(performance.now() - t);
    }
    return out.slice(10).sort((a, b) => a - b);
  }, quiet);
  p50s.push(times[Math.floor(times.length * 0.5)]);
  p99s.push(times[Math.floor(times.length * 0.99)]);
  await ctx.close();
}
await browser.close();
await server.stop();
console.log(`| browser: 64 MiB \`cat\` (pty) fully rendered in the page | ${(median(catMs) / 1000).toFixed(2)} s | median of ${runs}: ${catMs.map((m) => (m / 1000).toFixed(2)).join(', ')} s; MiB parsed by the page (the rest skipped by a fresh screen): ${parsed.map((m) => m.toFixed(1)).join(', ')} |`);
console.log(`| browser: keystroke to screen, quiet session, p50 / p99 | ${median(p50s).toFixed(2)} / ${median(p99s).toFixed(2)} ms | 200 keys a run, median of ${runs} |`);
