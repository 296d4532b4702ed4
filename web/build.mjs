// Builds the page: web/src -> web/dist (committed; the server binary embeds it).
// `node build.mjs` builds minified, deterministic output; `--dev` adds
// source maps and skips minifying; `--watch` rebuilds on change.
import * as esbuild from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';

const dev = process.argv.includes('--dev') || process.argv.includes('--watch');
const watch = process.argv.includes('--watch');
const here = new URL('.', import.meta.url).pathname;
// The TypeScript client (issue 14) is bundled from its source in this
// repository; TERMSTREAM_CLIENT_SRC points elsewhere while developing.
const clientSrc = process.env.TERMSTREAM_CLIENT_SRC ?? `${here}../clients/typescript/src/index.ts`;

const options = {
  absWorkingDir: here,
  entryPoints: { app: 'src/main.ts' },
  outdir: 'dist/assets',
  bundle: true,
  splitting: true,
  format: 'esm',
  target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
  minify: !dev,
  sourcemap: dev ? 'linked' : false,
  legalComments: 'none',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  loader: { '.woff2': 'file', '.woff': 'file', '.ttf': 'file', '.svg': 'dataurl' },
  logLevel: 'warning',
  metafile: false,
  alias: { '@termstream/client': clientSrc },
};

await rm(`${here}dist`, { recursive: true, force: true });
await mkdir(`${here}dist/assets`, { recursive: true });
await copyFile(`${here}src/index.html`, `${here}dist/index.html`);
if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  console.log('watching web/src');
} else {
  await esbuild.build(options);
}
