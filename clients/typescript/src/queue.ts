/**
 * Outgoing messages while the socket is down, and input the server may not
 * have applied yet.
 *
 * The queue is bounded by bytes: past the bound `push` throws
 * [`QueueFullError`] instead of dropping anything silently; a message the
 * server would refuse for its size is [`MessageTooLargeError`] (written, it
 * would close the socket, and be sent again after every reconnect). Input with a
 * `seq` that was written to a socket stays in `unconfirmed` until the server
 * answered a `heartbeat` sent after it (the server handles a socket's
 * messages in order), so after a reconnect it is sent again and the server
 * drops whatever it had applied already. Input the server refused (an
 * `error` naming its `seq`) is forgotten at once: it is never sent again.
 */

import { utf8Length } from './protocol.js';

/** Thrown by `send` or `input` when the queue would grow past its bound while disconnected. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`outgoing queue full: ${bytes} bytes would exceed ${limit} (maxQueueBytes) while disconnected`);
  }
}

/** Thrown by `send` for a message larger than the server takes (`maxMessageBytes`): it would close the socket. */
export class MessageTooLargeError extends Error {
  override name = 'MessageTooLargeError';
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`message of ${bytes} bytes is larger than the server takes (${limit})`);
  }
}

/**
 * A short notice for a user whose input the client refused to send
 * ([`QueueFullError`], [`MessageTooLargeError`]), or null for any other
 * error: what a terminal shows instead of losing a paste silently.
 */
export function inputRefusal(e: unknown): string | null {
  if (e instanceof QueueFullError) return `input not sent: with it the queue kept while disconnected would hold ${e.bytes} bytes, more than its ${e.limit}`;
  if (e instanceof MessageTooLargeError) return `input not sent: a message of ${e.bytes} bytes is larger than the server takes (${e.limit})`;
  return null;
}

/** One serialized outgoing message. */
export interface Outgoing {
  /** The message's `type`. */
  type: string;
  text: string;
  bytes: number;
  /** The input sequence number, for input. */
  seq?: number;
  /** The session the message names, if any. */
  sessionId?: string;
  /** The `send` or `input` call it belongs to: [`Unconfirmed`] keeps or forgets a call's messages together. */
  call?: number;
  /** The bytes of all the messages of its call. */
  callBytes?: number;
}

/** Input message types: they carry a `seq`. */
const INPUT_TYPES = new Set(['terminal.input', 'terminal_input']);

/**
 * `{...payload, type}` serialized. Input gets the `seq` `nextSeq()` gives
 * unless it has one or is a response (sent now or never, so never resent);
 * a message over `maxBytes` throws [`MessageTooLargeError`].
 */
export function serialize(type: string, payload: Record<string, unknown>, nextSeq: () => number, maxBytes: number): Outgoing {
  const m: Record<string, unknown> = { ...payload, type };
  const input = INPUT_TYPES.has(type);
  if (input && m.seq === undefined && m.response !== true) m.seq = nextSeq();
  const text = JSON.stringify(m);
  const out: Outgoing = { type, text, bytes: utf8Length(text) };
  if (out.bytes > maxBytes) throw new MessageTooLargeError(out.bytes, maxBytes);
  if (input && typeof m.seq === 'number') out.seq = m.seq;
  if (typeof m.sessionId === 'string') out.sessionId = m.sessionId;
  return out;
}

/**
 * How many UTF-16 code units of input one message carries, at most 16 Ki, so
 * that a paste of any size goes in messages the server takes: a code unit is
 * at most 6 bytes of JSON (`\u001b`), the rest of the message below 1 KiB.
 */
export function inputChunk(maxMessageBytes: number): number {
  return Math.max(1, Math.min(16 * 1024, Math.floor((maxMessageBytes - 1024) / 6)));
}

/**
 * The messages of one `send` or `input` call, tagged with `call` and their
 * bytes together, so that [`Unconfirmed`] keeps (and resends) a paste whole
 * or not at all.
 */
export function oneCall(outs: Outgoing[], call: number): Outgoing[] {
  const bytes = outs.reduce((n, m) => n + m.bytes, 0);
  for (const m of outs) {
    m.call = call;
    m.callBytes = bytes;
  }
  return outs;
}

/** A FIFO of messages bounded by their total size. */
export class OutgoingQueue {
  private items: Outgoing[] = [];
  private total = 0;

  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.total;
  }

  get length(): number {
    return this.items.length;
  }

  /** Adds `ms`, or, if they do not all fit, none of them and throws [`QueueFullError`]. */
  push(...ms: Outgoing[]): void {
    const bytes = ms.reduce((n, m) => n + m.bytes, this.total);
    if (bytes > this.limit) throw new QueueFullError(bytes, this.limit);
    this.items.push(...ms);
    this.total = bytes;
  }

  /** Removes and returns everything, oldest first. */
  drain(): Outgoing[] {
    const out = this.items;
    this.items = [];
    this.total = 0;
    return out;
  }
}

/**
 * Input written to a socket and not yet known to be applied, grouped by the
 * number of `heartbeat`s sent before it on that socket.
 */
export class Unconfirmed {
  private items: { m: Outgoing; beats: number }[] = [];
  private total = 0;
  /** Heartbeats written to the current socket. */
  private sent = 0;
  /** Heartbeat replies read from the current socket. */
  private answered = 0;

  constructor(readonly limit: number) {}

  get length(): number {
    return this.items.length;
  }

  /** Whether input waits for a heartbeat that has not been sent yet. */
  get needsBeat(): boolean {
    const last = this.items[this.items.length - 1];
    return last !== undefined && last.beats === this.sent;
  }

  /**
   * Records input written now. A call larger than the bound is not kept at
   * all: after the socket dies none of it is sent again (rather than only
   * its tail), so the server applies the pieces it received before the
   * socket died and the rest is lost (the start without the end). Past the
   * bound the oldest calls are forgotten (they are the likeliest to be
   * applied), each whole, and the one `m` belongs to is kept: a call is
   * resent whole or not at all.
   */
  wrote(m: Outgoing): void {
    if ((m.callBytes ?? m.bytes) > this.limit) return;
    this.items.push({ m, beats: this.sent });
    this.total += m.bytes;
    while (this.total > this.limit && this.items[0]!.m.call !== m.call) {
      const call = this.items[0]!.m.call;
      while (this.items.length > 0 && this.items[0]!.m.call === call) this.total -= this.items.shift()!.m.bytes;
    }
  }

  /** Records a heartbeat written now. */
  beatSent(): void {
    this.sent++;
  }

  /** Records a heartbeat reply: input written before the matching heartbeat was applied. */
  beatAnswered(): void {
    if (this.answered >= this.sent) return;
    this.answered++;
    while (this.items.length > 0 && this.items[0]!.beats < this.answered) {
      this.total -= this.items.shift()!.m.bytes;
    }
  }

  /**
   * The server refused input `seq` (an `error` with `request:
   * "terminal.input"` naming it): it was not applied, and is not sent
   * again after a reconnect, where the new socket would apply it. Only
   * that message is forgotten, not the rest of its call: the server
   * answers each message of a paste for itself.
   */
  forget(seq: number): void {
    const i = this.items.findIndex((x) => x.m.seq === seq);
    if (i < 0) return;
    this.total -= this.items[i]!.m.bytes;
    this.items.splice(i, 1);
  }

  /** A new socket: returns the input to send again, and starts counting heartbeats afresh. */
  takeForResend(): Outgoing[] {
    const out = this.items.map((i) => i.m);
    this.items = [];
    this.total = 0;
    this.sent = 0;
    this.answered = 0;
    return out;
  }
}
