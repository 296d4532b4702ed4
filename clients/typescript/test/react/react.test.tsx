// @vitest-environment happy-dom
// The React hooks and components against the real server.
import { act, cleanup, configure, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { StrictMode, useEffect } from 'react';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createWebSocketClient, type WebSocketClient, type WebSocketConstructor } from '../../src/index.js';
import { Terminal, TerminalView, TermstreamProvider, useTerminalStream, useWebSocket } from '../../src/react/index.js';
import type { Terminal as XTerm } from '@xterm/xterm';
import { CuttingProxy, TestServer } from '../integration/server.js';

// A loaded machine can be slow: wait for conditions up to 10 s, never sleep.
configure({ asyncUtilTimeout: 10_000 });

let server: TestServer;
beforeAll(async () => {
  server = await TestServer.start();
});
afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});
afterAll(async () => {
  await server.cleanup();
});

const options = () => ({ WebSocket: WebSocket as unknown as WebSocketConstructor, lifecycle: null });
function newClient(): WebSocketClient {
  return createWebSocketClient(undefined, { url: server.url, ...options() });
}

describe('useWebSocket', () => {
  it("002's MyComponent: connects on mount, shows the state, disconnects on unmount", async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    // ---- 002-websocket-integration.md, "WebSocket Hook", unchanged ----
    function MyComponent() {
      const { state, isConnected, subscribe } = useWebSocket();

      useEffect(() => {
        const unsubscribe = subscribe('terminal_output', (message) => {
          console.log('Received:', message.data);
        });
        return unsubscribe;
      }, [subscribe]);

      return <div>Status: {state}</div>;
    }
    // ---- end of the example ----
    const client = newClient();
    await server.createSession({ id: 'hook-job', kind: 'command', command: 'sleep 0.2; echo from-hook' });
    const view = render(
      <TermstreamProvider client={client}>
        <MyComponent />
      </TermstreamProvider>,
    );
    await screen.findByText('Status: connected');
    client.attach('hook-job');
    await waitFor(() => expect(log).toHaveBeenCalledWith('Received:', { output: 'from-hook\n', type: 'output' }), { timeout: 5000 });
    view.unmount();
    expect(client.state).toBe('disconnected');
  });

  it('a provider given a url makes its own client', async () => {
    let seen: WebSocketClient | null = null;
    function Status() {
      const { state, isConnected, client } = useWebSocket();
      seen = client;
      return <div>{`${state} ${isConnected}`}</div>;
    }
    render(
      <TermstreamProvider url={server.url} options={options()}>
        <Status />
      </TermstreamProvider>,
    );
    await screen.findByText('connected true');
    await waitFor(() => expect(seen!.clientId).toMatch(/^c/));
    cleanup();
    expect(seen!.state).toBe('disconnected');
  });
});

describe('useTerminalStream', () => {
  it("004's hook: output accumulates as text, isConnected, exitCode", async () => {
    await server.createSession({ id: 'stream-job', kind: 'command', command: 'for i in 1 2 3; do echo line-$i; sleep 0.05; done; exit 4' });
    // ---- 004-terminal-streaming-api.md, "React Hook Example", as a user of the hook ----
    function Output({ sessionId }: { sessionId: string }) {
      const { output, isConnected, exitCode } = useTerminalStream(sessionId);
      return (
        <div>
          <span>{isConnected ? 'live' : 'offline'}</span>
          <span>{`exit ${exitCode}`}</span>
          <pre data-testid="out">{output}</pre>
        </div>
      );
    }
    render(
      <TermstreamProvider client={newClient()}>
        <Output sessionId="stream-job" />
      </TermstreamProvider>,
    );
    await screen.findByText('exit 4', undefined, { timeout: 5000 });
    expect(screen.getByTestId('out').textContent).toBe('line-1\nline-2\nline-3\n');
    expect(screen.getByText('live')).toBeTruthy();
  });

  it('under StrictMode (mount, unmount, mount) shows the output once', async () => {
    await server.createSession({ id: 'strict-job', kind: 'command', command: 'for i in 1 2 3 4 5; do echo s-$i; done; exit 0' });
    let seen = '';
    function Output() {
      const { output, exitCode } = useTerminalStream('strict-job');
      seen = output;
      return <span>{`exit ${exitCode}`}</span>;
    }
    render(
      <StrictMode>
        <TermstreamProvider client={newClient()}>
          <Output />
        </TermstreamProvider>
      </StrictMode>,
    );
    await screen.findByText('exit 0');
    expect(seen).toBe('s-1\ns-2\ns-3\ns-4\ns-5\n');
  });

  it('keeps only the last maxOutput characters', async () => {
    await server.createSession({ id: 'stream-big', kind: 'command', command: 'seq 1 5000' });
    let seen = '';
    function Output() {
      const { output, exitCode } = useTerminalStream('stream-big', { maxOutput: 1000 });
      seen = output;
      return <span>{`exit ${exitCode}`}</span>;
    }
    render(
      <TermstreamProvider client={newClient()}>
        <Output />
      </TermstreamProvider>,
    );
    await screen.findByText('exit 0', undefined, { timeout: 5000 });
    expect(seen.length).toBe(1000);
    expect(seen.endsWith('4999\n5000\n')).toBe(true);
  });
});

describe('useTerminalStream across reconnects', () => {
  it('shows every line once while a proxy keeps cutting the connection', async () => {
    const cutServer = await TestServer.start({ env: { TERMSTREAM_ALLOWED_HOSTS: '["127.0.0.1"]' } });
    const proxy = await CuttingProxy.start(cutServer.port);
    const timer = setInterval(() => proxy.cut(), 100);
    try {
      await cutServer.createSession({ id: 'cut-job', kind: 'command', command: 'for i in $(seq 1 3000); do echo n$i; if [ $((i % 300)) -eq 0 ]; then sleep 0.1; fi; done' });
      const client = createWebSocketClient(undefined, {
        url: `http://127.0.0.1:${proxy.port}`,
        ...options(),
        reconnect: { maxAttempts: Infinity, initialDelay: 10, maxDelay: 100 },
      });
      let last = '';
      function Output() {
        const { output, exitCode } = useTerminalStream('cut-job');
        last = output;
        return <span>{`exit ${exitCode}`}</span>;
      }
      render(
        <TermstreamProvider client={client}>
          <Output />
        </TermstreamProvider>,
      );
      await screen.findByText('exit 0', undefined, { timeout: 30_000 });
      expect(last).toBe(Array.from({ length: 3000 }, (_, i) => `n${i + 1}\n`).join(''));
      expect(proxy.cuts).toBeGreaterThan(0);
    } finally {
      clearInterval(timer);
      cleanup();
      await proxy.close();
      await cutServer.cleanup();
    }
  }, 60_000);
});

describe('<Terminal>', () => {
  it('shows the session, sends keystrokes and its size, and falls back to the DOM renderer without WebGL', async () => {
    await server.createSession({ id: 'term-pty', argv: ['bash', '-c', 'echo early-$((6*7)); exec bash --norc --noprofile'], cols: 80, rows: 24 });
    // Printed before the terminal exists: it must come with the screen on attach.
    await waitFor(async () => expect((await server.call('GET', '/api/sessions/term-pty/output?since=0')).body).toContain('early-42'));
    const client = newClient();
    let term: XTerm | null = null;
    let renderer = '';
    render(
      <TermstreamProvider client={client}>
        <Terminal
          sessionId="term-pty"
          options={{ cols: 90, rows: 20 }}
          onReady={(t, r) => {
            term = t;
            renderer = r;
          }}
        />
      </TermstreamProvider>,
    );
    await waitFor(() => expect(term).not.toBeNull(), { timeout: 5000 });
    expect(renderer).toBe('dom');
    await waitFor(() => expect(bufferText(term!)).toContain('early-42'));
    await act(async () => {
      term!.input('echo hi-$((40+2))\r');
    });
    await waitFor(() => expect(bufferText(term!)).toContain('hi-42'), { timeout: 5000 });
    await waitFor(async () => {
      const info = await server.call('GET', '/api/sessions/term-pty');
      expect([info.body.cols, info.body.rows]).toEqual([90, 20]);
    });
    cleanup();
    expect(term).toBeNull();
  });

  it('sends the terminal\'s answer to a query as a response, typed keys as input', async () => {
    await server.createSession({ id: 'term-ask', argv: ['bash', '-c', `read -r go; printf '\\e[6n'; IFS= read -rsd R r; printf 'got:%q\\n' "$r"; exec sleep 60`], cols: 80, rows: 24 });
    // The input as it goes out on the socket.
    const sent: Record<string, unknown>[] = [];
    class Recording extends WebSocket {
      override send(data: any, ...rest: any[]): void {
        const m = JSON.parse(String(data));
        if (m.type === 'terminal.input') sent.push(m);
        (super.send as (...a: unknown[]) => void)(data, ...rest);
      }
    }
    const client = createWebSocketClient(undefined, { url: server.url, WebSocket: Recording as unknown as WebSocketConstructor, lifecycle: null });
    let term: XTerm | null = null;
    render(
      <TermstreamProvider client={client}>
        <Terminal sessionId="term-ask" options={{ cols: 80, rows: 24 }} onReady={(t) => (term = t)} />
      </TermstreamProvider>,
    );
    await waitFor(() => expect(term).not.toBeNull(), { timeout: 5000 });
    await waitFor(async () => expect((await server.call('GET', '/api/sessions/term-ask')).body.cols).toBe(80));
    await act(async () => {
      term!.input('go\r');
    });
    await waitFor(() => expect(bufferText(term!)).toMatch(/got:\$'\\E\[\d+;\d+'/), { timeout: 5000 });
    expect(sent.map((m) => [m.data, m.response])).toEqual([
      ['go\r', undefined],
      [expect.stringMatching(/^\x1b\[\d+;\d+R$/), true],
    ]);
    cleanup();
  });

  it('read-only sends no input and no size', async () => {
    await server.createSession({ id: 'term-ro', argv: ['bash', '--norc', '--noprofile'], cols: 80, rows: 24 });
    const client = newClient();
    const sent: string[] = [];
    const send = client.send.bind(client);
    client.send = (type, payload) => {
      sent.push(type);
      send(type, payload);
    };
    let term: XTerm | null = null;
    render(
      <TermstreamProvider client={client}>
        <Terminal sessionId="term-ro" readOnly options={{ cols: 90, rows: 20 }} onReady={(t) => (term = t)} />
      </TermstreamProvider>,
    );
    await waitFor(() => expect(term).not.toBeNull(), { timeout: 5000 });
    await act(async () => {
      term!.input('echo nope\r');
    });
    expect(sent).not.toContain('terminal.input');
    expect(sent).not.toContain('terminal.resize');
  });

  it('tells the user in the terminal when a paste cannot be queued, instead of throwing out of onData', async () => {
    // Nothing listens on port 1: the client stays disconnected and queues, up to 200 bytes.
    const client = createWebSocketClient(undefined, { url: 'http://127.0.0.1:1', maxQueueBytes: 200, ...options() });
    let term: XTerm | null = null;
    render(
      <TermstreamProvider client={client}>
        <Terminal sessionId="term-full" options={{ cols: 100, rows: 20 }} onReady={(t) => (term = t)} />
      </TermstreamProvider>,
    );
    await waitFor(() => expect(term).not.toBeNull(), { timeout: 5000 });
    await act(async () => {
      term!.input('x'.repeat(300));
    });
    await waitFor(() => expect(bufferText(term!)).toMatch(/\[input not sent: with it the queue kept while disconnected would hold \d+ bytes, more than its 200\]/));
    cleanup();
  });

  it('tells the user in the terminal when the server drops input (rate_limited), as when the client refuses it', async () => {
    // A socket may send 1000 bytes at once, then 100 a second: a
    // 3000-byte paste (one message) is dropped.
    const limited = await TestServer.start({ env: { TERMSTREAM_WS_INPUT_BURST_BYTES: '1000', TERMSTREAM_WS_INPUT_BYTES_PER_SEC: '100' } });
    try {
      await limited.createSession({ id: 'term-limited', kind: 'command', argv: ['cat'] });
      const client = createWebSocketClient(undefined, { url: limited.url, ...options() });
      let term: XTerm | null = null;
      render(
        <TermstreamProvider client={client}>
          <Terminal sessionId="term-limited" options={{ cols: 100, rows: 20 }} onReady={(t) => (term = t)} />
        </TermstreamProvider>,
      );
      await waitFor(() => expect(term).not.toBeNull(), { timeout: 5000 });
      await act(async () => {
        term!.input('x'.repeat(3000));
      });
      await waitFor(() => expect(bufferText(term!)).toContain('[input over 100 bytes/s was dropped; send it again later]'));
      cleanup();
    } finally {
      await limited.cleanup();
    }
  });
});

describe('<TerminalView>', () => {
  it('shows output, errors and info in colour, follows the bottom, clears and exports', async () => {
    await server.createSession({ id: 'view-job', kind: 'command', command: 'echo good; echo bad >&2; sleep 0.1' });
    const client = newClient();
    render(
      <TermstreamProvider client={client}>
        <TerminalView sessionIds={['view-job']} />
      </TermstreamProvider>,
    );
    await waitFor(() => expect(screen.getByRole('status').dataset.state).toBe('connected'));
    // The exit notice comes after all of the session's output.
    await waitFor(() => expect(kinds()).toContainEqual(['info', '[session view-job exited, exit code 0]\n']));
    expect(await server.call('POST', '/api/events', { type: 'task_status', taskId: 'build-7', status: 'done' })).toMatchObject({ status: 202 });
    await waitFor(() => expect(kinds()).toContainEqual(['info', '[task build-7] done']));
    expect(kinds()).toContainEqual(['output', 'good\n']);
    expect(kinds()).toContainEqual(['error', 'bad\n']);
    expect((document.querySelector('[data-kind=output]') as HTMLElement).style.color).toBe('#4ade80');
    expect((document.querySelector('[data-kind=error]') as HTMLElement).style.color).toBe('#f87171');

    // Scrolled up: following stops; the button brings it back.
    const box = screen.getByTestId('terminal-view-output');
    Object.defineProperty(box, 'scrollHeight', { configurable: true, value: 1000 });
    Object.defineProperty(box, 'clientHeight', { configurable: true, value: 200 });
    box.scrollTop = 100;
    fireEvent.scroll(box);
    expect(box.dataset.follow).toBe('false');
    fireEvent.click(screen.getByText('Scroll to bottom'));
    expect(box.dataset.follow).toBe('true');
    expect(box.scrollTop).toBe(1000);

    let exported: Blob | null = null;
    vi.spyOn(URL, 'createObjectURL').mockImplementation((b) => {
      exported = b as Blob;
      return 'blob:x';
    });
    vi.spyOn(URL, 'revokeObjectURL').mockImplementation(() => {});
    fireEvent.click(screen.getByText('Export'));
    const text = await exported!.text();
    expect(text).toContain('good\n');
    expect(text).toContain('bad\n');
    expect(text).toContain('[task build-7] done\n');

    fireEvent.click(screen.getByText('Clear'));
    expect(kinds()).toEqual([]);
  });

  it("002's integration example renders", async () => {
    // ---- 002-websocket-integration.md, "Integration Example", unchanged ----
    function TerminalPage() {
      return (
        <div className="space-y-6">
          <h1>Terminal</h1>
          <TerminalView />
        </div>
      );
    }
    // ---- end of the example ----
    render(
      <TermstreamProvider client={newClient()}>
        <TerminalPage />
      </TermstreamProvider>,
    );
    await waitFor(() => expect(screen.getByRole('status').dataset.state).toBe('connected'));
  });
});

function kinds(): [string, string][] {
  return [...document.querySelectorAll('[data-kind]')].map((e) => [(e as HTMLElement).dataset.kind!, e.textContent ?? '']);
}

function bufferText(term: XTerm): string {
  const b = term.buffer.active;
  const lines: string[] = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
  return lines.join('\n');
}

