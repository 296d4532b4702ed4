// Unit tests run in Node; React tests pick happy-dom with a per-file comment.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    globalSetup: ['test/integration/build-server.ts'],
  },
});
