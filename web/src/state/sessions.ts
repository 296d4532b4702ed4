/**
 * The list of sessions as the page knows it: records from `GET
 * /api/sessions` (plus viewer counts from `GET /terminal/sessions`), kept
 * live by `session_update` events (status and viewer count). Pure: no
 * fetching here, only merging and formatting, so the rules are unit-tested.
 */

export type SessionStatus = 'starting' | 'running' | 'terminating' | 'exited' | 'failed' | 'lost' | string;

/** A session's record, as the server's `SessionInfo` (camelCase). */
export interface SessionInfo {
  id: string;
  kind: 'pty' | 'command';
  argv: string[];
  cwd: string;
  project: string;
  status: SessionStatus;
  epoch: string;
  outputOffset: number;
  cols: number;
  rows: number;
  pid?: number;
  createdAt: number;
  startedAt?: number;
  endedAt?: number;
  exitCode?: number;
  signal?: number;
  durationMs?: number;
  error?: string;
}

export interface SessionRow extends SessionInfo {
  /** WebSocket clients watching now (a full refresh, then `viewers` events). */
  viewers: number;
}

/** A `session_update` event of the `sessions` channel. */
export interface SessionUpdate {
  type: 'session_update';
  sessionId: string;
  project?: string | null;
  change: 'created' | 'status' | 'viewers' | 'deleted';
  status?: SessionStatus | null;
  /** With `viewers`: how many WebSocket clients watch now. */
  viewers?: number;
  /**
   * With `deleted`: `released` when the server's node let go of its copy of
   * another node's session, which may still exist (and be `created` again);
   * none for a real deletion.
   */
  reason?: string;
  timestamp?: number;
}

export type SessionMap = ReadonlyMap<string, SessionRow>;

/** The list from a full refresh. */
export function fromList(list: SessionInfo[], viewers: Record<string, number>): SessionMap {
  return new Map(list.map((s) => [s.id, { ...s, viewers: viewers[s.id] ?? 0 }]));
}

/**
 * Applies an event. Returns the new map and whether a full refresh is
 * needed (a session we do not know yet or made again, or an end whose exit
 * code we lack).
 */
export function applyUpdate(m: SessionMap, u: SessionUpdate, now: number): { map: SessionMap; refresh: boolean } {
  const next = new Map(m);
  const known = next.get(u.sessionId);
  if (u.change === 'deleted') {
    next.delete(u.sessionId);
    return { map: next, refresh: false };
  }
  // Unknown, or `created` for a known id (made again under its id, the
  // deletion missed or undone by a list fetched before it): fetch the record.
  if (!known || u.change === 'created') return { map: m, refresh: true };
  if (u.change === 'viewers') {
    if (typeof u.viewers === 'number') next.set(u.sessionId, { ...known, viewers: u.viewers });
    return { map: next, refresh: false };
  }
  const status = u.status ?? known.status;
  const ended = !isLive(status) && isLive(known.status);
  next.set(u.sessionId, { ...known, status, endedAt: ended ? (known.endedAt ?? u.timestamp ?? now) : known.endedAt });
  return { map: next, refresh: ended };
}

/** Whether the program of a session with this status may still run. */
export function isLive(status: SessionStatus): boolean {
  return status === 'running' || status === 'starting' || status === 'terminating';
}

/** Running sessions first, then newest first. */
export function sortedRows(m: SessionMap): SessionRow[] {
  return [...m.values()].sort((a, b) => {
    const live = Number(isLive(b.status)) - Number(isLive(a.status));
    return live !== 0 ? live : b.createdAt - a.createdAt || a.id.localeCompare(b.id);
  });
}

/** Milliseconds the session ran (to `now` while running). */
export function durationOf(s: SessionInfo, now: number): number | null {
  if (s.startedAt === undefined) return null;
  if (s.endedAt !== undefined) return Math.max(0, s.endedAt - s.startedAt);
  if (s.durationMs !== undefined && !isLive(s.status)) return s.durationMs;
  return Math.max(0, now - s.startedAt);
}

/** `850ms`, `12s`, `3m 04s`, `2h 05m`. */
export function formatDuration(ms: number | null): string {
  if (ms === null) return '';
  if (ms < 1000) return `${ms}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

const SIGNALS: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 6: 'SIGABRT', 9: 'SIGKILL', 13: 'SIGPIPE', 15: 'SIGTERM' };

/** `exit 0`, `SIGKILL`, or empty while running. */
export function formatExit(s: SessionInfo): string {
  if (s.signal !== undefined) return SIGNALS[s.signal] ?? `signal ${s.signal}`;
  if (s.exitCode !== undefined) return `exit ${s.exitCode}`;
  return '';
}

/** How an ended session went: `ok` (exit 0), `bad` (another code, a signal, or failed/lost), or `` while it runs. */
export function outcome(s: Pick<SessionInfo, 'status' | 'exitCode' | 'signal'>): 'ok' | 'bad' | '' {
  if (isLive(s.status)) return '';
  return s.exitCode === 0 && s.signal === undefined ? 'ok' : 'bad';
}

/** The command as one line: argv joined, quoting what needs it. */
export function commandLine(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * A form's program: an argv given as JSON (`["ls","-l"]`) or words split on
 * spaces with single and double quotes, or null for a command line run by
 * the shell.
 */
export function parseArgv(text: string): string[] | null {
  const t = text.trim();
  if (t === '') return null;
  if (t.startsWith('[')) {
    const v: unknown = JSON.parse(t);
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string')) {
      throw new Error('argv must be a non-empty JSON array of strings');
    }
    return v as string[];
  }
  const out: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let any = false;
  for (const ch of t) {
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      any = true;
    } else if (/\s/.test(ch)) {
      if (cur !== '' || any) out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += ch;
    }
  }
  if (quote) throw new Error(`unclosed ${quote}`);
  if (cur !== '' || any) out.push(cur);
  return out;
}
