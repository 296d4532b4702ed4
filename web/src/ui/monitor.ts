/**
 * The all-sessions monitor, for dashboards: a card per session with its
 * status and a small live preview. Previews come from snapshots of the
 * screen (`GET /api/sessions/ID/snapshot`; the output's tail for command
 * sessions), fetched one at a time, at most `RATE` a second for the whole
 * page and once a second per session, only while the monitor shows.
 */

import { Terminal } from '@xterm/xterm';
import { api } from '../net/api';
import { formatExit, isLive, sortedRows, type SessionMap, type SessionRow } from '../state/sessions';
import { h, fill } from './dom';
import { currentTheme } from './theme';

const RATE = 4;
const PER_SESSION_MS = 1000;

interface Card {
  el: HTMLElement;
  status: HTMLElement;
  term: Terminal;
  last: number;
  /** The output offset the preview shows (no fetch when nothing changed). */
  shownEnd: number;
}

export class Monitor {
  readonly el: HTMLElement;
  private readonly grid = h('div', { class: 'monitor-grid' });
  private readonly cards = new Map<string, Card>();
  private sessions: SessionRow[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private busy = false;
  private next = 0;

  constructor(private readonly open: (id: string) => void) {
    this.el = h('section', { class: 'view view-monitor', 'aria-label': 'All sessions' }, this.grid);
  }

  render(m: SessionMap): void {
    this.sessions = sortedRows(m);
    for (const [id, c] of this.cards) {
      if (!m.has(id)) {
        c.term.dispose();
        this.cards.delete(id);
      }
    }
    fill(this.grid, ...this.sessions.map((s) => this.card(s).el));
  }

  setShown(shown: boolean): void {
    clearInterval(this.timer);
    this.timer = shown ? setInterval(() => void this.step(), 1000 / RATE) : undefined;
    if (shown) void this.step();
  }

  private card(s: SessionRow): Card {
    let c = this.cards.get(s.id);
    if (!c) {
      const status = h('span', { class: 'pill' });
      const preview = h('div', { class: 'preview', 'aria-hidden': 'true' });
      const el = h(
        'button',
        { type: 'button', class: 'card', 'data-session': s.id, onclick: () => this.open(s.id), title: `Open ${s.id}` },
        h('div', { class: 'card-head' }, h('span', { class: 'card-id' }, s.id), status),
        preview,
      );
      const term = new Terminal({ cols: 80, rows: 24, fontSize: 10, disableStdin: true, cursorBlink: false, scrollback: 0, theme: currentTheme(), convertEol: s.kind === 'command' });
      term.open(preview);
      c = { el, status, term, last: 0, shownEnd: -1 };
      const card = c;
      term.onRender(() => fitPreview(card, preview));
      this.cards.set(s.id, c);
    }
    c.status.className = `pill st-${s.status}`;
    c.status.textContent = [s.status, formatExit(s)].filter(Boolean).join(' · ');
    c.el.dataset.status = s.status;
    return c;
  }

  /** Refreshes the next preview that is due. */
  private async step(): Promise<void> {
    if (this.busy || this.sessions.length === 0) return;
    const now = Date.now();
    for (let i = 0; i < this.sessions.length; i++) {
      const s = this.sessions[(this.next + i) % this.sessions.length]!;
      const c = this.cards.get(s.id);
      if (!c || now - c.last < PER_SESSION_MS || (!isLive(s.status) && c.shownEnd >= 0)) continue;
      this.next = (this.next + i + 1) % this.sessions.length;
      c.last = now;
      this.busy = true;
      try {
        await this.refresh(s, c);
      } catch {
        // A session that went away meanwhile: the next list update removes it.
      } finally {
        this.busy = false;
      }
      return;
    }
  }

  private async refresh(s: SessionRow, c: Card): Promise<void> {
    if (s.kind === 'pty') {
      const snap = await api.snapshot(s.id);
      if (snap.offset === c.shownEnd) return;
      c.shownEnd = snap.offset;
      c.term.resize(Math.max(2, snap.cols), Math.max(1, snap.rows));
      c.term.reset();
      c.term.write(snap.data);
    } else {
      const info = await api.get(s.id);
      if (info.outputOffset === c.shownEnd) return;
      c.shownEnd = info.outputOffset;
      const text = await api.tail(s.id, info.outputOffset, 4096);
      c.term.reset();
      c.term.write(text);
    }
  }
}

/** Scales a preview's terminal down to the card's width (and height). */
function fitPreview(c: Card, box: HTMLElement): void {
  const screen = c.term.element?.querySelector('.xterm-screen') as HTMLElement | null;
  if (!screen || screen.offsetWidth === 0) return;
  const scale = Math.min(1, (box.clientWidth - 8) / screen.offsetWidth, (box.clientHeight - 8) / screen.offsetHeight);
  const el = c.term.element!;
  el.style.transformOrigin = '0 0';
  el.style.transform = `scale(${scale.toFixed(3)})`;
}
