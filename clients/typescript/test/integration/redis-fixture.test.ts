// The Redis fixture itself: a redis-server that cannot start fails the
// start at once, saying why (not after the 10 s PING wait, nor as an
// uncaught `error` event of its child process).
import { expect, it } from 'vitest';
import { TestRedis } from './redis.js';

it('a redis-server that cannot be started fails the start at once, with why', async () => {
  const t0 = Date.now();
  await expect(TestRedis.start('termstream-no-such-redis-server')).rejects.toThrow(/redis-server could not be started: spawn termstream-no-such-redis-server ENOENT/);
  expect(Date.now() - t0).toBeLessThan(5_000);
});

it('a redis-server that exits at once fails the start at once, with its exit', async () => {
  const t0 = Date.now();
  await expect(TestRedis.start('false')).rejects.toThrow(/exited \(code 1\) before it answered PING/);
  expect(Date.now() - t0).toBeLessThan(5_000);
});
