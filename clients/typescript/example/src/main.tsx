// A dashboard page as an application would write it, against the installed package.
import {
  createWebSocketClient,
  type ConnectionState,
  type ErrorCode,
  type ErrorMessage,
  type ExitMessage,
  type FocusState,
  type SessionHandle,
  FocusError,
  QueueFullError,
} from '@termstream/client';
import { Terminal, TerminalView, TermstreamProvider, useFocus, useTerminalStream, useWebSocket } from '@termstream/client/react';
import { useEffect } from 'react';
import { createRoot } from 'react-dom/client';

const client = createWebSocketClient(() => fetch('/my-token').then((r) => r.text()), {
  url: 'https://terminals.example.com',
  reconnect: { maxAttempts: Infinity },
});
client.onStateChange((state: ConnectionState, previous) => console.log(`${previous} -> ${state}`));
const stop = client.subscribe('task_status', (m) => console.log(m.taskId, m.status));
const job: SessionHandle = client.attach('build', {
  onOutput: (text: string, { offset }) => console.log(offset, text),
  onExit: ({ exitCode }) => console.log('exit', exitCode),
  onGap: ({ from, to, reason }) => console.warn(`skipped ${from}..${to}: ${reason}`),
});
const raw = client.attach('shell', { output: 'binary', onOutput: (bytes: Uint8Array) => console.log(bytes.length) });
raw.resize(120, 40);
try {
  job.input('make\n');
} catch (e) {
  if (e instanceof QueueFullError) console.error(e.bytes, e.limit);
}
void client.focus('web').focus('build').then(
  (s: FocusState) => console.log(s.version),
  (e: unknown) => e instanceof FocusError && e.code === 'read_only' && console.warn(e.message),
);
// Errors as the server sends them, and as an attachment is told them.
client.subscribe<ErrorMessage>('error', (m) => console.warn(m.code, m.message, m.sessionId));
client.subscribe<ExitMessage>('session.exit', (m) => console.log(m.sessionId, m.exitCode));
client.attach('deploy', {
  onError: ({ code, message }) => {
    const known: ErrorCode = code;
    if (known === 'session_not_found') console.warn(message);
  },
});
stop();

function Panel({ sessionId }: { sessionId: string }) {
  const { state, isConnected, subscribe } = useWebSocket();
  const { output, exitCode } = useTerminalStream(sessionId);
  const { focusedSessions, version, focus } = useFocus('web');
  useEffect(() => subscribe('notification', (m) => console.log(m.title)), [subscribe]);
  useEffect(() => subscribe('terminal_output', (m) => console.log(m.sessionId, m.data.type, m.data.output.length)), [subscribe]);
  return (
    <div>
      <p>
        {state} {String(isConnected)} {exitCode ?? '-'} v{version} {focusedSessions.join(',')}
      </p>
      <button type="button" onClick={() => void focus(sessionId)}>
        focus
      </button>
      <pre>{output}</pre>
      <Terminal sessionId={sessionId} readOnly={false} options={{ fontSize: 13 }} />
      <TerminalView sessionIds={[sessionId]} />
    </div>
  );
}

createRoot(document.getElementById('root')!).render(
  <TermstreamProvider url="https://terminals.example.com" token="tst_example">
    <Panel sessionId="build" />
  </TermstreamProvider>,
);
