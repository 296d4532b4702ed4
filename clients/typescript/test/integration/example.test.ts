// The example app installs the package from the repository path (a `file:..`
// dependency, so through its package.json `exports` and built .d.ts files)
// and type-checks against it.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, expect, it } from 'vitest';

const pkg = fileURLToPath(new URL('../../', import.meta.url));
const example = join(pkg, 'example');
const tsc = join(pkg, 'node_modules/.bin/tsc');

beforeAll(() => {
  if (!existsSync(join(pkg, 'dist/index.d.ts'))) execFileSync(tsc, ['-p', 'tsconfig.build.json'], { cwd: pkg });
  if (!existsSync(join(example, 'node_modules/@termstream/client'))) {
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: example, stdio: 'ignore' });
  }
}, 120_000);

function typecheck(project: string): { status: number | null; out: string } {
  const r = spawnSync(tsc, ['-p', project], { cwd: example, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

it('the example app type-checks against the installed package, and a misuse of it does not', () => {
  // One compiler run over the app and one wrong file: the only errors must be the wrong file's.
  const dir = mkdtempSync(join(example, '.misuse-'));
  try {
    writeFileSync(
      join(dir, 'bad.ts'),
      "import { createWebSocketClient } from '@termstream/client';\n" +
        "createWebSocketClient().attach('s', { output: 'binary', onOutput: (d: string) => d.trim() });\n",
    );
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../tsconfig.json', include: ['../src', 'bad.ts'] }));
    const r = typecheck(join(dir, 'tsconfig.json'));
    expect(r.status).not.toBe(0);
    const errors = r.out.split('\n').filter((l) => /error TS/.test(l));
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.filter((l) => !l.includes('bad.ts'))).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
