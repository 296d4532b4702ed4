// @vitest-environment happy-dom
// useTerminalStream's `error` against the fake socket: cleared by an attach,
// and session_not_found while attached only for the attach's refusal or a deletion.
import { act, cleanup, render, screen } from '@testing-library/react';
import { afterEach, expect, it } from 'vitest';
import type { WebSocketClient } from '../../src/index.js';
import { useTerminalStream } from '../../src/react/index.js';
import { setup } from '../unit/fake-socket.js';

afterEach(() => cleanup());

function Output({ client }: { client: WebSocketClient }) {
  const { isConnected, error } = useTerminalStream('x', { client });
  return (
    <div>
      <span>{isConnected ? 'live' : 'offline'}</span>
      <span>{error ? `error ${error.code}` : 'no error'}</span>
    </div>
  );
}

const attached = { type: 'session.attached', sessionId: 'x', epoch: 'e', offset: 0, cols: 80, rows: 24, status: 'running' };

function shown() {
  const { server, client } = setup({ reconnect: { initialDelay: 1, jitter: 0 } });
  client.connect();
  const s = server.last.accept();
  render(<Output client={client} />);
  return { server, client, s };
}

it('an error is cleared when the session is attached again', async () => {
  const { server, s } = shown();
  act(() => s.message(attached));
  expect(screen.getByText('live')).toBeTruthy();
  act(() => s.message({ type: 'error', code: 'busy', message: 'input is full', sessionId: 'x' }));
  expect(screen.getByText('error busy')).toBeTruthy();
  act(() => s.drop());
  await screen.findByText('offline');
  const t = await new Promise<typeof s>((resolve) => {
    const poll = () => (server.sockets.length > 1 ? resolve(server.last) : setTimeout(poll, 1));
    poll();
  });
  act(() => {
    t.accept();
    t.message(attached);
  });
  expect(screen.getByText('live')).toBeTruthy();
  expect(screen.getByText('no error')).toBeTruthy();
});

it('session_not_found without request is shown only while not attached (an older server marks no attach refusal); with request session.attach always', () => {
  const { s } = shown();
  act(() => s.message({ type: 'error', code: 'session_not_found', message: 'no session', sessionId: 'x' }));
  expect(screen.getByText('error session_not_found')).toBeTruthy();
  act(() => s.message(attached));
  expect(screen.getByText('no error')).toBeTruthy();
  // Attached: it answers input racing a deletion, which the detach reports.
  act(() => s.message({ type: 'error', code: 'session_not_found', message: 'no session', sessionId: 'x' }));
  expect(screen.getByText('no error')).toBeTruthy();
  act(() => s.message({ type: 'error', code: 'session_not_found', message: 'no session', sessionId: 'x', request: 'session.attach' }));
  expect(screen.getByText('error session_not_found')).toBeTruthy();
});

it('released, then the attach again refused: not connected, with the refusal as the error', () => {
  const { s } = shown();
  act(() => s.message(attached));
  expect(screen.getByText('live')).toBeTruthy();
  act(() => s.message({ type: 'session.detached', sessionId: 'x', reason: 'released' }));
  act(() => s.message({ type: 'error', code: 'session_not_found', message: 'no session', sessionId: 'x', request: 'session.attach' }));
  expect(screen.getByText('error session_not_found')).toBeTruthy();
  expect(screen.getByText('offline')).toBeTruthy();
});

it('input refused while the attach waits (this server names it terminal.input) shows its refusal until the attach clears it', () => {
  const { s } = shown();
  act(() => s.message({ type: 'error', code: 'session_not_found', message: 'no session', sessionId: 'x', request: 'terminal.input', seq: 1 }));
  expect(screen.getByText('error session_not_found')).toBeTruthy();
  act(() => s.message(attached));
  expect(screen.getByText('no error')).toBeTruthy();
  // Attached: it answers input racing a deletion, which the detach reports.
  act(() => s.message({ type: 'error', code: 'session_not_found', message: 'no session', sessionId: 'x', request: 'terminal.input', seq: 2 }));
  expect(screen.getByText('no error')).toBeTruthy();
});
