/**
 * The all-sessions monitor, for dashboards: a card per session with its
 * status and a small live preview. Previews come from snapshots of the
 * screen (`GET /api/sessions/ID/snapshot`; the output's tail for command
 * sessions), fetched one at a time, at most `RATE` a second for the whole
 * page and once a second per session, only while the monitor shows.
 *
 * A preview is text, not a terminal: one offscreen xterm.js (never opened,
 * so it needs no layout) parses each snapshot, and the card shows the
 * screen's lines in a `<pre>` at a legible size, the last lines with text
 * when they do not all fit. A dozen cards cost a dozen text nodes, not a
 * dozen renderers.
 */

import { Terminal } from '@xterm/xterm';
import { api } from '../net/api';
import { formatExit, isLive, sortedRows, type SessionMap, type SessionRow } from '../state/sessions';
import { h, fill } from './dom';

const RATE = 4;
const PER_SESSION_MS = 1000;
/** The most lines a preview shows (the last lines with text). */
const PREVIEW_ROWS = 14;

interface Card {
  el: HTMLElement;
  status: HTMLElement;
  preview: HTMLElement;
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
  /** Parses snapshots into text; created on first use. */
  private parser: Terminal | null = null;

  constructor(private readonly open: (id: string) => void) {
    this.el = h('section', { class: 'view view-monitor', 'aria-label': 'All sessions' }, this.grid);
  }

  render(m: SessionMap): void {
    this.sessions = sortedRows(m);
    for (const id of this.cards.keys()) if (!m.has(id)) this.cards.delete(id);
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
      const preview = h('pre', { class: 'preview', 'aria-hidden': 'true' });
      const el = h(
        'button',
        { type: 'button', class: 'card', 'data-session': s.id, onclick: () => this.open(s.id), title: `Open ${s.id}` },
        h('div', { class: 'card-head' }, h('span', { class: 'card-id' }, s.id), status),
        preview,
      );
      c = { el, status, preview, last: 0, shownEnd: -1 };
      this.cards.set(s.id, c);
    }
    c.status.className = `pill st-${s.status}`;
    c.status.textContent = [s.status, formatExit(s)].filter(Boolean).join(' · ');
    c.el.dataset.status = s.status;
    return c;
  }

  /** Refreshes the next preview that is due: one never shown first. */
  private async step(): Promise<void> {
    if (this.busy || this.sessions.length === 0) return;
    const now = Date.now();
    const due = (s: SessionRow, c: Card | undefined) => c && now - c.last >= PER_SESSION_MS && (isLive(s.status) || c.shownEnd < 0);
    const n = this.sessions.length;
    let pick = this.sessions.findIndex((s) => this.cards.get(s.id)?.shownEnd === -1 && due(s, this.cards.get(s.id)));
    for (let i = 0; pick < 0 && i < n; i++) {
      const j = (this.next + i) % n;
      if (due(this.sessions[j]!, this.cards.get(this.sessions[j]!.id))) pick = j;
    }
    if (pick < 0) return;
    this.next = (pick + 1) % n;
    const s = this.sessions[pick]!;
    const c = this.cards.get(s.id)!;
    c.last = now;
    this.busy = true;
    try {
      await this.refresh(s, c);
    } catch {
      // A session that went away meanwhile: the next list update removes it.
    } finally {
      this.busy = false;
    }
  }

  private async refresh(s: SessionRow, c: Card): Promise<void> {
    if (s.kind === 'pty') {
      const snap = await api.snapshot(s.id);
      if (snap.offset === c.shownEnd) return;
      c.shownEnd = snap.offset;
      c.preview.textContent = await this.screenText(snap.data, snap.cols, snap.rows, false);
    } else {
      const info = await api.get(s.id);
      if (info.outputOffset === c.shownEnd) return;
      c.shownEnd = info.outputOffset;
      const text = await api.tail(s.id, info.outputOffset, 4096);
      c.preview.textContent = await this.screenText(text, 80, 24, true);
    }
    c.el.dataset.previewed = String(c.shownEnd);
  }

  /** The screen `data` draws on a blank `cols`×`rows` terminal, as lines of text. */
  private async screenText(data: string, cols: number, rows: number, command: boolean): Promise<string> {
    const t = (this.parser ??= new Terminal({ allowProposedApi: true, scrollback: 0 }));
    t.options.convertEol = command;
    t.resize(Math.max(2, cols), Math.max(1, rows));
    // RIS in the stream, not `reset()`, which leaves the parser as it is:
    // a snapshot may end inside a sequence, which must not swallow the
    // start of the next preview.
    await new Promise<void>((r) => t.write('\x1bc' + data, r));
    const b = t.buffer.active;
    const lines: string[] = [];
    for (let y = 0; y < t.rows; y++) lines.push(b.getLine(b.baseY + y)?.translateToString(true) ?? '');
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines.slice(-PREVIEW_ROWS).join('\n');
  }
}
