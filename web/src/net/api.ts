/**
 * The REST calls the page makes. Same origin, so the login cookie (or a
 * loopback server without tokens) admits them; a refused credential becomes
 * an `ApiError` with status 401, and the page says that its login ended.
 */

import type { ProjectList } from '@termstream/client';
import type { SessionInfo } from '../state/sessions';

/**
 * Told what each call says of the page's credential: `false` when the
 * server refuses it (401: the login cookie ended or was never there), `true`
 * when a call succeeds (the server takes it, again).
 */
let credential: (accepted: boolean) => void = () => {};

/** Sets what a call's verdict on the credential does (the app's login banner). */
export function onCredential(f: (accepted: boolean) => void): void {
  credential = f;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * `fetch`, with a failure to reach the server (down, restarting, offline;
 * the browser says only "Failed to fetch") as an `ApiError` that says so.
 */
async function reach(path: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, 'unreachable', 'cannot reach the server (it may be down or restarting, or this browser offline); try again');
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await reach(path, init);
  if (!res.ok) {
    let code = 'http_error';
    let message = `HTTP ${res.status}`;
    try {
      const e = (await res.json()) as { error?: { code?: string; message?: string } };
      code = e.error?.code ?? code;
      message = e.error?.message ?? message;
    } catch {
      // Not JSON: keep the status.
    }
    if (res.status === 401) credential(false);
    throw new ApiError(res.status, code, message);
  }
  credential(true);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('content-type') ?? '';
  return (type.includes('json') ? await res.json() : await res.text()) as T;
}

export interface CreateRequest {
  kind: 'pty' | 'command';
  argv?: string[];
  command?: string;
  cwd?: string;
  project?: string;
  cols?: number;
  rows?: number;
}

export const api = {
  list: () => call<SessionInfo[] | { sessions: SessionInfo[] }>('GET', '/api/sessions').then((r) => (Array.isArray(r) ? r : r.sessions)),
  /** Viewer counts by session id (the older `/terminal/sessions` has them). */
  viewers: () =>
    call<{ sessions: { session_id: string; connections: number }[] }>('GET', '/terminal/sessions').then((r) =>
      Object.fromEntries(r.sessions.map((s) => [s.session_id, s.connections])),
    ),
  get: (id: string) => call<SessionInfo>('GET', `/api/sessions/${encodeURIComponent(id)}`),
  create: (req: CreateRequest) => call<SessionInfo>('POST', '/api/sessions', req),
  terminate: (id: string) => call<SessionInfo>('POST', `/api/sessions/${encodeURIComponent(id)}/terminate`),
  remove: (id: string) => call<void>('DELETE', `/api/sessions/${encodeURIComponent(id)}`),
  snapshot: (id: string) =>
    call<{ epoch: string; offset: number; cols: number; rows: number; data: string }>('GET', `/api/sessions/${encodeURIComponent(id)}/snapshot`),
  /** The last `bytes` of a session's output as text. */
  tail: async (id: string, end: number, bytes: number) => {
    const res = await reach(`/api/sessions/${encodeURIComponent(id)}/output?since=${Math.max(0, end - bytes)}&limit=${bytes}`);
    if (!res.ok) throw new ApiError(res.status, 'http_error', `HTTP ${res.status}`);
    return new TextDecoder().decode(await res.arrayBuffer());
  },
  /** A one-time login link with read access to `project`. */
  shareLink: (project: string) =>
    call<{ code: string; path: string; expiresInMs: number }>('POST', '/api/login-codes', { projects: { [project]: 'read' } }),
  /**
   * The projects this credential can read, with what it may do in each
   * (`access`); `null` when the server has no `/api/projects` (404: before
   * the focus API, issue 12). Any other failure (a passing 503, the network)
   * is thrown: it says nothing of what the server has.
   */
  projects: () =>
    call<ProjectList>('GET', '/api/projects').then(
      (r) => r.projects,
      (e: unknown) => {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      },
    ),
  recordingUrl: (id: string) => `/api/sessions/${encodeURIComponent(id)}/recording.cast`,
};
