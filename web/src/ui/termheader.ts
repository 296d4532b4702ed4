/**
 * A terminal view's header: the session's id and kind, how it ended, the
 * marks "last N lines" (a command session's log outgrew the scrollback)
 * and "catching up" (flow control paused the view), the search box, and
 * the buttons (Find, Share, Replay, Full, Stop, close). A click or Enter
 * on the header focuses the session on the server. Stop hides once the
 * session ended or the viewer may only watch (the view's element's
 * `data-ended` and `data-read-only`, in the style sheet).
 */

import type { Terminal } from '@xterm/xterm';
import type { SearchAddon } from '@xterm/addon-search';
import type { SessionRow } from '../state/sessions';
import { SCROLLBACK } from './xterm';
import { h } from './dom';

/** What a header button asks of the page. */
export type TermAction = 'close' | 'share' | 'replay' | 'terminate' | 'fullscreen';

/** What the header needs of its view and the page. */
export interface TermHeaderHost {
  readonly info: SessionRow;
  readonly term: Terminal;
  readonly search: SearchAddon;
  /** The header's end text, kept by the view's `Ending`. */
  readonly endEl: HTMLElement;
  /** The header was clicked: focus this session on the server. */
  requestFocus(): void;
  /** A button was pressed. */
  action(what: TermAction): void;
}

export class TermHeader {
  readonly el: HTMLElement;
  /** Says "catching up" while the view stopped taking output (flow control). */
  private readonly badgeEl = h('span', { class: 'term-badge' });
  /** For a command session whose output outgrew the scrollback: says that its start is not kept here. */
  private readonly trimmedEl: HTMLElement;
  private readonly searchBox = h('input', { class: 'term-search', type: 'search', placeholder: 'Search', 'aria-label': 'Search in terminal', hidden: '' });

  constructor(private readonly host: TermHeaderHost) {
    const { info } = host;
    this.trimmedEl = h('span', {
      class: 'term-trimmed',
      hidden: '',
      title: `Only the last ${SCROLLBACK} lines are kept here; Replay, or GET /api/sessions/${info.id}/output, has all of the output.`,
    }, `last ${SCROLLBACK} lines`);
    const button = (label: string, what: TermAction, title: string) =>
      h('button', { type: 'button', class: `tbtn tbtn-${what}`, title, 'aria-label': title, onclick: (e: Event) => (e.stopPropagation(), host.action(what)) }, label);
    this.el = h(
      'div',
      {
        class: 'term-header',
        role: 'button',
        tabindex: '0',
        title: 'Click to focus this terminal',
        onclick: () => host.requestFocus(),
        onkeydown: (e: KeyboardEvent) => (e.key === 'Enter' || e.key === ' ') && (e.preventDefault(), host.requestFocus()),
      },
      h('span', { class: 'focus-dot', title: 'Focused on the server' }),
      h('span', { class: 'term-title', title: info.argv.join(' ') }, info.id),
      h('span', { class: 'term-kind' }, info.kind),
      host.endEl,
      this.trimmedEl,
      this.badgeEl,
      h('span', { class: 'spacer' }),
      this.searchBox,
      h('button', { type: 'button', class: 'tbtn', title: 'Search (Ctrl+Shift+F)', 'aria-label': 'Search', onclick: (e: Event) => (e.stopPropagation(), this.toggleSearch()) }, 'Find'),
      button('Share', 'share', 'Share a read-only link'),
      button('Replay', 'replay', 'Replay the recording'),
      button('Full', 'fullscreen', 'Full screen'),
      button('Stop', 'terminate', 'Terminate the program'),
      button('×', 'close', 'Close this terminal'),
    );
    this.searchBox.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') host.search.findNext(this.searchBox.value);
      if (e.key === 'Escape') this.toggleSearch(false);
    });
    this.searchBox.addEventListener('click', (e) => e.stopPropagation());
  }

  /** Shows or hides "catching up". */
  setCatchingUp(on: boolean): void {
    this.badgeEl.textContent = on ? 'catching up' : '';
  }

  /** Says, once, that the log's start is not kept here (a command session past the scrollback). */
  markTrimmed(): void {
    if (!this.trimmedEl.hidden || this.host.info.kind !== 'command') return;
    const term = this.host.term;
    if (term.buffer.normal.length >= term.rows + SCROLLBACK) this.trimmedEl.hidden = false;
  }

  /** Shows the search box (focused), or hides it and gives the terminal the focus back. */
  toggleSearch(show = this.searchBox.hidden): void {
    this.searchBox.hidden = !show;
    if (show) this.searchBox.focus();
    else {
      this.host.search.clearDecorations();
      this.host.term.focus();
    }
  }
}
