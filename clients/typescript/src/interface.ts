/**
 * The client's public shape: its states, options and methods, and the part of
 * a WebSocket it uses (so a browser's, the `ws` package's or a fake fits).
 */

import type { ReconnectOptions } from './backoff.js';
import type { AttachOptions, SessionHandle, TerminalOutputMessage } from './attachment.js';
import type { ProjectFocus } from './focus.js';
import type { LifecycleTargets } from './lifecycle.js';
import type { ServerMessage } from './protocol.js';

/** The connection's state. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'error';

/** The part of a WebSocket this client uses (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** A message handler; `M` is the message's shape. */
export type MessageHandler<M extends ServerMessage = ServerMessage> = (message: M) => void;

/** Options of `createWebSocketClient`. */
export interface ClientOptions {
  /** An `http(s)://` server URL or a `ws(s)://…/ws` URL; default: the page's origin + `/ws`. */
  url?: string;
  /** The WebSocket constructor; default `globalThis.WebSocket` (in Node pass the `ws` package's). */
  WebSocket?: WebSocketConstructor;
  /** `fetch` for tickets; default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Reconnection; defaults in [`DEFAULT_RECONNECT`]. */
  reconnect?: Partial<ReconnectOptions>;
  /** How often a `heartbeat` is sent, in ms. Default 10000. */
  heartbeatInterval?: number;
  /** No message for this long means the connection is dead, in ms. Default 25000. */
  heartbeatTimeout?: number;
  /** A socket that has not opened after this long counts as failed, in ms. Default 10000. */
  connectTimeout?: number;
  /** Bytes of outgoing messages kept while disconnected, and of written input kept to resend after a reconnect (whole calls). Default 1 MiB. */
  maxQueueBytes?: number;
  /**
   * The largest message the server takes (its `ws_max_message_bytes`), in
   * bytes; `send` throws `MessageTooLargeError` for a larger one. Default 1 MiB.
   */
  maxMessageBytes?: number;
  /** Where `online`, `visibilitychange` and `pageshow` come from; default the page's `window` and `document`; `null` for none. */
  lifecycle?: LifecycleTargets | null;
  /** A client id to start with (it scopes input `seq`s); default the server's. */
  clientId?: string;
  /** Random numbers in [0, 1) for the backoff's jitter. */
  random?: () => number;
  /** Where problems are reported; default `console`. */
  logger?: Pick<Console, 'warn'>;
}

/** The client; see `createWebSocketClient`. */
export interface WebSocketClient {
  readonly state: ConnectionState;
  /** Why the state is `error` (or the last failure), if any. */
  readonly lastError: Error | null;
  /** The id the server knows this client by (scopes input sequence numbers). */
  readonly clientId: string | null;
  /** Retries since the connection was last up long enough; 0 while stable. */
  readonly attempts: number;
  connect(): void;
  disconnect(): void;
  /** Sends `{type, ...payload}`, or queues it while disconnected; throws `QueueFullError` past the bound, `MessageTooLargeError` for a message the server would refuse. */
  send(type: string, payload?: Record<string, unknown>): void;
  subscribe(type: 'terminal_output', handler: MessageHandler<TerminalOutputMessage>): () => void;
  subscribe<M extends ServerMessage = ServerMessage>(type: string, handler: MessageHandler<M>): () => void;
  onStateChange(handler: (state: ConnectionState, previous: ConnectionState) => void): () => void;
  attach(sessionId: string, options: AttachOptions<'binary'> & { output: 'binary' }): SessionHandle;
  attach(sessionId: string, options?: AttachOptions<'text'>): SessionHandle;
  /** The focus set of `projectId`, kept current while connected. */
  focus(projectId: string): ProjectFocus;
}


/** A credential the client can get a ticket with: a token, or a function giving one. */
export type TokenSource = string | (() => string | Promise<string>);
