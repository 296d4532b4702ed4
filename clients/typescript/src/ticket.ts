/**
 * The single-use ticket a socket opens with when the client has a token:
 * `POST /api/ws-ticket` with the token in the `Authorization` header only,
 * so the token never appears in a URL. A refusal (401/403) is
 * [`AuthError`], which retrying cannot mend; anything else that fails is a
 * plain `Error`, and the attempt is retried.
 */

import { AUTH_FAILURE_STATUSES } from './codes.js';
import type { TokenSource } from './interface.js';

/** Thrown into `lastError` when the server refused the credential. */
export class AuthError extends Error {
  override name = 'AuthError';
  constructor(readonly status: number) {
    super(`the server refused the token (HTTP ${status})`);
  }
}

/** Asks the server at `http` for a ticket with `token`; `signal` abandons the request. */
export async function fetchTicket(http: string, token: TokenSource, f: typeof fetch, signal: AbortSignal): Promise<string> {
  const value = typeof token === 'function' ? await token() : token;
  const res = await f(`${http}/api/ws-ticket`, { method: 'POST', headers: { authorization: `Bearer ${value}` }, signal });
  if (AUTH_FAILURE_STATUSES.has(res.status)) throw new AuthError(res.status);
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const body = (await res.json()) as { ticket?: unknown };
  if (typeof body.ticket !== 'string') throw new Error('no ticket in the answer');
  return body.ticket;
}
