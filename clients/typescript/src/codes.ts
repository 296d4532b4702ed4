/**
 * Close codes and error codes of the termstream protocol, as data
 * (`docs/protocol.md`, "Error codes" and "Close codes").
 */

/** WebSocket close codes the server and this client use. */
export const CloseCode = {
  /** A normal close, e.g. `client.disconnect()`. */
  Normal: 1000,
  /** The server saw no pong in time, or this client saw no message in time. */
  GoingAway: 1001,
  /** The connection dropped without a close frame. */
  Abnormal: 1006,
  /** A legacy endpoint named a session that did not appear. */
  PolicyViolation: 1008,
  /** A message was larger than the server allows. */
  TooBig: 1009,
} as const;

/** The `code` of an `error` message or of a REST error body. */
export type ErrorCode =
  | 'invalid_message'
  | 'unknown_type'
  | 'session_not_found'
  | 'not_attached'
  | 'session_not_running'
  | 'wrong_kind'
  | 'rate_limited'
  | 'read_only'
  | 'busy'
  | 'internal'
  | 'version_conflict'
  | 'project_mismatch'
  | 'cluster_unavailable'
  | 'not_found'
  | 'unauthorized'
  | 'forbidden'
  | (string & {});

/** HTTP statuses of `POST /api/ws-ticket` after which retrying cannot help: the credential is wrong. */
export const AUTH_FAILURE_STATUSES: ReadonlySet<number> = new Set([401, 403]);
