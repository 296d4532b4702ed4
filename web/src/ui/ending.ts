/**
 * How a terminal view's session ended: its exit and its deletion, told in
 * the terminal (`[exit 3]`, `[session deleted]`), in the header's end text
 * (`exit 3 · 1s`, `SIGTERM · 2m 05s · deleted`) and as marks on the view's
 * element (`data-ended`, `data-exit`), and taken back when a session that
 * ended `lost` runs again.
 *
 * The exit and the deletion are separate flags, not a status: the list's
 * `deleted` event and the view's own exit and detach come from separate
 * server tasks, in any order, and whichever comes last is told once.
 */

import type { ExitInfo } from '@termstream/client';
import { formatDuration, formatExit, type SessionRow } from '../state/sessions';
import { h } from './dom';

/** What `Ending` needs of its view. */
export interface EndingHost {
  /** The session's row, whose status and exit `Ending` keeps current. */
  readonly info: SessionRow;
  /** The view's element, for its `data-ended` and `data-exit` marks. */
  readonly el: HTMLElement;
  /** Writes text into the terminal, after the output handed to it so far. */
  write(text: string): void;
  /** The terminal takes no more typing. */
  disableInput(): void;
  /** The status, exit or deletion changed (the tabs show it). */
  changed(): void;
}

export class Ending {
  /** The header's end text; empty while the session runs. */
  readonly endEl: HTMLElement = h('span', { class: 'term-end' });
  /** How the session ended, or null while it runs (again). */
  exit: ExitInfo | null = null;
  /** Whether the session was deleted (its own flag: see the file's doc). */
  deleted = false;

  constructor(private readonly host: EndingHost) {}

  /** The session ended (`session.exit`): told in the terminal and the header. */
  exited(e: ExitInfo): void {
    const { info, el } = this.host;
    this.exit = e;
    info.status = this.deleted ? 'deleted' : e.status;
    if (e.exitCode !== null) info.exitCode = e.exitCode;
    if (e.signal !== null) info.signal = e.signal;
    const how = formatExit(info) || e.status;
    const colour = e.exitCode === 0 ? '\x1b[32m' : '\x1b[31m';
    this.host.write(`\r\n${colour}[${how}]\x1b[0m\r\n`);
    el.dataset.exit = e.exitCode !== null ? String(e.exitCode) : `signal ${e.signal}`;
    const end = e.duration !== null ? `${how} · ${formatDuration(e.duration)}` : how;
    this.showEnd(this.deleted ? `${end} · deleted` : end, e.exitCode === 0 && !this.deleted);
    this.host.changed();
  }

  /**
   * Whether the list's `deleted` event is to be believed now. A view whose
   * attachment may still answer waits for its own `session.detached`
   * (reason `deleted`) or its attach's refusal, which come in the order of
   * its output. That holds while the view is `attached` (started, not
   * paused by flow control, its attachment not over) and the session runs
   * or ended `lost` (followed again when released). A paused view has no
   * attachment to tell it: it believes the list at once, rather than only
   * on resume (the list's release, `reason: "released"`, never comes here).
   * The client attaches an ended session again neither after a reconnect
   * nor on a release: only the list tells its deletion.
   */
  believesList(attached: boolean): boolean {
    return !(attached && (this.exit === null || this.exit.status === 'lost'));
  }

  /**
   * The session was deleted (here or elsewhere): its output stays
   * readable, and nothing typed goes anywhere. Told once.
   */
  markDeleted(): void {
    if (this.deleted) return;
    this.deleted = true;
    this.host.info.status = 'deleted';
    this.host.disableInput();
    this.host.write('\r\n\x1b[31m[session deleted]\x1b[0m\r\n');
    this.showEnd(this.endEl.textContent ? `${this.endEl.textContent} · deleted` : 'deleted', false);
    this.host.changed();
  }

  /** Undoes `exited`'s marks: the session (ended `lost`) runs again. */
  unend(): void {
    const { el } = this.host;
    this.exit = null;
    this.endEl.textContent = '';
    this.endEl.classList.remove('ok');
    delete el.dataset.ended;
    delete el.dataset.exit;
  }

  /** Shows how the session ended in the header, and hides Stop. */
  private showEnd(text: string, ok: boolean): void {
    this.endEl.textContent = text;
    this.endEl.classList.toggle('ok', ok);
    this.host.el.dataset.ended = '';
  }
}
