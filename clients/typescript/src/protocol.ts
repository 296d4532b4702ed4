/**
 * The wire shapes of `/ws` (`docs/protocol.md`, `crates/termstream-proto/src/ws.rs`):
 * the server's messages this client reads, and the binary output frame.
 *
 * The client speaks the dotted dialect (`session.attach`, `terminal.output`) and
 * always asks for binary output, so offsets are exact whatever the bytes are.
 */

import type { ErrorCode } from './codes.js';

/** Where a session is in its life. */
export type SessionStatus = 'running' | 'exited' | 'terminated' | 'failed' | 'lost';

/** Which stream of a session output came from. */
export type OutputStream = 'pty' | 'stdout' | 'stderr';

/** A position in a session's log: `offset` is the first byte not held yet. */
export interface LogPosition {
  epoch: string;
  offset: number;
}

/** Any message from the server: a `type` and its fields. */
export interface ServerMessage {
  type: string;
  sessionId?: string;
  [field: string]: unknown;
}

/** `session.attached`: output from `offset` follows. */
export interface AttachedMessage extends ServerMessage {
  type: 'session.attached';
  sessionId: string;
  epoch: string;
  offset: number;
  cols: number;
  rows: number;
  status: SessionStatus;
  recovered?: boolean;
  /** The log's end when the attach subscribed: output below it is a replay (absent from older servers). */
  end?: number;
}

/** `terminal.restore`: a screen snapshot; output from `offset` follows. */
export interface RestoreMessage extends ServerMessage {
  type: 'terminal.restore';
  sessionId: string;
  data: string;
  offset: number;
  cols: number;
  rows: number;
}

/** `terminal.output` in JSON mode. */
export interface OutputMessage extends ServerMessage {
  type: 'terminal.output';
  sessionId: string;
  data: string;
  offset: number;
  stream?: 'stdout' | 'stderr';
}

/** Why output was skipped: the server's reasons, or `missing` when this client saw output start past where it expected. */
export type GapReason = 'evicted' | 'slow_client' | 'epoch_changed' | 'missing';

/** `session.gap`: output `[from, to)` will not be sent. */
export interface GapMessage extends ServerMessage {
  type: 'session.gap';
  sessionId: string;
  from: number;
  to: number;
  reason: GapReason;
}

/** `session.exit`: the program ended and all its output was sent. */
export interface ExitMessage extends ServerMessage {
  type: 'session.exit';
  sessionId: string;
  status: SessionStatus;
  exitCode: number | null;
  signal: number | null;
  duration: number | null;
}

/**
 * Why the server ended an attachment (`session.detached`'s `reason`):
 * `detach`, this socket asked (`session.detach`, also of an attach still
 * waiting); `deleted`, the session was deleted; `released`, on a node of a
 * cluster, the node let go of its copy of another node's session, which
 * may still exist (attaching again follows it; if the session is not back
 * within the server's attach wait, that attach is refused). A reason this client does not
 * know is kept as the server's string.
 */
export type DetachReason = 'detach' | 'deleted' | 'released' | (string & {});

/** `session.detached`: the attachment ended; servers before `reason` send none. */
export interface DetachedMessage extends ServerMessage {
  type: 'session.detached';
  sessionId: string;
  reason?: DetachReason;
}

/** `error`: something was wrong; the connection stays open. */
export interface ErrorMessage extends ServerMessage {
  type: 'error';
  code: ErrorCode;
  message?: string;
  sessionId?: string;
  /**
   * The request the error answers, where the order cannot tell:
   * `session.attach` on an attach's refusal (`session_not_found` after its
   * wait, `rate_limited` when the socket has no free attachment slot);
   * `terminal.input` on every refusal of input, `terminal.resize` on every
   * refusal of a resize. Older servers send none.
   */
  request?: string;
  /**
   * With `request` `terminal.input`: the seq of the input refused, when it
   * had one. The client forgets that input: it is not sent again after a
   * reconnect.
   */
  seq?: number;
}

/**
 * What a credential may do in a project (`GET /api/projects`'s `access`):
 * `read` only watches (the server refuses every change with `read_only`),
 * `write` may change too. A value this client does not know is kept as the
 * server's string.
 */
export type ProjectAccess = 'read' | 'write' | (string & {});

/** One project of `GET /api/projects`; servers before `access` send none. */
export interface ProjectSummary {
  projectId: string;
  access?: ProjectAccess;
  totalSessions: number;
  runningSessions: number;
  focusedSessions: string[];
  version: number;
  maxFocused: number;
}

/** `GET /api/projects`: the projects the credential can read. */
export interface ProjectList {
  projects: ProjectSummary[];
}

/** The event channels of `POST /api/events`. */
export const EVENT_CHANNELS = ['task_status', 'notification', 'activity_log'] as const;
export type EventChannel = (typeof EVENT_CHANNELS)[number];

/** The event channel of each message type a socket subscribes to: the posted events', and the server's `sessions` (`session_update`). */
const CHANNEL_OF: Readonly<Record<string, string>> = {
  ...Object.fromEntries(EVENT_CHANNELS.map((c) => [c, c])),
  session_update: 'sessions',
};

/** The channels whose messages are of a type `wanted` says is wanted. */
export function channelsFor(wanted: (type: string) => boolean): string[] {
  return Object.keys(CHANNEL_OF)
    .filter(wanted)
    .map((t) => CHANNEL_OF[t]!);
}

/** A decoded binary output frame. */
export interface OutputFrame {
  sessionId: string;
  stream: OutputStream;
  offset: number;
  data: Uint8Array;
}

const STREAMS: readonly OutputStream[] = ['pty', 'stdout', 'stderr'];
const HEADER_LEN = 11;
const KIND_OUTPUT = 1;
const ascii = new TextDecoder('latin1');

/**
 * Decodes a binary output frame:
 * `[kind u8 = 1][stream u8][id length u8][offset u64 BE][session id][data]`.
 * Returns `null` for anything else.
 */
export function decodeOutputFrame(frame: Uint8Array): OutputFrame | null {
  if (frame.length < HEADER_LEN || frame[0] !== KIND_OUTPUT) return null;
  const stream = STREAMS[frame[1]!];
  if (stream === undefined) return null;
  const idLen = frame[2]!;
  if (frame.length < HEADER_LEN + idLen) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const offset = Number(view.getBigUint64(3, false));
  const sessionId = ascii.decode(frame.subarray(HEADER_LEN, HEADER_LEN + idLen));
  return { sessionId, stream, offset, data: frame.subarray(HEADER_LEN + idLen) };
}

/** Encodes an output frame (the server's side; used by tests and fakes). */
export function encodeOutputFrame(f: OutputFrame): Uint8Array {
  const id = new TextEncoder().encode(f.sessionId);
  const out = new Uint8Array(HEADER_LEN + id.length + f.data.length);
  out[0] = KIND_OUTPUT;
  out[1] = STREAMS.indexOf(f.stream);
  out[2] = id.length;
  new DataView(out.buffer).setBigUint64(3, BigInt(f.offset), false);
  out.set(id, HEADER_LEN);
  out.set(f.data, HEADER_LEN + id.length);
  return out;
}

/** The UTF-8 length of `s` in bytes, without encoding it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/**
 * `text` in pieces of at most `max` UTF-16 code units, never between the
 * halves of a surrogate pair; `[text]` when it is short (or empty).
 */
export function splitText(text: string, max: number): string[] {
  if (text.length <= max) return [text];
  const out: string[] = [];
  for (let i = 0; i < text.length; ) {
    let end = Math.min(text.length, i + max);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && end - i > 1 && last >= 0xd800 && last <= 0xdbff) end--;
    out.push(text.slice(i, end));
    i = end;
  }
  return out;
}
