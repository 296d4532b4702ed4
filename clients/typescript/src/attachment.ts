/**
 * One attached session: where its output stands, and what the application
 * asked to be told.
 *
 * Invariant: `next` is the offset of the first byte the application has not
 * been given. Output below it is dropped (a resend), output above it is
 * reported as a gap first, so the application sees every byte once or an
 * explicit gap. After a reconnect the client attaches again with
 * `since = {epoch, offset: next}`.
 */

import type { ErrorCode } from './codes.js';
import type {
  AttachedMessage,
  DetachReason,
  DetachedMessage,
  ErrorMessage,
  ExitMessage,
  GapMessage,
  GapReason,
  LogPosition,
  OutputFrame,
  OutputStream,
  RestoreMessage,
  ServerMessage,
  SessionStatus,
} from './protocol.js';

/** Where output of a chunk starts, and which stream it came from. */
export interface OutputInfo {
  offset: number;
  stream: OutputStream;
}

/** What `onAttached` is told. */
export interface AttachInfo {
  epoch: string;
  offset: number;
  cols: number;
  rows: number;
  status: SessionStatus;
  /** With a `since`: whether resuming was exact. */
  recovered?: boolean;
  /**
   * The session's log end when this attach took its subscription: output at
   * offsets below `end` was printed before the attach (a replay), output from
   * `end` on is live. Absent from servers older than this field.
   */
  end?: number;
}

/** What `onExit` is told. */
export interface ExitInfo {
  status: SessionStatus;
  exitCode: number | null;
  signal: number | null;
  /** Milliseconds from start to end. */
  duration: number | null;
}

/** What `onGap` is told: output `[from, to)` will not arrive. */
export interface GapInfo {
  from: number;
  to: number;
  reason: GapReason;
}

/**
 * What `onDetached` is told: why the server ended the subscription, or
 * null from a server older than the reason (which sent it only when the
 * session was deleted).
 */
export interface DetachInfo {
  reason: DetachReason | null;
}

/**
 * Whether an `onDetached` tells that the session was deleted: reason
 * `deleted`, or none (a server older than the reason ends an attachment
 * unasked only for a deletion). Another reason (one this client does not
 * know) ended the attachment for some other cause: the session may still
 * exist, and attaching again may follow it.
 */
export function isDeletion(info: DetachInfo): boolean {
  return info.reason === null || info.reason === 'deleted';
}

/** What `onRestore` is told: a screen to draw on a blank `cols`×`rows` terminal. */
export interface RestoreInfo {
  data: string;
  offset: number;
  cols: number;
  rows: number;
}

/** The callbacks and choices of `client.attach`. */
export interface AttachOptions<M extends 'text' | 'binary' = 'text' | 'binary'> {
  /** `binary` hands `onOutput` raw bytes; `text` (default) decoded UTF-8. */
  output?: M;
  /** Resume from here instead of from the screen or the oldest output held. */
  since?: LogPosition;
  /**
   * `live` (default): every output as it comes. `focus`: while the session is
   * not focused in its project, at most one update a second (the server's
   * focus-aware streaming); see `SessionHandle.setStream`.
   */
  stream?: StreamMode;
  onOutput?: (data: M extends 'binary' ? Uint8Array : string, info: OutputInfo) => void;
  onRestore?: (restore: RestoreInfo) => void;
  onExit?: (exit: ExitInfo) => void;
  onGap?: (gap: GapInfo) => void;
  onAttached?: (info: AttachInfo) => void;
  onResize?: (size: { cols: number; rows: number }) => void;
  /**
   * The server ended the subscription unasked: the session was deleted
   * (`reason` `deleted`, or null from a server older than the reason), or
   * for a reason this client does not know. Not called for `released` (a
   * node of a cluster let go of its copy of the session, which may still
   * exist): the client attaches again by itself from the position
   * reached, and the listeners see `onAttached` again, as after a
   * reconnect; also after `onExit` when the session ended `lost` (it may
   * run again, and tell a second `onExit`). If the session is not back
   * within the server's attach wait, that attach is refused, told with
   * `onError` as any refused attach. A session that ended otherwise is not
   * attached again: its release ends the attachment, untold.
   */
  onDetached?: (info: DetachInfo) => void;
  /**
   * An `error` naming the session: a refused attach (`request:
   * 'session.attach'`, with `session_not_found` after its wait, or
   * `rate_limited` when the socket's attachment slots are all taken),
   * input (`request: 'terminal.input'` from a newer server), resize
   * (`'terminal.resize'`) or focus (no `request`): `session_not_found`,
   * `session_not_running`, `read_only`, `busy`, ...
   */
  onError?: (error: AttachError) => void;
}

/** What `onError` is told: the server's error, and the request it answers when the server says (`session.attach`, `terminal.input`, `terminal.resize`). */
export interface AttachError {
  code: ErrorCode;
  message: string;
  request?: string;
  /** With `request` `terminal.input`: the `seq` of the input refused (not applied, and not sent again). */
  seq?: number;
}

/**
 * The notice line a terminal shows for an `onError` that says something
 * sent to its session was not taken, or null for any other error (as
 * [`inputRefusal`] for what the client refuses): `rate_limited` (input
 * over the socket's `ws_input_burst_bytes` or `ws_input_bytes_per_sec`,
 * dropped: a piece of a split paste, say) and `busy` (the program did not
 * read its input: the rest was not taken; or the session, or in a cluster
 * the node that owns it, did not answer an input or a `terminal.resize`
 * in time). The server's message, which says what was not taken; its
 * code when it has none.
 */
export function serverRefusal(e: AttachError): string | null {
  if (e.code !== 'rate_limited' && e.code !== 'busy') return null;
  return e.message || e.code;
}

/** How a socket follows a session's output. */
export type StreamMode = 'live' | 'focus';

/** Attach options of either output mode. */
export type AnyAttachOptions = AttachOptions<'text'> | AttachOptions<'binary'>;

/** How `SessionHandle.input` sends. */
export interface InputOptions {
  /** The terminal produced this input, answering a query in the output (not typed). */
  response?: boolean;
}

/** What `client.attach` returns. */
export interface SessionHandle {
  readonly sessionId: string;
  /** Where output stands: the epoch and the first offset not delivered yet. */
  readonly position: LogPosition | null;
  /** The session's status as last reported. */
  readonly status: SessionStatus | null;
  /**
   * Sends input (with a sequence number, so a resend is not applied twice).
   * With `response`, the input is the terminal's answer to a query in the
   * output: sent only while connected, never resent, and the server passes
   * on one viewer's answers per session and drops the others'.
   */
  input(data: string, opts?: InputOptions): void;
  /** Sends the window size (a pty session's). */
  resize(cols: number, rows: number): void;
  /**
   * Switches between the full stream and focus-aware streaming; the server
   * is asked to attach again from the position reached, so nothing is lost
   * or repeated. The session follows `live` while any handle of it asks so.
   */
  setStream(mode: StreamMode): void;
  /** Ends the subscription. */
  detach(): void;
}

/** The message view for `terminal_output` subscribers, as in `002-websocket-integration.md`. */
export interface TerminalOutputMessage extends ServerMessage {
  type: 'terminal_output';
  sessionId: string;
  data: { output: string; type: 'output' | 'error' | 'info' };
  offset?: number;
  stream?: OutputStream;
}

type TextOutput = (d: string, i: OutputInfo) => void;
type BinaryOutput = (d: Uint8Array, i: OutputInfo) => void;

/**
 * The state of one attached session, owned by the client. Several `attach`
 * calls for one session on one client share it (one server attachment); a
 * later one sees output from the current position on.
 */
export class Attachment {
  epoch: string | null = null;
  next: number | null = null;
  status: SessionStatus | null = null;
  /** The program ended and its output was delivered: no re-attach. */
  ended = false;
  /** The client's socket id this attachment was last asked of (the server holds a slot for it there until a detach). */
  socket: number | null = null;
  /** An attach asked of `socket` has not been answered yet. */
  private awaiting = false;
  /** A resize asked while disconnected, sent after the next attach. */
  pendingResize: { cols: number; rows: number } | null = null;
  /** What each `attach` call asked to be told. */
  readonly listeners = new Set<AnyAttachOptions>();
  private decoders = new Map<OutputStream, TextDecoder>();

  constructor(
    readonly sessionId: string,
    first: AnyAttachOptions,
    /** Emits a message of the `terminal_output` view. */
    private readonly view: (m: TerminalOutputMessage) => void,
    /** Reports a listener that threw. */
    private readonly warn: (what: string, e: unknown) => void,
  ) {
    this.listeners.add(first);
    if (first.since) {
      this.epoch = first.since.epoch;
      this.next = first.since.offset;
    }
  }

  /** `focus` when every listener asks for focus-aware streaming, else `live`. */
  get stream(): StreamMode {
    return this.listeners.size > 0 && [...this.listeners].every((o) => o.stream === 'focus') ? 'focus' : 'live';
  }

  /** Records an attach asked of socket `socket` now. */
  asked(socket: number): void {
    this.socket = socket;
    this.awaiting = true;
  }

  /**
   * Whether `m` is the server's refusal of the attach: the session is not
   * there (`session_not_found`: it never was, or was deleted while the
   * client was away), or the socket has no free attachment slot
   * (`rate_limited`). Then this attachment is over, and its listeners are
   * told with `onError`. The server marks those refusals `request:
   * "session.attach"`; the same codes for input, a resize or a focus naming
   * the id are not it, whatever order they were sent in. A server older
   * than that field never ends an attachment this way (its refusal is told
   * to `onError` all the same, and a reconnect attaches the id again):
   * telling the refusals apart by counting messages misattributes one sent
   * before the attach.
   */
  refusedBy(m: ServerMessage): boolean {
    if (!this.awaiting || m.type !== 'error' || m.request !== 'session.attach') return false;
    if (m.code !== 'session_not_found' && m.code !== 'rate_limited') return false;
    this.awaiting = false;
    return true;
  }

  /**
   * Whether `m` is the server's `session.detached` with reason `released`:
   * the node let go of its copy of the session, which may still exist, and
   * the client attaches again from `next` (nothing lost or repeated) instead of
   * ending the attachment. A session that ended `lost` (its node stopped
   * answering) is released when its node comes back, and runs again:
   * followed again too. One that ended otherwise has told its end already
   * and stays ended (attached again, it would tell it twice).
   */
  releasedBy(m: ServerMessage): boolean {
    if (m.type !== 'session.detached' || (m as DetachedMessage).reason !== 'released') return false;
    if (this.ended && this.status === 'lost') this.ended = false;
    return true;
  }

  /** The attach message for now: with `since` once a position is known. */
  attachMessage(): Record<string, unknown> {
    const m: Record<string, unknown> = { sessionId: this.sessionId, output: 'binary' };
    if (this.epoch !== null && this.next !== null) m.since = { epoch: this.epoch, offset: this.next };
    if (this.stream === 'focus') m.stream = 'focus';
    return m;
  }

  /** A JSON message about this session. */
  handle(m: ServerMessage): void {
    switch (m.type) {
      case 'session.attached': {
        const a = m as AttachedMessage;
        // Attached again (another stream mode) while output of the earlier
        // attachment kept coming: what was delivered stays delivered.
        const again = this.epoch === a.epoch && this.next !== null && this.next > a.offset;
        this.awaiting = false;
        this.epoch = a.epoch;
        if (!again) this.next = a.offset;
        this.status = a.status;
        const info: AttachInfo = { epoch: a.epoch, offset: a.offset, cols: a.cols, rows: a.rows, status: a.status, recovered: a.recovered, end: a.end };
        this.each((o) => o.onAttached?.(info));
        break;
      }
      case 'terminal.restore': {
        const r = m as RestoreMessage;
        this.next = r.offset;
        this.decoders.clear();
        const info: RestoreInfo = { data: r.data, offset: r.offset, cols: r.cols, rows: r.rows };
        this.each((o) => o.onRestore?.(info));
        this.view({ type: 'terminal_output', sessionId: this.sessionId, data: { output: r.data, type: 'output' }, offset: r.offset, stream: 'pty' });
        break;
      }
      case 'session.gap': {
        const g = m as GapMessage;
        this.next = g.to;
        this.gap({ from: g.from, to: g.to, reason: g.reason });
        break;
      }
      case 'session.resized': {
        const size = { cols: m.cols as number, rows: m.rows as number };
        this.each((o) => o.onResize?.(size));
        break;
      }
      case 'session.exit': {
        const e = m as ExitMessage;
        this.ended = true;
        this.status = e.status;
        this.flushDecoders();
        const info: ExitInfo = { status: e.status, exitCode: e.exitCode ?? null, signal: e.signal ?? null, duration: e.duration ?? null };
        this.each((o) => o.onExit?.(info));
        const how = e.exitCode !== null && e.exitCode !== undefined ? `exit code ${e.exitCode}` : e.signal ? `signal ${e.signal}` : 'no exit code';
        this.info(`[session ${this.sessionId} ${e.status}, ${how}]\n`);
        break;
      }
      case 'session.detached': {
        this.ended = true;
        const reason = (m as DetachedMessage).reason;
        const info: DetachInfo = { reason: typeof reason === 'string' ? reason : null };
        this.each((o) => o.onDetached?.(info));
        break;
      }
      case 'error': {
        const err = m as ErrorMessage;
        const info: AttachError = { code: err.code, message: err.message ?? '' };
        if (typeof err.request === 'string') info.request = err.request;
        if (typeof err.seq === 'number') info.seq = err.seq;
        this.each((o) => o.onError?.(info));
        break;
      }
      case 'terminal.output': {
        // Only when someone attached in JSON mode by hand; offsets are UTF-8 lengths then.
        const data = new TextEncoder().encode(String(m.data));
        this.frame({ sessionId: this.sessionId, stream: (m.stream as OutputStream) ?? 'pty', offset: m.offset as number, data });
        break;
      }
    }
  }

  /** A binary output frame: delivered once, with gaps announced. */
  frame(f: OutputFrame): void {
    let { data, offset } = f;
    if (this.next === null) this.next = offset;
    const end = offset + data.length;
    if (end <= this.next) return;
    if (offset < this.next) {
      data = data.subarray(this.next - offset);
      offset = this.next;
    } else if (offset > this.next) {
      this.gap({ from: this.next, to: offset, reason: 'missing' });
    }
    this.next = end;
    const info: OutputInfo = { offset, stream: f.stream };
    const text = this.decode(f.stream, data);
    this.each((o) => {
      if (o.output === 'binary') (o.onOutput as BinaryOutput | undefined)?.(data, info);
      else if (text) (o.onOutput as TextOutput | undefined)?.(text, info);
    });
    if (text) {
      this.view({ type: 'terminal_output', sessionId: this.sessionId, data: { output: text, type: f.stream === 'stderr' ? 'error' : 'output' }, offset, stream: f.stream });
    }
  }

  /** Calls `fn` for every listener; one that throws does not stop the others. */
  private each(fn: (o: AnyAttachOptions) => void): void {
    for (const o of [...this.listeners]) {
      try {
        fn(o);
      } catch (e) {
        this.warn(`a handler of session ${this.sessionId} threw`, e);
      }
    }
  }

  private gap(g: GapInfo): void {
    this.decoders.clear();
    this.each((o) => o.onGap?.(g));
    this.info(`[output ${g.from}..${g.to} skipped: ${g.reason}]\n`);
  }

  private info(output: string): void {
    this.view({ type: 'terminal_output', sessionId: this.sessionId, data: { output, type: 'info' } });
  }

  private decode(stream: OutputStream, data: Uint8Array): string {
    let d = this.decoders.get(stream);
    if (!d) {
      d = new TextDecoder('utf-8');
      this.decoders.set(stream, d);
    }
    return d.decode(data, { stream: true });
  }

  private flushDecoders(): void {
    for (const [stream, d] of this.decoders) {
      const rest = d.decode();
      const info: OutputInfo = { offset: this.next ?? 0, stream };
      if (rest) this.each((o) => o.output !== 'binary' && (o.onOutput as TextOutput | undefined)?.(rest, info));
    }
    this.decoders.clear();
  }
}
