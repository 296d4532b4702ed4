/**
 * `useTerminalStream(sessionId)`: a session's output as text, in the shape
 * `004-terminal-streaming-api.md` shows (`{output, isConnected}`), built on
 * the client's resumable attach, so a reconnect (or a cluster node letting
 * go of its copy of the session) neither repeats nor loses output. The text
 * is bounded: only the last `maxOutput` characters are kept.
 */

import { useCallback, useEffect, useMemo, useSyncExternalStore } from 'react';
import { isDeletion, type ErrorCode, type GapInfo, type SessionStatus, type WebSocketClient } from '../index.js';
import { useClient } from './context.js';

/** What `useTerminalStream` returns. */
export interface TerminalStream {
  /** The output so far (the last `maxOutput` characters); a pty session starts with its screen. */
  output: string;
  /** Whether the socket is up and the session attached. */
  isConnected: boolean;
  /** The exit code once the program ended (null for a signal or a lost session). */
  exitCode: number | null;
  /** The session's status as last reported. */
  status: SessionStatus | null;
  /** Output the server said it skipped. */
  gaps: GapInfo[];
  /**
   * The last error the server gave about the session since it was last
   * attached, or null (an attach clears it): a session that does not exist
   * (the attach refused after its wait), or was deleted (while shown or
   * while the client was away), is `session_not_found`; an attach refused
   * because the socket's attachment slots are all taken is `rate_limited`
   * (the attach is over: mount the hook again to ask again); refused input is
   * `session_not_running`, `read_only`, `busy`, ... A `session_not_found`
   * the server does not mark as the attach's refusal (`request`) is
   * reported only while the session is not attached: a server older than
   * that field marks none, so this is how its refusal of the attach shows;
   * input sent while the attach waits for the session to be created
   * (`request` `terminal.input` from a newer server) shows its refusal
   * until the attach clears it.
   */
  error: { code: ErrorCode; message: string } | null;
  /** Sends input to the program. */
  input: (data: string) => void;
  /** Forgets the output held so far. */
  clear: () => void;
}

interface Snapshot {
  output: string;
  attached: boolean;
  exitCode: number | null;
  status: SessionStatus | null;
  gaps: GapInfo[];
  error: { code: ErrorCode; message: string } | null;
}

/** One hook's state: written by the attach callbacks, read by React. */
class StreamStore {
  snapshot: Snapshot = { output: '', attached: false, exitCode: null, status: null, gaps: [], error: null };
  private listeners = new Set<() => void>();

  constructor(private readonly max: number) {}

  subscribe = (l: () => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };

  get = () => this.snapshot;

  update(change: Partial<Snapshot>): void {
    this.snapshot = { ...this.snapshot, ...change };
    for (const l of [...this.listeners]) l();
  }

  append(text: string): void {
    let output = this.snapshot.output + text;
    if (output.length > this.max) output = output.slice(output.length - this.max);
    this.update({ output });
  }
}

/** Attaches `sessionId` while mounted and returns its output as text. */
export function useTerminalStream(sessionId: string, options: { maxOutput?: number; client?: WebSocketClient } = {}): TerminalStream {
  const client = useClient(options.client);
  const max = options.maxOutput ?? 1 << 20;
  const store = useMemo(() => new StreamStore(max), [client, sessionId, max]);
  const handle = useMemo(() => {
    let h: ReturnType<WebSocketClient['attach']> | null = null;
    return {
      set: (x: typeof h) => (h = x),
      input: (data: string) => h?.input(data),
    };
  }, [store]);

  useEffect(() => {
    const h = client.attach(sessionId, {
      onAttached: (a) => store.update({ attached: true, status: a.status, error: null }),
      onRestore: (r) => store.update({ output: r.data.slice(-max) }),
      onOutput: (text) => store.append(text),
      onGap: (g) => store.update({ gaps: [...store.snapshot.gaps, g] }),
      onExit: (e) => store.update({ exitCode: e.exitCode, status: e.status }),
      // Unasked (a detach of our own is not reported, and a cluster node's
      // release is followed by the client): the session was deleted, or
      // (a reason this client does not know) the server ended the
      // attachment for another cause, which is only told as not attached.
      onDetached: (d) =>
        store.update(
          isDeletion(d)
            ? { attached: false, error: { code: 'session_not_found', message: `session ${sessionId} was deleted` } }
            : { attached: false },
        ),
      onError: ({ code, message, request }) => {
        // Attached, an unmarked session_not_found answers input or a resize
        // racing a deletion, which onDetached reports.
        // An attach refused (the first, or one after a reconnect or a
        // cluster node's release) leaves nothing attached.
        if (request === 'session.attach') return store.update({ attached: false, error: { code, message } });
        const report = code !== 'session_not_found' || !store.snapshot.attached;
        if (report) store.update({ error: { code, message } });
      },
    });
    handle.set(h);
    const off = client.onStateChange((s) => s !== 'connected' && store.update({ attached: false }));
    return () => {
      off();
      h.detach();
      handle.set(null);
    };
  }, [client, sessionId, store, handle, max]);

  const snap = useSyncExternalStore(store.subscribe, store.get, store.get);
  const clear = useCallback(() => store.update({ output: '' }), [store]);
  return {
    output: snap.output,
    isConnected: snap.attached && client.state === 'connected',
    exitCode: snap.exitCode,
    status: snap.status,
    gaps: snap.gaps,
    error: snap.error,
    input: handle.input,
    clear,
  };
}
