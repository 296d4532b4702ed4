/**
 * The sessions list: id, project, kind, status, exit code or signal,
 * duration and viewers, with open, replay, terminate and delete (not for
 * a project the page may only watch). Rendered
 * from the session map whenever it changes; durations of running sessions
 * tick once a second (a redraw of text, no request).
 */

import { commandLine, durationOf, formatDuration, formatExit, isLive, outcome, sortedRows, type SessionMap, type SessionRow } from '../state/sessions';
import { h, fill } from './dom';

export interface ListActions {
  open(id: string): void;
  replay(id: string): void;
  terminate(id: string): void;
  remove(id: string): void;
  create(): void;
  /** Whether the page may only watch the sessions of `project` (no Terminate or Delete). */
  readOnly(project: string): boolean;
}

export class SessionList {
  readonly el: HTMLElement;
  private readonly body = h('tbody');
  private readonly empty: HTMLElement;
  private rows: SessionRow[] = [];

  constructor(private readonly actions: ListActions) {
    this.empty = h('div', { class: 'empty', hidden: '' }, h('p', {}, 'No sessions yet.'), h('button', { type: 'button', class: 'primary', onclick: () => actions.create() }, 'Start a session'));
    const head = h('thead', {}, h('tr', {}, ...['Session', 'Project', 'Kind', 'Status', 'Exit', 'Duration', 'Viewers', ''].map((t) => h('th', { scope: 'col' }, t))));
    this.el = h('section', { class: 'view view-list', 'aria-label': 'Sessions' }, h('div', { class: 'table-wrap' }, h('table', { class: 'sessions' }, head, this.body)), this.empty);
    setInterval(() => this.tick(), 1000);
  }

  render(m: SessionMap): void {
    this.rows = sortedRows(m);
    this.empty.hidden = this.rows.length > 0;
    fill(this.body, ...this.rows.map((s) => this.row(s)));
  }

  private row(s: SessionRow): HTMLElement {
    const a = this.actions;
    const live = isLive(s.status);
    const btn = (label: string, title: string, f: () => void, cls = '') =>
      h('button', { type: 'button', class: `tbtn ${cls}`, title, 'aria-label': `${title} ${s.id}`, onclick: (e: Event) => (e.stopPropagation(), f()) }, label);
    return h(
      'tr',
      { 'data-session': s.id, 'data-status': s.status, tabindex: '0', onclick: () => a.open(s.id), onkeydown: (e: KeyboardEvent) => e.key === 'Enter' && a.open(s.id) },
      h('td', { class: 'sid' }, h('a', { href: `#/s/${encodeURIComponent(s.id)}` }, s.id), h('div', { class: 'cmd', title: s.argv.join(' ') }, commandLine(s.argv))),
      h('td', {}, s.project),
      h('td', {}, s.kind),
      h('td', {}, h('span', { class: `pill st-${s.status}` }, s.status)),
      h('td', { class: 'exit', 'data-outcome': outcome(s) }, formatExit(s)),
      h('td', { class: 'dur', 'data-started': String(s.startedAt ?? '') }, formatDuration(durationOf(s, Date.now()))),
      h('td', { class: 'num viewers' }, String(s.viewers)),
      h(
        'td',
        { class: 'actions' },
        btn('Open', 'Open', () => a.open(s.id)),
        btn('Replay', 'Replay', () => a.replay(s.id)),
        a.readOnly(s.project) ? null : live ? btn('Terminate', 'Terminate', () => a.terminate(s.id), 'danger') : btn('Delete', 'Delete', () => a.remove(s.id), 'danger'),
      ),
    );
  }

  private tick(): void {
    if (this.el.hidden) return;
    const now = Date.now();
    this.rows.forEach((s, i) => {
      if (!isLive(s.status)) return;
      const cell = this.body.children[i]?.querySelector('.dur');
      if (cell) cell.textContent = formatDuration(durationOf(s, now));
    });
  }
}
