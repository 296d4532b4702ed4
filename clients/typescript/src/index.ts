/**
 * `@termstream/client`: a typed client for a termstream server's `/ws`.
 *
 * Layout: `client.ts` (the connection and its one writer of state),
 * `attachment.ts` (one session's resume position), `focus.ts` (a project's
 * focus set), `queue.ts` (outgoing messages while disconnected), `backoff.ts`
 * (the reconnect schedule), `protocol.ts` (wire shapes and the binary frame),
 * `ticket.ts`, `url.ts`, `lifecycle.ts`, `codes.ts`. The React binding is `./react`.
 */

export { createWebSocketClient, AuthError } from './client.js';
export type { ClientOptions, ConnectionState, MessageHandler, TokenSource, WebSocketClient, WebSocketConstructor, WebSocketLike } from './client.js';
export { isDeletion, serverRefusal } from './attachment.js';
export type { AttachError, AttachInfo, AttachOptions, DetachInfo, ExitInfo, GapInfo, InputOptions, OutputInfo, RestoreInfo, SessionHandle, StreamMode, TerminalOutputMessage } from './attachment.js';
export { backoffDelay, DEFAULT_RECONNECT } from './backoff.js';
export type { ReconnectOptions } from './backoff.js';
export { CloseCode, AUTH_FAILURE_STATUSES } from './codes.js';
export type { ErrorCode } from './codes.js';
export { FocusError, ProjectFocus, VersionConflictError } from './focus.js';
export type { FocusState } from './focus.js';
export type { EventSourceLike, LifecycleTargets } from './lifecycle.js';
export { decodeOutputFrame, encodeOutputFrame, EVENT_CHANNELS, utf8Length } from './protocol.js';
export type {
  AttachedMessage,
  DetachReason,
  DetachedMessage,
  ErrorMessage,
  ExitMessage,
  GapMessage,
  GapReason,
  LogPosition,
  OutputFrame,
  OutputMessage,
  OutputStream,
  ProjectAccess,
  ProjectList,
  ProjectSummary,
  RestoreMessage,
  ServerMessage,
  SessionStatus,
} from './protocol.js';
export { inputRefusal, MessageTooLargeError, QueueFullError } from './queue.js';
export { resolveUrls, UrlError } from './url.js';
export type { ServerUrls } from './url.js';
