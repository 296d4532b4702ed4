// A real `redis-server` for the cluster tests, on a free loopback port with
// nothing kept on disk (`--save '' --appendonly no`), and two termstream
// nodes joined through it. `redis-cli` runs the test's own commands.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TestServer } from './server.js';

const run = promisify(execFile);

/** Waits until `check()` resolves true, asking again 20 ms after each answer, for at most `ms`. */
export async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A free loopback port (free when asked: the server started on it takes it at once). */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}

/** A `redis-server` child process on `127.0.0.1:port`; `stop()` kills it and removes its dir. */
export class TestRedis {
  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly child: ChildProcess,
  ) {}

  /** Starts `bin` (`redis-server`; another name only to test this fixture). */
  static async start(bin = 'redis-server'): Promise<TestRedis> {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'termstream-ts-redis-'));
    const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: 'ignore',
    });
    const redis = new TestRedis(port, dir, child);
    // A Redis that cannot start (not installed, its port taken) fails at
    // once, saying why, rather than after the PING wait; either way its
    // process and directory go.
    let dead: Error | null = null;
    const died = new Promise<never>((_, reject) => {
      child.once('error', (e) => reject((dead = new Error(`redis-server could not be started: ${e.message}`))));
      child.once('exit', (code, signal) => reject((dead = new Error(`redis-server on port ${port} exited (${signal ?? `code ${code}`}) before it answered PING`))));
    });
    died.catch(() => {});
    let last = '';
    const ping = () =>
      dead !== null
        ? Promise.resolve(true)
        : redis.cli('PING').then(
            (r) => r === 'PONG',
            (e: Error) => ((last = e.message), false),
          );
    try {
      await Promise.race([eventually(ping, 10_000, `redis-server on port ${port} to answer PING`), died]);
      if (dead !== null) throw dead;
    } catch (e) {
      await redis.stop();
      throw last ? new Error(`${(e as Error).message} (redis-cli: ${last})`) : e;
    }
    return redis;
  }

  /** The URL nodes are given (`TERMSTREAM_CLUSTER`). */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Runs one command with `redis-cli`; its answer, trimmed. */
  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', ['-p', String(this.port), '--no-raw', ...args]);
    return stdout.trim();
  }

  /** Runs one command with `redis-cli --raw` (answers as they are, one line each). */
  async raw(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', ['-p', String(this.port), '--raw', ...args]);
    return stdout.replace(/\n$/, '');
  }

  /**
   * Takes session `id`'s record out of the cluster's directory, and empties
   * the directory's change log in the same step, so that no change names
   * it (a record the log says was removed is a deletion): the nodes read
   * the whole directory and miss the record, as after a Redis restarted
   * empty, while the session runs on on its owner. Returns the record.
   */
  async dropRecord(id: string): Promise<string> {
    const record = await this.raw('HGET', 'termstream:dir', id);
    if (!record) throw new Error(`no record of ${id} in the directory`);
    await this.cli('EVAL', "redis.call('DEL', KEYS[2]); return redis.call('HDEL', KEYS[1], ARGV[1])", '2', 'termstream:dir', 'termstream:dirlog', id);
    return record;
  }

  /** Puts a record taken by [`dropRecord`] back, and logs the change. */
  async putRecord(id: string, record: string): Promise<void> {
    await this.cli('EVAL', "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); return redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])", '2', 'termstream:dir', 'termstream:dirlog', id, record);
  }

  async stop(): Promise<void> {
    // A child never started (`pid` undefined) sends no `exit`.
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A Redis and two nodes joined through it (a 100 ms heartbeat), each ready. */
export async function startCluster(env: Record<string, string> = {}): Promise<{ redis: TestRedis; nodes: TestServer[]; stop: () => Promise<void> }> {
  const redis = await TestRedis.start();
  const nodes: TestServer[] = [];
  const stop = async () => {
    for (const n of nodes) await n.cleanup();
    await redis.stop();
  };
  try {
    // A node silent for 5 s is counted dead: longer than a loaded machine stalls.
    const all = { TERMSTREAM_CLUSTER: redis.url, TERMSTREAM_CLUSTER_HEARTBEAT_MS: '100', TERMSTREAM_CLUSTER_LOST_MS: '5000', ...env };
    for (let i = 0; i < 2; i++) nodes.push(await TestServer.start({ env: all }));
    for (const n of nodes) await eventually(() => n.call('GET', '/readyz').then((r) => r.status === 200, () => false), 10_000, 'a node to be ready');
  } catch (e) {
    await stop();
    throw e;
  }
  return { redis, nodes, stop };
}
