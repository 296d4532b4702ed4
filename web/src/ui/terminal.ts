/**
 * One session in an xterm.js terminal: the glue between a `SessionHandle`
 * of `@termstream/client` and the screen, in the shape of xterm.js's
 * AttachAddon (every listener in one disposables list), plus what that addon
 * lacks: the screen restored on attach, resume by offset (the client's),
 * and flow control. The terminal's set-up (and resizing it in the output
 * stream) is `xterm.ts`, the header `termheader.ts`, how the session ended
 * `ending.ts`.
 *
 * Flow control: bytes handed to `term.write` are counted until its callback
 * says they were parsed ([`FlowGauge`]). Above 4 MiB the view stops taking
 * output: it detaches the session, keeping the offset it reached. Below
 * 512 KiB it attaches again from that offset; the server sends the missing
 * bytes, or a fresh screen when they are too many. The program and the other
 * viewers never wait for this page.
 *
 * Size: the terminal always has the server's size (`session.attached`,
 * `terminal.restore`, `session.resized`), taken at its place in the output
 * stream; a visible, writable view asks the server for the size that fits
 * its box when the box changes, and takes it when `session.resized` comes.
 *
 * Answers: xterm.js answers queries in the output (cursor position, device
 * attributes, modes, colours) through `onData`, like typed input. Every
 * viewer of a session parses the same query, so each answer is sent tagged
 * as a response and the server passes on one viewer's (the one typed into
 * last); answers to output parsed again (a restored screen, a catch-up from
 * an offset) and in command sessions are not sent at all.
 */

import type { Terminal, IDisposable } from '@xterm/xterm';
import type { FitAddon } from '@xterm/addon-fit';
import { inputRefusal, isDeletion, serverRefusal, type ExitInfo, type InputOptions, type SessionHandle, type StreamMode, type WebSocketClient } from '@termstream/client';
import { defaultFlow, FlowGauge, type FlowOptions } from '../state/flow';
import type { SessionRow } from '../state/sessions';
import { Ending } from './ending';
import { currentTheme } from './theme';
import { acquireWebgl, releaseWebgl } from './webgl';
import { hookQueries } from './queries';
import { TermHeader, type TermAction } from './termheader';
import { openXterm, resizeInStream } from './xterm';
import { h } from './dom';

export interface TermViewHooks {
  /** The user typed: the view's bytes after the key row's sticky modifiers. */
  transformInput(data: string): string;
  /** The header was clicked: focus this session on the server. */
  requestFocus(id: string): void;
  /** Something about the view changed (status, exit, read-only). */
  changed(view: TermView): void;
  /** The server refused a write of this view with `read_only` (the page decides what is read-only: `setReadOnly`). */
  refused(view: TermView): void;
  /** A header button was pressed. */
  action(view: TermView, what: TermAction): void;
}

const RED = '\x1b[31m';
/** How much of a command session's past output a view shows. */
const COMMAND_HISTORY = 256 << 20;
const DEFAULT_FG = '\x1b[39m';
/** A size asked of the server and not answered is asked again after this long. */
const ASK_AGAIN_MS = 2000;

/** The flow-control marks: 4 MiB / 512 KiB, or `?flow=KiB` (high mark; low is an eighth) to watch it work. */
function flowOptions(): FlowOptions {
  const kib = Number(new URLSearchParams(location.search).get('flow'));
  return kib >= 16 ? { high: kib << 10, low: kib << 7 } : defaultFlow;
}

export class TermView {
  readonly el: HTMLElement;
  readonly term: Terminal;
  private readonly fit: FitAddon;
  private readonly body = h('div', { class: 'term-body' });
  private readonly header: TermHeader;
  /** How the session ended (`exit`, `deleted`, the header's end text). */
  private readonly ending: Ending;
  private handle: SessionHandle | null = null;
  private readonly gauge = new FlowGauge(flowOptions());
  /** Set while xterm.js parses a query, until the parse ends: what `onData` emits then is an answer. */
  private answering = false;
  /** Per write handed to xterm.js and not parsed yet, in order: whether it is old output (no answers). */
  private readonly old: boolean[] = [];
  /** Whether output comes from an attach with `since` and the view has not caught up yet (the estimate, when the server gives no `end`). */
  private catchingUp = false;
  /**
   * Where live output starts after the latest catch-up attach (the server's
   * `end`): output below it was printed while this view was away, however
   * the replay is split into frames. `null`: a fresh attach, or a server
   * that gives no `end` (then `catchingUp` estimates).
   */
  private liveFrom: number | null = null;
  /** Where output stood when the view paused (resume from here). */
  private resumeAt: { epoch: string; offset: number } | null = null;
  private disposables: IDisposable[] = [];
  private resizeObserver: ResizeObserver;
  private shown = false;
  /** Whether the session was attached (on the first `setShown`). */
  private started = false;
  private fitTimer: ReturnType<typeof setTimeout> | undefined;
  /** The size the output stream has reached (the last one given to `setSize`). */
  private size: { cols: number; rows: number };
  /** The size last asked of the server, and when (asked again if no answer came). */
  private asked: { cols: number; rows: number; at: number } | null = null;
  /** The server ended this view's attachment for good (its attach refused, or a detach that is not a deletion): nothing more will come of it. */
  private attachOver = false;
  /** The viewer may only watch this session (see `setReadOnly`). */
  readOnly = false;
  focused = false;
  /** What arrived, for tests and the benchmark: output bytes, line feeds and chunks, the most bytes ever queued in xterm.js, and flow-control pauses. */
  readonly stats = { bytes: 0, newlines: 0, maxPending: 0, pauses: 0, frames: 0, answers: 0 };

  constructor(
    readonly info: SessionRow,
    private readonly client: WebSocketClient,
    private readonly hooks: TermViewHooks,
  ) {
    const xterm = openXterm(info, this.body, () => this.header.toggleSearch(true));
    this.term = xterm.term;
    this.fit = xterm.fit;
    this.disposables.push(...xterm.disposables);
    this.size = { cols: this.term.cols, rows: this.term.rows };
    const view = this;
    this.ending = new Ending({
      info,
      get el() {
        return view.el;
      },
      write: (text) => this.write(text),
      disableInput: () => (this.term.options.disableStdin = true),
      changed: () => hooks.changed(this),
    });
    this.header = new TermHeader({
      info,
      term: this.term,
      search: xterm.search,
      endEl: this.ending.endEl,
      requestFocus: () => hooks.requestFocus(info.id),
      action: (what) => hooks.action(this, what),
    });
    this.el = h('section', { class: 'term', 'data-session': info.id, 'data-kind': info.kind }, this.header.el, this.body);
    this.disposables.push(
      this.term.onData((d) => this.input(d)),
      this.term.onBinary((d) => this.input(d)),
    );
    // Parsing is synchronous: the answer is emitted before the microtask
    // that ends the mark runs, and typing cannot come in between.
    this.disposables.push(
      ...hookQueries(this.term.parser, () => {
        this.answering = true;
        queueMicrotask(() => (this.answering = false));
      }),
    );
    this.resizeObserver = new ResizeObserver(() => this.scheduleFit());
    this.resizeObserver.observe(this.body);
  }

  get id(): string {
    return this.info.id;
  }

  /** How the session ended, or null while it runs. */
  get exit(): ExitInfo | null {
    return this.ending.exit;
  }

  /** Whether the session was deleted. */
  get deleted(): boolean {
    return this.ending.deleted;
  }

  /**
   * Shows or hides the view; a visible one renders with WebGL when a context
   * is free. The first call attaches the session: a hidden view follows it
   * with focus-aware streaming (periodic updates while the session is not
   * focused on the server), a visible one with the full stream, switched
   * from the position reached so nothing is lost or repeated.
   */
  setShown(shown: boolean): void {
    const first = !this.started;
    if (!first && shown === this.shown) return;
    this.shown = shown;
    this.el.hidden = !shown;
    if (shown) {
      acquireWebgl(this.term);
      this.scheduleFit();
    } else {
      releaseWebgl(this.term);
    }
    if (first) {
      this.started = true;
      this.attach();
    } else {
      this.handle?.setStream(this.streamMode());
    }
  }

  /** How the view follows the output: all of it while visible. */
  private streamMode(): StreamMode {
    return this.shown ? 'live' : 'focus';
  }

  setFocused(focused: boolean): void {
    this.focused = focused;
    this.el.classList.toggle('focused', focused);
  }

  setTheme(): void {
    this.term.options.theme = currentTheme();
  }

  focusInput(): void {
    this.term.focus();
  }

  dispose(): void {
    clearTimeout(this.fitTimer);
    this.resizeObserver.disconnect();
    this.handle?.detach();
    this.handle = null;
    releaseWebgl(this.term);
    for (const d of this.disposables) d.dispose();
    this.term.dispose();
    this.el.remove();
  }

  /** Bytes written to xterm.js and not parsed yet. */
  get pending(): number {
    return this.gauge.pending;
  }

  private attach(): void {
    // A command session shows its output from the start (at most the last
    // 256 MiB), not only what the server still holds in memory.
    const since = this.resumeAt ?? (this.info.kind === 'command' && this.info.epoch ? { epoch: this.info.epoch, offset: Math.max(0, this.info.outputOffset - COMMAND_HISTORY) } : undefined);
    // Output from an earlier offset was produced (and its queries asked)
    // while this view was away: not answered until the view catches up.
    this.catchingUp = since !== undefined;
    this.attachOver = false;
    this.handle = this.client.attach(this.info.id, {
      output: 'binary',
      stream: this.streamMode(),
      since,
      onAttached: (a) => {
        // Attached again by the client (after a reconnect, or a release)
        // from the position reached: what follows was produced while away.
        if (a.recovered !== undefined) this.catchingUp = true;
        this.liveFrom = a.recovered !== undefined && a.end !== undefined ? a.end : null;
        this.setSize(a.cols, a.rows);
        // A session lost when its node stopped answering, and followed
        // again (released) now that the node came back: it runs again.
        if (a.status === 'running' && this.exit?.status === 'lost' && !this.deleted) this.ending.unend();
        this.info.status = a.status;
        this.hooks.changed(this);
        this.scheduleFit();
      },
      onRestore: (r) => {
        this.setSize(r.cols, r.rows);
        // RIS first, in the write stream, so bytes queued before it are drawn
        // and then wiped: the restore expects a blank terminal.
        this.write('\x1bc' + r.data, true);
      },
      onOutput: (data, o) => {
        this.count(data);
        // Past the attach's `end` the output is live: the catch-up is over.
        if (this.liveFrom !== null && o.offset >= this.liveFrom) {
          this.liveFrom = null;
          this.catchingUp = false;
        }
        const old = this.liveFrom !== null || this.catchingUp;
        if (o.stream === 'stderr') {
          this.write(RED, old);
          this.write(data, old);
          this.write(DEFAULT_FG, old);
        } else {
          this.write(data, old);
        }
      },
      onGap: (g) => {
        if (this.info.kind === 'command') this.write(`\x1b[2m[output ${g.from}..${g.to} skipped: ${g.reason}]\x1b[22m\r\n`);
      },
      onResize: (s) => this.setSize(s.cols, s.rows),
      onExit: (e) => this.ending.exited(e),
      // A deletion ends the view (`released` never comes here: the client
      // follows it); a reason this page does not know is told as it is.
      onDetached: (d) => {
        this.attachOver = true;
        if (isDeletion(d)) this.markDeleted();
        else this.write(`\r\n${RED}[session detached: ${d.reason}]${DEFAULT_FG}\r\n`, false);
      },
      onError: (e) => {
        // The client ended the attachment: the list's deletion is believed now.
        if (e.request === 'session.attach') this.attachOver = true;
        if (e.code === 'read_only') {
          this.hooks.refused(this);
        } else if (e.code === 'session_not_found' && e.request === 'session.attach') {
          // The attach (a re-attach after a reconnect) was refused, and the
          // client ended the attachment. The page makes views only for
          // sessions of its list: this one was deleted while it was away.
          this.markDeleted();
        } else {
          // Input the server dropped (a piece of a split paste over the
          // socket's input budget, or not read by the program), or input
          // or a resize the session (in a cluster, its owner node) did not
          // answer in time (`busy`): told as the client's own refusals
          // are (`send`).
          const why = serverRefusal(e);
          if (why !== null) this.write(`\r\n${RED}[${why}]${DEFAULT_FG}\r\n`, false);
        }
      },
    });
  }

  /**
   * Whether the viewer may only watch this session (the server says its
   * credential may only read the session's project, or refused typing with
   * `read_only`): nothing typed is sent, no size is asked, and Stop hides.
   * Undone when the credential may write (a new login, once the socket
   * connected with it). A deleted session's view takes no typing either way.
   */
  setReadOnly(on = true): void {
    if (this.readOnly === on) return;
    this.readOnly = on;
    this.term.options.disableStdin = on || this.deleted;
    this.el.toggleAttribute('data-read-only', on);
    this.hooks.changed(this);
    if (!on) this.scheduleFit();
  }

  /** The list says the session is gone: believed unless the view's attachment may still answer (see `Ending.believesList`). */
  deletedInList(): void {
    // Not started, or paused by flow control: no attachment to wait for.
    if (this.ending.believesList(this.handle !== null && !this.attachOver)) this.markDeleted();
  }

  /**
   * The session was deleted (the server's `session.detached` with reason
   * `deleted`, the list's `deleted` event when believed, or a re-attach
   * refused after the socket was down). A paused view has nothing more
   * to catch up with: it no longer says so, and does not attach again.
   */
  markDeleted(): void {
    this.ending.markDeleted();
    if (this.handle) return;
    this.el.classList.remove('catching-up');
    this.header.setCatchingUp(false);
  }

  private count(data: Uint8Array): void {
    this.stats.frames++;
    this.stats.bytes += data.length;
    let n = 0;
    for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) n++;
    this.stats.newlines += n;
  }

  /** Hands data to xterm.js, counting it until parsed; `old` output (a restored screen, a catch-up) is never answered. */
  private write(data: string | Uint8Array, old = this.catchingUp): void {
    const n = data.length;
    if (this.gauge.wrote(n) === 'pause') this.pause();
    this.stats.maxPending = Math.max(this.stats.maxPending, this.gauge.pending);
    this.old.push(old);
    this.term.write(data, () => {
      this.old.shift();
      // A log that outgrew the scrollback lost its start here: say so, once.
      this.header.markTrimmed();
      // Old output parsed and nothing received waits after it: the view has
      // caught up with what the server had (an estimate: more of the
      // catch-up may still be on its way).
      if (old && this.gauge.pending - n <= 0) this.catchingUp = false;
      if (this.gauge.parsed(n) === 'resume') this.resume();
    });
  }

  private pause(): void {
    const h = this.handle;
    if (!h) return;
    this.stats.pauses++;
    this.resumeAt = h.position;
    // The client keeps the session's messages as the old subscription's
    // until the server answers this detach, so attaching again at once is safe.
    h.detach();
    this.handle = null;
    this.el.classList.add('catching-up');
    this.header.setCatchingUp(true);
  }

  private resume(): void {
    if (this.handle) return;
    this.el.classList.remove('catching-up');
    this.header.setCatchingUp(false);
    // A session deleted while the view was paused has nothing more to send.
    if (!this.deleted) this.attach();
  }

  private input(data: string): void {
    if (this.readOnly || !this.handle) return;
    if (this.answering) {
      // An answer to the query being parsed (the write at the head of `old`).
      this.stats.answers++;
      if (this.info.kind !== 'pty' || this.old[0]) return;
      this.send(data, { response: true });
      return;
    }
    this.send(this.hooks.transformInput(data));
  }

  /** Input the client refuses (a paste past its queue while disconnected, ...) is told in the terminal, not thrown. */
  private send(data: string, opts?: InputOptions): void {
    try {
      this.handle!.input(data, opts);
    } catch (e) {
      const why = inputRefusal(e);
      if (why === null) throw e;
      this.write(`\r\n${RED}[${why}]${DEFAULT_FG}\r\n`, false);
    }
  }

  /** The size the output stream reached, taken at its place in the stream (`resizeInStream`). */
  private setSize(cols: number, rows: number): void {
    if (cols <= 0 || rows <= 0) return;
    this.size = { cols, rows };
    resizeInStream(this.term, cols, rows);
  }

  private scheduleFit(): void {
    clearTimeout(this.fitTimer);
    this.fitTimer = setTimeout(() => this.fitNow(), 50);
  }

  /** Asks the server for the size that fits the box (visible, writable pty views only). */
  fitNow(): void {
    if (!this.shown || this.readOnly || this.info.kind !== 'pty' || this.exit || !this.handle) return;
    const d = this.fit.proposeDimensions();
    if (!d || !Number.isFinite(d.cols) || !Number.isFinite(d.rows)) return;
    const cols = Math.max(2, d.cols);
    const rows = Math.max(1, d.rows);
    // Only asked here: the terminal takes the size when the server's
    // `session.resized` comes, at its place in the output.
    if (cols === this.size.cols && rows === this.size.rows) return;
    if (this.asked && cols === this.asked.cols && rows === this.asked.rows && Date.now() - this.asked.at < ASK_AGAIN_MS) return;
    this.asked = { cols, rows, at: Date.now() };
    this.handle.resize(cols, rows);
  }
}
