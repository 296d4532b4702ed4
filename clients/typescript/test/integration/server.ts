// The real server for integration tests: `termstream serve` on 127.0.0.1:0 (or a
// given port) with its own data dir, and small REST and proxy helpers.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { createWebSocketClient, type ClientOptions, type ConnectionState, type TokenSource, type WebSocketClient, type WebSocketConstructor } from '../../src/index.js';

const BIN = process.env.SERVER_BIN ?? fileURLToPath(new URL('../../../../target/debug/termstream', import.meta.url));

export interface StartOptions {
  /** Reuse this data dir (for restarts); default a fresh temp dir. */
  dataDir?: string;
  /** Listen on this port; default 0 (a free one). */
  port?: number;
  env?: Record<string, string>;
}

/** A running server; `stop()` kills it, `cleanup()` also removes its data dir. */
export class TestServer {
  private constructor(
    readonly url: string,
    readonly port: number,
    readonly dataDir: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(options: StartOptions = {}): Promise<TestServer> {
    const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'termstream-ts-'));
    const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${options.port ?? 0}`, '--data-dir', dataDir], {
      env: { ...process.env, RUST_LOG: 'warn', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const first = await new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      const timer = setTimeout(() => reject(new Error(`server did not start in 20 s: ${stderr}`)), 20_000);
      lines.once('line', (l) => {
        clearTimeout(timer);
        resolve(l);
      });
      child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
    });
    const m = /^listening on (http:\/\/(\S+):(\d+))/.exec(first);
    if (!m) throw new Error(`unexpected first line: ${first}`);
    return new TestServer(m[1]!, Number(m[3]), dataDir, child);
  }

  /** Kills the server at once (SIGKILL: running sessions come back `lost`). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }

  /** Sends the server process `signal` (`SIGSTOP` and `SIGCONT` freeze it and let it go on). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Stops the server gracefully (it terminates its sessions' programs), SIGKILL after 5 s, and removes the data dir. */
  async cleanup(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A REST call with node:http (not the environment's fetch, which happy-dom replaces); the status and the JSON body. */
  call(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: any }> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    return new Promise((resolve, reject) => {
      const req = http.request(this.url + path, { method, headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let json: any = text;
          try {
            json = JSON.parse(text);
          } catch {
            // Not JSON: keep the text.
          }
          resolve({ status: res.statusCode ?? 0, body: json });
        });
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /** Creates a session; throws unless 201/200. */
  async createSession(body: Record<string, unknown>, token?: string): Promise<any> {
    const r = await this.call('POST', '/api/sessions', body, token);
    if (r.status >= 300) throw new Error(`create session: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** A client of this server with the `ws` package and quick retries. */
  client(token?: TokenSource, options: ClientOptions = {}): WebSocketClient {
    const { reconnect, ...rest } = options;
    return createWebSocketClient(token, {
      url: this.url,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      lifecycle: null,
      ...rest,
      reconnect: { initialDelay: 20, maxDelay: 200, maxAttempts: Infinity, ...reconnect },
    });
  }
}

/** Waits until `check()` is true, polling every 10 ms, for at most `ms`. */
export async function until(check: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves when the client reaches `state`. */
export function stateOf(client: WebSocketClient, state: ConnectionState, ms = 10_000): Promise<void> {
  return until(() => client.state === state, ms, `state ${state} (now ${client.state})`);
}

/** A TCP proxy in front of `port` that can cut every connection through it. */
export class CuttingProxy {
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  cuts = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(target: number): Promise<CuttingProxy> {
    let proxy: CuttingProxy;
    const server = net.createServer((inbound) => {
      const outbound = net.connect(target, '127.0.0.1');
      const pair: [net.Socket, net.Socket] = [inbound, outbound];
      proxy.pairs.add(pair);
      inbound.pipe(outbound);
      outbound.pipe(inbound);
      const end = () => {
        inbound.destroy();
        outbound.destroy();
        proxy.pairs.delete(pair);
      };
      inbound.on('error', end).on('close', end);
      outbound.on('error', end).on('close', end);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    proxy = new CuttingProxy(server, (server.address() as net.AddressInfo).port);
    return proxy;
  }

  /** Stops forwarding on every current connection, leaving it open: a peer that vanished without a word. */
  freeze(): void {
    for (const [a, b] of this.pairs) {
      a.unpipe(b);
      b.unpipe(a);
      a.pause();
      b.pause();
    }
  }

  /** Destroys every connection through the proxy (no close frame: a cut cable). */
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.resetAndDestroy();
      b.destroy();
    }
    if (this.pairs.size > 0) this.cuts++;
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}
