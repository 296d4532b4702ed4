// @vitest-environment happy-dom
// <Terminal> with a WebGL addon that loads, then loses its context: the addon
// is disposed (xterm.js goes back to its DOM renderer) and output still shows.
import { act, cleanup, configure, render, waitFor } from '@testing-library/react';
import type { Terminal as XTerm } from '@xterm/xterm';
import { afterEach, expect, it, vi } from 'vitest';
import { createWebSocketClient } from '../../src/index.js';
import { Terminal, TermstreamProvider } from '../../src/react/index.js';
import { fakeServer } from '../unit/fake-socket.js';

// A loaded machine can be slow: wait for conditions up to 10 s, never sleep.
configure({ asyncUtilTimeout: 10_000 });

const webgl = vi.hoisted(() => ({ lost: [] as (() => void)[], disposed: 0, activated: 0 }));
vi.mock('@xterm/addon-webgl', () => ({
  WebglAddon: class {
    activate() {
      webgl.activated++;
    }
    dispose() {
      webgl.disposed++;
    }
    onContextLoss(cb: () => void) {
      webgl.lost.push(cb);
      return { dispose() {} };
    }
  },
}));

afterEach(cleanup);

it('a lost WebGL context disposes the addon and the terminal carries on', async () => {
  const server = fakeServer();
  const client = createWebSocketClient(undefined, { url: 'http://srv', WebSocket: server.WebSocket, lifecycle: null });
  let term: XTerm | null = null;
  let renderer = '';
  render(
    <TermstreamProvider client={client}>
      <Terminal sessionId="w" readOnly onReady={(t, r) => ((term = t), (renderer = r))} />
    </TermstreamProvider>,
  );
  await waitFor(() => expect(term).not.toBeNull(), { timeout: 5000 });
  expect(renderer).toBe('webgl');
  expect(webgl.activated).toBe(1);
  act(() => {
    server.last.accept();
  });
  expect(server.last.ofType('session.attach')).toEqual([{ type: 'session.attach', sessionId: 'w', output: 'binary' }]);

  webgl.lost.forEach((cb) => cb());
  expect(webgl.disposed).toBe(1);

  act(() => {
    server.last.message({ type: 'session.attached', sessionId: 'w', epoch: 'e', offset: 0, cols: 80, rows: 24, status: 'running' });
    server.last.output('w', 0, 'still here\r\n');
  });
  await waitFor(() => expect(term!.buffer.active.getLine(0)?.translateToString(true)).toBe('still here'));
});
