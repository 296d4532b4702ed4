/**
 * `createWebSocketClient`: one reconnecting connection to `/ws`, in the shape
 * of `002-websocket-integration.md`, that resumes attached sessions by offset.
 *
 * One writer of state: the connection state changes only in `setState`, and
 * every way a socket ends goes through `drop`, which clears the timers and
 * either schedules the next attempt or settles. Each socket gets an id;
 * callbacks of an older socket (or of a ticket request made for one) are
 * ignored, which removes the close-versus-reconnect races. The edges are
 * injected: the WebSocket constructor, `fetch`, the lifecycle targets, `random`.
 *
 * When the socket (re)opens the client restores, in order: its event channel
 * subscriptions, its attachments (with `since`; not those whose session ended),
 * its focus syncs, input the server may not have applied (same `seq`; not input
 * it refused), then the queued messages. A `session.detached` with reason
 * `released` attaches again at once, with `since`, unless it ended (not `lost`).
 */

import { DEFAULT_RECONNECT, type ReconnectOptions, backoffDelay } from './backoff.js';
import { type AnyAttachOptions, Attachment, type InputOptions, type SessionHandle } from './attachment.js';
import { CloseCode } from './codes.js';
import { type FocusIO, ProjectFocus } from './focus.js';
import { watchLifecycle } from './lifecycle.js';
import { type ServerMessage, channelsFor, decodeOutputFrame, splitText } from './protocol.js';
import { OutgoingQueue, type Outgoing, Unconfirmed, inputChunk, oneCall, serialize } from './queue.js';
import { AuthError, fetchTicket } from './ticket.js';
import { type ServerUrls, resolveUrls, withQuery } from './url.js';
import type { ClientOptions, ConnectionState, MessageHandler, TokenSource, WebSocketClient, WebSocketConstructor, WebSocketLike } from './interface.js';

export type { ClientOptions, ConnectionState, MessageHandler, TokenSource, WebSocketClient, WebSocketConstructor, WebSocketLike } from './interface.js';
export { AuthError } from './ticket.js';

const OPEN = 1;
/** Not queued while disconnected: the client sends them itself when the socket opens. */
const CONTROL = new Set(['heartbeat', 'session.attach', 'session.detach', 'terminal_attach', 'terminal_detach']);
/** How soon after input a heartbeat confirms it, in ms. */
const CONFIRM_DELAY = 250;

class Client implements WebSocketClient {
  state: ConnectionState = 'disconnected';
  lastError: Error | null = null;
  clientId: string | null;
  attempts = 0;

  private readonly urls: ServerUrls;
  private readonly retry: ReconnectOptions;
  private readonly opts: ClientOptions;
  private ws: WebSocketLike | null = null;
  /** The id of the current socket; callbacks of older ones are ignored. */
  private socketId = 0;
  private lastMessageAt = 0;
  private timers: { [k in 'retry' | 'beat' | 'stable' | 'open' | 'confirm']?: ReturnType<typeof setTimeout> } = {};
  private readonly queue: OutgoingQueue;
  /** The largest message the server takes (`ws_max_message_bytes`). */
  private readonly maxMessage: number;
  /** Input is split into messages of at most this many code units. */
  private readonly inputChunk: number;
  private readonly unconfirmed: Unconfirmed;
  private seq = 0;
  /** Numbers each `send` or `input` call (see `Outgoing.call`). */
  private calls = 0;
  private readonly handlers = new Map<string, Set<MessageHandler>>();
  private readonly stateHandlers = new Set<(s: ConnectionState, p: ConnectionState) => void>();
  private readonly attachments = new Map<string, Attachment>();
  private readonly projects = new Map<string, ProjectFocus>();
  /**
   * Sessions detached on this socket whose answer (`session.detached`, or
   * `not_attached`) has not come back, and how many: until it does, their
   * messages belong to the old subscription, not to a new attach of the id.
   */
  private readonly draining = new Map<string, number>();
  /** Aborts the ticket request under way, if any (the attempt was given up). */
  private abortTicket: (() => void) | null = null;
  /** The channel list last asked of the server on this socket. */
  private channelsAsked = '';
  private unwatch: (() => void) | null = null;

  constructor(
    private readonly token: TokenSource | undefined,
    options: ClientOptions,
  ) {
    this.opts = options;
    const origin = (globalThis as { location?: { origin?: string } }).location?.origin;
    this.urls = resolveUrls(options.url, origin && origin !== 'null' ? origin : undefined);
    this.retry = { ...DEFAULT_RECONNECT, ...options.reconnect };
    const max = options.maxQueueBytes ?? 1 << 20;
    this.queue = new OutgoingQueue(max);
    this.unconfirmed = new Unconfirmed(max);
    this.maxMessage = options.maxMessageBytes ?? 1 << 20;
    this.inputChunk = inputChunk(this.maxMessage);
    this.clientId = options.clientId ?? null;
    // The server remembers the last seq applied per client id: a client id
    // given by the application may have been used by an earlier page, so its
    // numbers start from the clock (microseconds, below 2^53) instead of 1.
    if (options.clientId !== undefined) this.seq = Date.now() * 1000;
  }

  // ---- public API -------------------------------------------------------

  connect(): void {
    if (this.state === 'connecting' || this.state === 'connected' || this.state === 'reconnecting') return;
    this.attempts = 0;
    this.lastError = null;
    this.unwatch ??= watchLifecycle(this.opts.lifecycle, (why) => this.wake(why));
    this.setState('connecting');
    void this.open();
  }

  disconnect(): void {
    this.unwatch?.();
    this.unwatch = null;
    this.drop('disconnect() called', false);
    for (const f of this.projects.values()) f.disconnected();
  }

  send(type: string, payload: Record<string, unknown> = {}): void {
    this.sendAll(type, [payload]);
  }

  /**
   * Sends messages of one type together: all are written, or all queued, or
   * (one too large, or past the queue's bound while disconnected) none, with
   * the error thrown.
   */
  private sendAll(type: string, payloads: Record<string, unknown>[]): void {
    // A query's response is sent now or never: not queued nor sent again after a reconnect (too late).
    const response = payloads.some((p) => p.response === true);
    const outs = oneCall(payloads.map((p) => serialize(type, p, () => ++this.seq, this.maxMessage)), ++this.calls);
    if (this.isOpen()) for (const out of outs) this.write(out);
    else if (!CONTROL.has(type) && !response) this.queue.push(...outs);
  }

  subscribe(type: string, handler: MessageHandler<any>): () => void {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler);
    this.askChannels();
    return () => {
      if (set.delete(handler) && set.size === 0) this.handlers.delete(type);
      this.askChannels();
    };
  }

  onStateChange(handler: (s: ConnectionState, p: ConnectionState) => void): () => void {
    this.stateHandlers.add(handler);
    return () => this.stateHandlers.delete(handler);
  }

  attach(sessionId: string, options: AnyAttachOptions = {}): SessionHandle {
    // Copied, so one options object passed twice makes two listeners.
    const listener: AnyAttachOptions = { ...options };
    let a = this.attachments.get(sessionId);
    if (a && !a.ended) {
      a.listeners.add(listener);
    } else {
      a = new Attachment(sessionId, listener, (m) => this.dispatch(m), (what, e) => this.warn(what, e));
      this.attachments.set(sessionId, a);
      if (this.isOpen()) this.sendAttach(a);
    }
    const att = a;
    const client = this;
    return {
      sessionId,
      get position() {
        return att.epoch !== null && att.next !== null ? { epoch: att.epoch, offset: att.next } : null;
      },
      get status() {
        return att.status;
      },
      input(data: string, opts?: InputOptions) {
        const parts = splitText(data, client.inputChunk);
        client.sendAll('terminal.input', parts.map((d) => (opts?.response ? { sessionId, data: d, response: true } : { sessionId, data: d })));
      },
      resize(cols: number, rows: number) {
        if (client.isOpen()) client.send('terminal.resize', { sessionId, cols, rows });
        else att.pendingResize = { cols, rows };
      },
      setStream(mode) {
        const before = att.stream;
        listener.stream = mode;
        if (att.stream !== before && client.attachments.get(sessionId) === att && !att.ended && client.isOpen()) {
          client.sendAttach(att);
        }
      },
      detach() {
        if (!att.listeners.delete(listener) || att.listeners.size > 0) return;
        if (client.attachments.get(sessionId) !== att) return;
        client.attachments.delete(sessionId);
        // Also once the session ended or was deleted: the server holds the
        // socket's slot for an attachment until it is detached.
        if (client.isOpen() && att.socket === client.socketId) {
          client.send('session.detach', { sessionId });
          client.draining.set(sessionId, (client.draining.get(sessionId) ?? 0) + 1);
        }
      },
    };
  }

  focus(projectId: string): ProjectFocus {
    let f = this.projects.get(projectId);
    if (!f) {
      const io: FocusIO = {
        sendIfOpen: (type, payload) => {
          if (!this.isOpen()) return false;
          this.send(type, payload);
          return true;
        },
        release: (t) => {
          if (this.projects.get(projectId) === t) this.projects.delete(projectId);
        },
      };
      f = new ProjectFocus(projectId, io);
      this.projects.set(projectId, f);
      f.sync();
    }
    return f;
  }

  // ---- the connection ---------------------------------------------------

  /** The only place the state changes. */
  private setState(next: ConnectionState): void {
    const prev = this.state;
    if (prev === next) return;
    this.state = next;
    for (const h of [...this.stateHandlers]) {
      try {
        h(next, prev);
      } catch (e) {
        this.warn('a state handler threw', e);
      }
    }
  }

  /** Whether messages can be written now (also while `opened` restores, before the state says `connected`). */
  private isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === OPEN;
  }

  /**
   * Gets a ticket if there is a token, then opens a socket. `connectTimeout`
   * bounds each step: a ticket request that hangs is aborted and counts as a
   * failed attempt, as a socket that does not open does.
   */
  private async open(): Promise<void> {
    this.closeSocket();
    this.abortTicket?.();
    this.abortTicket = null;
    clearTimeout(this.timers.open);
    const id = ++this.socketId;
    const timeout = this.opts.connectTimeout ?? 10_000;
    let ticket: string | undefined;
    if (this.token !== undefined) {
      const abort = new AbortController();
      this.abortTicket = () => abort.abort(new Error('the ticket request was abandoned'));
      this.timers.open = setTimeout(() => id === this.socketId && this.drop(`ticket request did not finish within ${timeout} ms`, true), timeout);
      try {
        ticket = await fetchTicket(this.urls.http, this.token, this.opts.fetch ?? globalThis.fetch, abort.signal);
      } catch (e) {
        if (id !== this.socketId) return;
        const err = e instanceof Error ? e : new Error(String(e));
        if (err instanceof AuthError) this.fail(err);
        else this.drop(`ticket request failed: ${err.message}`, true);
        return;
      } finally {
        if (id === this.socketId) this.abortTicket = null;
      }
      if (id !== this.socketId) return;
      clearTimeout(this.timers.open);
    }
    const WS = this.opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      this.fail(new Error('no WebSocket implementation: pass options.WebSocket (e.g. the ws package)'));
      return;
    }
    const url = withQuery(this.urls.ws, { token: ticket, clientId: this.clientId ?? undefined, dialect: 'dotted' });
    let ws: WebSocketLike;
    try {
      ws = new WS(url);
    } catch (e) {
      this.drop(`cannot open socket: ${String(e)}`, true);
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => id === this.socketId && this.opened();
    ws.onclose = (ev) => id === this.socketId && this.drop(`socket closed (${ev?.code ?? CloseCode.Abnormal})`, true);
    ws.onerror = () => id === this.socketId && this.drop('socket error', true);
    ws.onmessage = (ev) => id === this.socketId && this.receive(ev.data);
    this.timers.open = setTimeout(() => id === this.socketId && this.drop('socket did not open in time', true), timeout);
  }

  /**
   * The socket opened: restore subscriptions, attachments (with `since`),
   * focus syncs, unconfirmed input and the queue, in that order, and only
   * then say `connected`, so a state handler's first message follows them.
   */
  private opened(): void {
    clearTimeout(this.timers.open);
    this.lastMessageAt = Date.now();
    this.timers.stable = setTimeout(() => {
      this.attempts = 0;
    }, this.retry.minUptime);
    const every = this.opts.heartbeatInterval ?? 10_000;
    const deadAfter = this.opts.heartbeatTimeout ?? 25_000;
    this.timers.beat = setInterval(() => {
      if (Date.now() - this.lastMessageAt > deadAfter) this.drop(`no message for ${deadAfter} ms`, true);
      else this.send('heartbeat');
    }, every);
    this.channelsAsked = '';
    this.askChannels();
    for (const a of this.attachments.values()) {
      if (a.ended) continue;
      this.sendAttach(a);
      if (a.pendingResize) {
        this.send('terminal.resize', { sessionId: a.sessionId, ...a.pendingResize });
        a.pendingResize = null;
      }
    }
    for (const f of this.projects.values()) f.opened();
    for (const m of this.unconfirmed.takeForResend()) this.write(m);
    for (const m of this.queue.drain()) this.write(m);
    this.setState('connected');
  }

  /** Asks the open socket to attach `a` (from where its output stands). */
  private sendAttach(a: Attachment): void {
    a.asked(this.socketId);
    this.send('session.attach', a.attachMessage());
  }

  /** Writes to the open socket, keeping track of input and heartbeats. */
  private write(m: Outgoing): void {
    this.ws!.send(m.text);
    if (m.type === 'heartbeat') this.unconfirmed.beatSent();
    else if (m.seq !== undefined) {
      this.unconfirmed.wrote(m);
      this.timers.confirm ??= setTimeout(() => {
        this.timers.confirm = undefined;
        if (this.isOpen() && this.unconfirmed.needsBeat) this.send('heartbeat');
      }, CONFIRM_DELAY);
    }
  }

  /** Every way a socket ends: clears timers, then retries, gives up, or settles in `disconnected`. */
  private drop(reason: string, reconnect: boolean, settle: 'disconnected' | 'error' = 'disconnected'): void {
    for (const t of Object.values(this.timers)) {
      clearTimeout(t);
      clearInterval(t);
    }
    this.timers = {};
    this.abortTicket?.();
    this.abortTicket = null;
    this.socketId++;
    this.draining.clear();
    this.closeSocket();
    if (!reconnect) {
      this.setState(settle);
      return;
    }
    this.lastError = new Error(reason);
    if (this.attempts >= this.retry.maxAttempts) {
      this.lastError = new Error(`gave up after ${this.attempts} attempts: ${reason}`);
      this.setState('error');
      return;
    }
    this.attempts++;
    const delay = backoffDelay(this.attempts, this.retry, this.opts.random);
    this.setState('reconnecting');
    this.timers.retry = setTimeout(() => void this.open(), delay);
  }

  /** Closes the current socket, if any, deaf to its last events. */
  private closeSocket(): void {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    // No-ops, not null: a socket closed while connecting still reports an
    // error (the `ws` package throws it when nobody listens).
    const ignore = () => {};
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = ignore;
    try {
      ws.close(CloseCode.Normal);
    } catch {
      // Closing a socket that never opened may throw; it is gone either way.
    }
  }

  /** A failure retrying cannot mend (a refused credential): `error`, no retry. */
  private fail(err: Error): void {
    this.lastError = err;
    this.drop(err.message, false, 'error');
  }

  /** A lifecycle event: come back at once instead of waiting out a backoff. */
  private wake(why: 'online' | 'visible' | 'pageshow'): void {
    if (why === 'pageshow' && this.state === 'connected') {
      // A page restored from the back-forward cache holds a socket that is likely dead.
      this.drop('page restored from the back-forward cache', true);
    } else if (this.state === 'error' && !(this.lastError instanceof AuthError)) {
      this.attempts = 0;
      this.setState('reconnecting');
    } else if (this.state === 'connected') {
      // Timers may have slept with the page or the network: ask for a sign of life now.
      this.send('heartbeat');
    }
    if (this.state !== 'reconnecting') return;
    clearTimeout(this.timers.retry);
    this.timers.retry = undefined;
    void this.open();
  }

  // ---- incoming ---------------------------------------------------------

  private receive(data: unknown): void {
    this.lastMessageAt = Date.now();
    if (typeof data === 'string') {
      let m: ServerMessage;
      try {
        m = JSON.parse(data) as ServerMessage;
      } catch {
        this.warn('a message from the server is not JSON', data.slice(0, 200));
        return;
      }
      if (m && typeof m.type === 'string') this.route(m);
      return;
    }
    const bytes =
      data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null;
    const frame = bytes && decodeOutputFrame(bytes);
    if (!frame) {
      this.warn('a binary frame from the server is not an output frame');
      return;
    }
    if (!this.draining.has(frame.sessionId)) this.attachments.get(frame.sessionId)?.frame(frame);
  }

  private route(m: ServerMessage): void {
    if (m.type === 'connected' && typeof m.clientId === 'string') this.clientId = m.clientId;
    if (m.type === 'heartbeat') this.unconfirmed.beatAnswered();
    if (m.type === 'error' && m.request === 'terminal.input' && typeof m.seq === 'number') this.unconfirmed.forget(m.seq); // never resend it
    if (typeof m.sessionId === 'string') {
      const old = this.draining.get(m.sessionId);
      if (old === undefined) {
        const a = this.attachments.get(m.sessionId);
        // Refused: over before its listeners hear why, so one of them may attach the id afresh.
        if (a?.refusedBy(m)) this.attachments.delete(m.sessionId);
        // Released by a node of a cluster: the session goes on, and so does the attachment.
        if (!a?.releasedBy(m)) a?.handle(m);
        else if (!a.ended) this.sendAttach(a);
        // The detach's answer; a release or deletion racing it is not (the answer still comes).
      } else if ((m.type === 'session.detached' && (m.reason ?? 'detach') === 'detach') || (m.type === 'error' && m.code === 'not_attached')) {
        if (old === 1) this.draining.delete(m.sessionId);
        else this.draining.set(m.sessionId, old - 1);
      }
    }
    if (typeof m.projectId === 'string') this.projects.get(m.projectId)?.receive(m);
    else if (m.type === 'error' && typeof m.sessionId === 'string') for (const f of this.projects.values()) f.receive(m);
    this.dispatch(m);
  }

  /** Hands `m` to the handlers of its type and of `'*'`. */
  private dispatch(m: ServerMessage): void {
    for (const key of [m.type, '*']) {
      const set = this.handlers.get(key);
      if (!set) continue;
      for (const h of [...set]) {
        try {
          h(m);
        } catch (e) {
          this.warn(`a ${key} handler threw`, e);
        }
      }
    }
  }

  /** Tells the server which event channels this client's handlers want. */
  private askChannels(): void {
    const want = this.handlers.has('*') ? ['*'] : channelsFor((t) => this.handlers.has(t));
    const key = want.join(',');
    if (!this.isOpen() || key === this.channelsAsked) return;
    if (this.channelsAsked !== '') this.send('unsubscribe', { channels: ['*'] });
    if (want.length > 0) this.send('subscribe', { channels: want });
    this.channelsAsked = key;
  }

  private warn(what: string, detail?: unknown): void {
    (this.opts.logger ?? console).warn(`[termstream] ${what}`, detail ?? '');
  }
}

/**
 * A client for the server at `options.url` (or the page's origin). With a
 * `token`, each connection first gets a single-use ticket from
 * `POST /api/ws-ticket`, so the token never appears in a URL; without one, the
 * page's login cookie (or no auth) admits it.
 */
export function createWebSocketClient(token?: TokenSource, options: ClientOptions = {}): WebSocketClient {
  return new Client(token === '' ? undefined : token, options);
}
