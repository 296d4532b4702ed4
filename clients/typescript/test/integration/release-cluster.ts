// The cluster of the release tests (the client's and the React hook's): a
// Redis and two nodes, started before a file's tests and stopped after
// them. Its nodes wait long (60 s) for a session to be listed again: a test
// takes a session's record out of the directory and puts it back itself.
import { afterAll, beforeAll } from 'vitest';
import { type TestRedis, startCluster } from './redis.js';
import type { TestServer } from './server.js';

export interface ReleaseCluster {
  redis: TestRedis;
  /** The node the tests make sessions on. */
  owner: TestServer;
  /** The node the tests watch from: it holds a copy of the owner's sessions, and lets go of it. */
  viewer: TestServer;
}

/** Registers the hooks that start and stop the cluster; its parts are there once `beforeAll` ran. */
export function releaseCluster(): ReleaseCluster {
  const cluster = {} as ReleaseCluster;
  let stop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const started = await startCluster({ TERMSTREAM_ATTACH_WAIT_MS: '60000' });
    stop = started.stop;
    const [owner, viewer] = started.nodes as [TestServer, TestServer];
    Object.assign(cluster, { redis: started.redis, owner, viewer });
  });
  afterAll(async () => {
    await stop?.();
  });
  return cluster;
}
