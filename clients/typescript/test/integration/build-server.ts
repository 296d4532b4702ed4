// Builds the server binary once before the tests (cargo is a no-op when it is fresh).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  if (process.env.SERVER_BIN) return;
  const root = fileURLToPath(new URL('../../../../', import.meta.url));
  execFileSync('cargo', ['build', '-q', '-p', 'termstream', '--bin', 'termstream'], { cwd: root, stdio: 'inherit' });
}
