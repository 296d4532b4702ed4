// @vitest-environment happy-dom
// useFocus against the fake socket (the focus protocol of issue 12).
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, expect, it } from 'vitest';
import { createWebSocketClient } from '../../src/index.js';
import { TermstreamProvider, useFocus } from '../../src/react/index.js';
import { fakeServer } from '../unit/fake-socket.js';

afterEach(cleanup);

function Focus() {
  const { focusedSessions, version, maxFocused, focus, blur } = useFocus('web');
  return (
    <div>
      <span data-testid="state">{`${focusedSessions.join(',')} v${version} max${maxFocused}`}</span>
      <button type="button" onClick={() => void focus('s2').catch(() => {})}>
        focus s2
      </button>
      <button type="button" onClick={() => void blur('s1').catch(() => {})}>
        blur s1
      </button>
    </div>
  );
}

it('useFocus renders what the server says and asks it to change', async () => {
  const server = fakeServer();
  const client = createWebSocketClient(undefined, { url: 'http://srv', WebSocket: server.WebSocket, lifecycle: null });
  render(
    <TermstreamProvider client={client}>
      <Focus />
    </TermstreamProvider>,
  );
  await act(async () => {
    await new Promise((r) => setTimeout(r, 0));
  });
  const socket = server.last;
  act(() => {
    socket.accept();
  });
  expect(socket.ofType('sync_request')).toEqual([{ type: 'sync_request', projectId: 'web' }]);
  expect(screen.getByTestId('state').textContent).toBe(' vnull maxnull');
  act(() => socket.message({ type: 'sync_complete', projectId: 'web', focusedSessions: ['s1'], version: 3, maxFocused: 4, timestamp: 1 }));
  expect(screen.getByTestId('state').textContent).toBe('s1 v3 max4');
  fireEvent.click(screen.getByText('focus s2'));
  expect(socket.ofType('focus').at(-1)).toMatchObject({ sessionId: 's2', projectId: 'web', expectedVersion: 3 });
  act(() =>
    socket.message({ type: 'focus_update', projectId: 'web', sessionId: 's2', focused: true, focusedSessions: ['s1', 's2'], totalFocused: 2, maxFocused: 4, version: 4, timestamp: 2 }),
  );
  expect(screen.getByTestId('state').textContent).toBe('s1,s2 v4 max4');
  fireEvent.click(screen.getByText('blur s1'));
  expect(socket.ofType('blur').at(-1)).toMatchObject({ sessionId: 's1', expectedVersion: 4 });
});

it('a focus asked without a catch and failed by the provider unmounting (disconnect) is no unhandled rejection', async () => {
  const unhandled: unknown[] = [];
  const record = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', record);
  try {
    const server = fakeServer();
    const client = createWebSocketClient(undefined, { url: 'http://srv', WebSocket: server.WebSocket, lifecycle: null });
    // The promise the click dropped, looked at only once the check is done.
    let asked: Promise<unknown> | null = null;
    function Careless() {
      const { focus } = useFocus('web');
      return (
        <button type="button" onClick={() => void (asked = focus('s2'))}>
          focus s2
        </button>
      );
    }
    const view = render(
      <TermstreamProvider client={client}>
        <Careless />
      </TermstreamProvider>,
    );
    act(() => {
      server.last.accept();
    });
    fireEvent.click(screen.getByText('focus s2'));
    expect(server.last.ofType('focus')).toHaveLength(1);
    view.unmount();
    // Node reports an unhandled rejection after the microtasks of the turn it happened in.
    await new Promise((r) => setTimeout(r, 50));
    expect(unhandled).toEqual([]);
    // ...and the focus did fail.
    await expect(asked).rejects.toMatchObject({ code: 'disconnected' });
  } finally {
    process.off('unhandledRejection', record);
  }
});
