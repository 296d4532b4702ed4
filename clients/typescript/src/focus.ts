/**
 * The focus set of one project, as the server says it is (issue 12,
 * `001-focus-sync-design.md`): clients only ask to change it and render what
 * the server sends.
 *
 * State is adopted from `focus_update`, `connection_status` and
 * `sync_complete`, and from a `version_conflict` error, whenever their
 * version is not older than the one held; the answer to the sync of each
 * new socket, and a conflict older than the version its request was sent
 * with, are adopted whatever their version. `focus(id)` and `blur(id)` send the
 * version held as `expectedVersion`; on a conflict they adopt the server's
 * state and ask again, unless the caller named the version itself, which
 * then fails with [`VersionConflictError`]. A request is asked again only
 * when the conflict's version differs from the version it was last sent
 * with: a conflict at a newer version means the project moved on (the
 * request may be one of several made at once, which conflict with each
 * other); one at an older version means the server's focus state is older
 * than the client's (its store was reset), whose state is then adopted
 * though older. A conflict at the version sent changes nothing, so it is
 * never answered with the same request again, and no conflict multiplies
 * the requests on their way: the pending requests for one session that
 * want the same are asked once. A request settles when a state arrives in
 * which it holds. Focus and blur are idempotent, so a request lost with a
 * socket is simply sent again after the reconnect.
 */

import type { ErrorCode } from './codes.js';
import type { ServerMessage } from './protocol.js';

/** A project's focus state. */
export interface FocusState {
  projectId: string;
  focusedSessions: string[];
  version: number;
  maxFocused?: number;
}

/** Thrown when a focus change named an `expectedVersion` that is stale. */
export class VersionConflictError extends Error {
  override name = 'VersionConflictError';
  constructor(readonly current: FocusState) {
    super(`focus version conflict: the project is at version ${current.version}`);
  }
}

/** A focus or blur the server refused (`read_only`, `session_not_found`, ...) or never answered. */
export class FocusError extends Error {
  override name = 'FocusError';
  constructor(
    /** The server's code, or `timeout` (no answer in time), `closed` (the tracker was closed) or `disconnected` (`client.disconnect()`). */
    readonly code: ErrorCode | 'timeout' | 'closed' | 'disconnected',
    message: string,
  ) {
    super(message);
  }
}

/** What a tracker needs from its client. */
export interface FocusIO {
  /** Sends now if the socket is open (and says so); otherwise does nothing (the tracker resends after a reconnect). */
  sendIfOpen(type: string, payload: Record<string, unknown>): boolean;
  /** Called by `close()`. */
  release(tracker: ProjectFocus): void;
}

interface Pending {
  focused: boolean;
  sessionId: string;
  explicit: number | undefined;
  /** The `expectedVersion` it was last sent with (`undefined`: none, or not sent yet). */
  sentWith: number | undefined;
  resolve: (s: FocusState) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** How long a focus request may wait for the state that settles it. */
export const FOCUS_REQUEST_TIMEOUT = 10_000;
const STATE_TYPES = new Set(['focus_update', 'connection_status', 'sync_complete']);
/**
 * The codes the server refuses a focus or blur with (besides
 * `version_conflict`); other errors naming the session answer other
 * messages (`session_not_running` for input to an ended session, ...).
 * `internal` stays: the server answers a focus with it when its focus store
 * fails (`FocusError::Store`). Input that fails to reach the program is
 * answered with it too, but only a server older than the naming of input
 * refusals sends that (and `session_not_found` for input or a resize
 * naming a missing id) with nothing to tell it from a focus's refusal;
 * later servers mark those `request: "terminal.input"` or
 * `"terminal.resize"` (see [`answersOther`]), which settle no focus.
 */
const REFUSALS = new Set(['session_not_found', 'project_mismatch', 'read_only', 'cluster_unavailable', 'internal']);

/**
 * Whether the server marked `m` as the answer to a request other than a
 * focus or blur: `request: "session.attach"` on a refused attach,
 * `"terminal.input"` on every refusal of input, `"terminal.resize"` on
 * every refusal of a resize (or any other request a later server names).
 * It settles no focus request.
 */
function answersOther(m: ServerMessage): boolean {
  return typeof m.request === 'string' && m.request !== 'focus' && m.request !== 'blur';
}

/** The focus set of one project; from `client.focus(projectId)`. */
export class ProjectFocus {
  private current: FocusState | null = null;
  private listeners = new Set<(s: FocusState) => void>();
  private pending: Pending[] = [];
  /** A state answering the sync of the current socket arrived. */
  private resynced = false;

  constructor(
    readonly projectId: string,
    private readonly io: FocusIO,
  ) {}

  /** The state last received, or `null` before the first. */
  get state(): FocusState | null {
    return this.current;
  }

  /** Calls `listener` with every new state; returns the function that stops it. */
  subscribe(listener: (s: FocusState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Asks the server to focus `sessionId`; settles with the state in which it is focused. */
  focus(sessionId: string, options: { expectedVersion?: number } = {}): Promise<FocusState> {
    return this.request(true, sessionId, options.expectedVersion);
  }

  /** Asks the server to unfocus `sessionId`; settles with the state in which it is not focused. */
  blur(sessionId: string, options: { expectedVersion?: number } = {}): Promise<FocusState> {
    return this.request(false, sessionId, options.expectedVersion);
  }

  /** Asks for the current state (also done on every (re)connect). */
  sync(): void {
    this.io.sendIfOpen('sync_request', { projectId: this.projectId });
  }

  /** Stops tracking: no more syncs after reconnects; pending requests fail. */
  close(): void {
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(new FocusError('closed', 'the focus tracker was closed'));
    }
    this.listeners.clear();
    this.io.release(this);
  }

  /** `client.disconnect()`: pending requests fail now (nothing would send them before a `connect()`). */
  disconnected(): void {
    for (const p of [...this.pending]) this.settle(p, new FocusError('disconnected', `disconnect() was called before ${p.sessionId} was ${p.focused ? 'focused' : 'blurred'}`));
  }

  /** The socket (re)opened: sync, and send again what is still pending. */
  opened(): void {
    this.resynced = false;
    this.sync();
    const asked = new Set<string>();
    for (const p of this.pending) {
      const key = `${p.focused}:${p.sessionId}:${p.explicit}`;
      if (!asked.has(key) && this.sendRequest(p)) asked.add(key);
    }
  }

  /** A message that names this project. */
  receive(m: ServerMessage): void {
    if (STATE_TYPES.has(m.type)) {
      // The first state after a (re)connect is the server's answer to the
      // sync: believed though older than the one held (the server restarted
      // with another focus store).
      const first = !this.resynced && m.type !== 'focus_update';
      if (first) this.resynced = true;
      this.adopt(m, first);
      return;
    }
    if (m.type !== 'error') return;
    if (m.code === 'version_conflict') {
      const version = typeof m.version === 'number' ? m.version : undefined;
      const id = typeof m.sessionId === 'string' ? m.sessionId : undefined;
      const mine = this.pending.filter((p) => id === undefined || p.sessionId === id);
      // Older than the state held, yet the answer to a request sent with a
      // newer version: the server's state is older than ours (its focus
      // store was reset), and its word is the one that counts.
      const behind = version !== undefined && mine.some((p) => p.sentWith !== undefined && version < p.sentWith);
      this.adopt(m, behind);
      const asked = new Set<string>();
      for (const p of mine) {
        if (!this.pending.includes(p) || this.holds(p)) continue;
        if (p.explicit !== undefined) this.settle(p, new VersionConflictError(this.current!));
        else if (version !== undefined && version !== p.sentWith) {
          // Several pending requests for one session wanting the same are asked once.
          const key = `${p.focused}:${p.sessionId}`;
          if (!asked.has(key) && this.sendRequest(p)) asked.add(key);
        }
      }
    } else if (typeof m.sessionId === 'string' && REFUSALS.has(String(m.code)) && !answersOther(m)) {
      for (const p of this.pending.filter((p) => p.sessionId === m.sessionId)) {
        this.settle(p, new FocusError(String(m.code), String(m.message ?? m.code)));
      }
    }
  }

  private request(focused: boolean, sessionId: string, explicit: number | undefined): Promise<FocusState> {
    return new Promise((resolve, reject) => {
      const p: Pending = { focused, sessionId, explicit, sentWith: undefined, resolve, reject, timer: undefined! };
      p.timer = setTimeout(
        () => this.settle(p, new FocusError('timeout', `no focus state settled ${sessionId} within ${FOCUS_REQUEST_TIMEOUT} ms`)),
        FOCUS_REQUEST_TIMEOUT,
      );
      this.pending.push(p);
      this.sendRequest(p);
    });
  }

  /** Sends `p` with the version held (or its explicit one) if the socket is open; says whether it did. */
  private sendRequest(p: Pending): boolean {
    const payload: Record<string, unknown> = { sessionId: p.sessionId, projectId: this.projectId, timestamp: Date.now() };
    const version = p.explicit ?? this.current?.version;
    if (version !== undefined) payload.expectedVersion = version;
    if (!this.io.sendIfOpen(p.focused ? 'focus' : 'blur', payload)) return false;
    for (const q of this.pending) if (q === p || (q.sessionId === p.sessionId && q.focused === p.focused && q.explicit === undefined)) q.sentWith = version;
    return true;
  }

  /** Adopts the state `m` carries unless it is older than the one held (or `evenOlder`). */
  private adopt(m: ServerMessage, evenOlder = false): void {
    if (!Array.isArray(m.focusedSessions) || typeof m.version !== 'number') return;
    if (this.current && m.version < this.current.version && !evenOlder) return;
    const next: FocusState = {
      projectId: this.projectId,
      focusedSessions: (m.focusedSessions as unknown[]).map(String),
      version: m.version,
    };
    const max = typeof m.maxFocused === 'number' ? m.maxFocused : this.current?.maxFocused;
    if (max !== undefined) next.maxFocused = max;
    this.current = next;
    for (const p of [...this.pending]) if (this.holds(p)) this.settle(p, null);
    for (const l of [...this.listeners]) l(next);
  }

  private holds(p: Pending): boolean {
    return this.current !== null && this.current.focusedSessions.includes(p.sessionId) === p.focused;
  }

  private settle(p: Pending, error: Error | null): void {
    const i = this.pending.indexOf(p);
    if (i < 0) return;
    this.pending.splice(i, 1);
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(this.current!);
  }
}
