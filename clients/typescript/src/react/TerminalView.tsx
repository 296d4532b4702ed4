/**
 * `<TerminalView />`: the panel of `002-websocket-integration.md`. Terminal
 * output, task status, notifications, activity and connection messages in one
 * scrolling view, coloured by kind (green output, red errors, blue info);
 * auto-scroll that stops when the user scrolls up and resumes at the bottom;
 * a connection status indicator; Clear; and Export (the history as a text
 * file). It shows the output of every session the client attached, and
 * attaches `sessionIds` itself while mounted. The history is bounded.
 */

import { type CSSProperties, useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { ConnectionState, ServerMessage, TerminalOutputMessage } from '../index.js';
import { useWebSocket } from './context.js';

/** One entry of the view. */
export interface ViewEntry {
  kind: 'output' | 'error' | 'info';
  text: string;
  sessionId?: string;
  time: number;
}

/** Props of `<TerminalView>`. */
export interface TerminalViewProps {
  /** Sessions to attach while mounted (their output shows with any other attached session's). */
  sessionIds?: string[];
  /** Characters of history kept (oldest entries go first). Default 1 MiB. */
  maxChars?: number;
  title?: string;
  className?: string;
  style?: CSSProperties;
}

const COLOURS: Record<ViewEntry['kind'], string> = { output: '#4ade80', error: '#f87171', info: '#60a5fa' };
const STATE_COLOURS: Record<ConnectionState, string> = {
  connected: '#4ade80',
  connecting: '#facc15',
  reconnecting: '#facc15',
  disconnected: '#9ca3af',
  error: '#f87171',
};

const EMPTY = { entries: [] as ViewEntry[], chars: 0 };

/**
 * `history` with `e` added: output of the same kind and session as the last
 * entry extends it, and the oldest characters go past `max`.
 */
export function appendEntry(history: { entries: ViewEntry[]; chars: number }, e: Omit<ViewEntry, 'time'>, max: number): { entries: ViewEntry[]; chars: number } {
  const entries = history.entries.slice();
  const last = entries[entries.length - 1];
  if (last && e.kind !== 'info' && last.kind === e.kind && last.sessionId === e.sessionId) {
    entries[entries.length - 1] = { ...last, text: last.text + e.text };
  } else {
    entries.push({ ...e, time: Date.now() });
  }
  let chars = history.chars + e.text.length;
  while (chars > max && entries.length > 0) {
    const first = entries[0]!;
    const over = chars - max;
    if (first.text.length > over) {
      entries[0] = { ...first, text: first.text.slice(over) };
      chars -= over;
    } else {
      entries.shift();
      chars -= first.text.length;
    }
  }
  return { entries, chars };
}

/** The history as the text file Export downloads. */
export function formatHistory(entries: readonly ViewEntry[]): string {
  return entries.map((e) => (e.kind === 'output' ? e.text : e.kind === 'error' ? e.text : `${e.text}\n`)).join('');
}

/** The view of one non-output message, or null for messages the view does not show. */
function describe(m: ServerMessage): Omit<ViewEntry, 'time'> | null {
  switch (m.type) {
    case 'task_status':
      return { kind: 'info', text: `[task ${String(m.taskId)}] ${String(m.status)}` };
    case 'notification':
      return { kind: 'info', text: `[${String(m.title)}] ${String(m.message)}` };
    case 'activity_log':
      return { kind: m.level === 'error' ? 'error' : 'info', text: `[${String(m.level)}] ${String(m.message)}` };
    case 'error':
      return { kind: 'error', text: `[error ${String(m.code)}] ${String(m.message ?? '')}` };
    default:
      return null;
  }
}

/** The panel. */
export function TerminalView({ sessionIds, maxChars = 1 << 20, title = 'Terminal', className, style }: TerminalViewProps) {
  const { state, subscribe, client } = useWebSocket();
  const [history, setHistory] = useState<{ entries: ViewEntry[]; chars: number }>(EMPTY);
  const entries = history.entries;
  const [follow, setFollow] = useState(true);
  const scroller = useRef<HTMLDivElement>(null);

  const push = useCallback(
    (e: Omit<ViewEntry, 'time'>) => setHistory((prev) => appendEntry(prev, e, maxChars)),
    [maxChars],
  );

  useEffect(() => {
    const offs = [
      subscribe<TerminalOutputMessage>('terminal_output', (m) => push({ kind: m.data.type, text: m.data.output, sessionId: m.sessionId })),
      ...['task_status', 'notification', 'activity_log', 'error'].map((t) =>
        subscribe(t, (m) => {
          const d = describe(m);
          if (d) push(d);
        }),
      ),
    ];
    return () => offs.forEach((off) => off());
  }, [subscribe, push]);

  const ids = (sessionIds ?? []).join('\n');
  useEffect(() => {
    const handles = ids ? ids.split('\n').map((id) => client.attach(id)) : [];
    return () => handles.forEach((h) => h.detach());
  }, [client, ids]);

  const lastState = useRef<ConnectionState | null>(null);
  useEffect(() => {
    if (lastState.current !== null && lastState.current !== state) push({ kind: state === 'error' ? 'error' : 'info', text: `Connection: ${state}` });
    lastState.current = state;
  }, [state, push]);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [entries, follow]);

  const onScroll = useCallback(() => {
    const el = scroller.current;
    if (!el) return;
    setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < 8);
  }, []);

  const exportHistory = useCallback(() => {
    const blob = new Blob([formatHistory(entries)], { type: 'text/plain;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = `terminal-${new Date().toISOString().replace(/[:.]/g, '-')}.txt`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 0);
  }, [entries]);

  return (
    <section className={className} style={{ display: 'flex', flexDirection: 'column', background: '#111827', color: '#e5e7eb', borderRadius: 6, ...style }} aria-label={title}>
      <header style={{ display: 'flex', alignItems: 'center', gap: 8, padding: '4px 8px', borderBottom: '1px solid #374151' }}>
        <strong style={{ flex: 1 }}>{title}</strong>
        <span role="status" data-state={state} style={{ color: STATE_COLOURS[state] }}>
          ● {state}
        </span>
        {!follow && (
          <button type="button" onClick={() => setFollow(true)}>
            Scroll to bottom
          </button>
        )}
        <button type="button" onClick={() => setHistory(EMPTY)}>
          Clear
        </button>
        <button type="button" onClick={exportHistory} disabled={entries.length === 0}>
          Export
        </button>
      </header>
      <div
        ref={scroller}
        onScroll={onScroll}
        data-testid="terminal-view-output"
        data-follow={follow}
        style={{ flex: 1, overflowY: 'auto', minHeight: 200, maxHeight: 480, padding: 8, fontFamily: 'ui-monospace, monospace', fontSize: 13 }}
      >
        <pre style={{ margin: 0, whiteSpace: 'pre-wrap', wordBreak: 'break-all' }}>
          {entries.map((e, i) => (
            <span key={i} data-kind={e.kind} style={{ color: COLOURS[e.kind], display: e.kind === 'output' || e.kind === 'error' ? 'inline' : 'block' }}>
              {e.text}
            </span>
          ))}
        </pre>
      </div>
    </section>
  );
}
