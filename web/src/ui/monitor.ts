/**
 * The all-sessions monitor, for dashboards: a card per session with its
 * status and a small live preview. Previews come from snapshots of the
 * screen (`GET /api/sessions/ID/snapshot`; the output's tail for command
 * sessions), fetched only while the monitor shows:
 *
 * - cards in view first, never-shown ones before the rest; a card scrolled
 *   out of view keeps its last preview and costs nothing until it is back;
 * - at most `PARALLEL` fetches at a time for the whole page, and a card at
 *   most once a second, backing off to once every `IDLE_MAX_MS` while its
 *   screen does not change.
 *
 * A preview is text, not a terminal: one offscreen xterm.js (never opened,
 * so it needs no layout) parses each snapshot in turn, and the card shows
 * the screen's lines in a `<pre>` at a legible size, the last lines with
 * text when they do not all fit. A dozen cards cost a dozen text nodes, not
 * a dozen renderers.
 */

import { Terminal } from '@xterm/xterm';
import { api } from '../net/api';
import { formatExit, isLive, outcome, sortedRows, type SessionMap, type SessionRow } from '../state/sessions';
import { h, fill } from './dom';

/** Fetches in flight at once, for the whole page. */
const PARALLEL = 4;
/** How often the monitor looks for a card that is due. */
const TICK_MS = 100;
/** The shortest time between two fetches of one card. */
const PER_SESSION_MS = 1000;
/** The longest, for a card whose screen stayed the same. */
const IDLE_MAX_MS = 5000;
/** The most lines a preview shows (the last lines with text). */
const PREVIEW_ROWS = 14;

interface Card {
  el: HTMLElement;
  status: HTMLElement;
  preview: HTMLElement;
  /** When its last fetch started, and how long until the next may. */
  last: number;
  wait: number;
  /** The output offset the preview shows (no fetch when nothing changed). */
  shownEnd: number;
  /** In the viewport, or near it (the observer's margin). */
  visible: boolean;
  fetching: boolean;
}

export class Monitor {
  readonly el: HTMLElement;
  private readonly grid = h('div', { class: 'monitor-grid' });
  private readonly cards = new Map<string, Card>();
  private sessions: SessionRow[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private inFlight = 0;
  /** Parses snapshots into text; created on first use. */
  private parser: Terminal | null = null;
  /** The parser is shared: each preview's parse waits for the one before. */
  private parsing: Promise<unknown> = Promise.resolve();
  private readonly seen = new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        const c = this.cards.get((e.target as HTMLElement).dataset.session ?? '');
        if (c) c.visible = e.isIntersecting;
      }
      if (this.timer !== undefined) this.step();
    },
    { rootMargin: '200px' },
  );

  /** Shown instead of the grid while there is no session. */
  private readonly empty = h('p', { class: 'empty', hidden: '' }, 'No sessions to watch yet. Each session shows here with a live preview as it starts.');

  constructor(private readonly open: (id: string) => void) {
    this.el = h('section', { class: 'view view-monitor', 'aria-label': 'All sessions' }, this.empty, this.grid);
  }

  render(m: SessionMap): void {
    this.sessions = sortedRows(m);
    this.empty.hidden = this.sessions.length > 0;
    for (const [id, c] of this.cards) {
      if (m.has(id)) continue;
      this.seen.unobserve(c.el);
      this.cards.delete(id);
    }
    fill(this.grid, ...this.sessions.map((s) => this.card(s).el));
  }

  setShown(shown: boolean): void {
    clearInterval(this.timer);
    this.timer = shown ? setInterval(() => this.step(), TICK_MS) : undefined;
    if (shown) this.step();
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
      c = { el, status, preview, last: 0, wait: 0, shownEnd: -1, visible: false, fetching: false };
      this.cards.set(s.id, c);
      this.seen.observe(el);
    }
    c.status.className = `pill st-${s.status}`;
    c.status.textContent = [s.status, formatExit(s)].filter(Boolean).join(' · ');
    c.status.dataset.outcome = outcome(s);
    c.el.dataset.status = s.status;
    return c;
  }

  /** Starts fetches for the cards that are due, the most wanted first. */
  private step(): void {
    const now = Date.now();
    const due: [number, SessionRow, Card][] = [];
    for (const s of this.sessions) {
      const c = this.cards.get(s.id);
      if (!c || c.fetching || now - c.last < c.wait) continue;
      const never = c.shownEnd < 0;
      // Out of view, a card is filled once; an ended session's screen is final.
      if (!never && (!c.visible || !isLive(s.status))) continue;
      due.push([(c.visible ? 0 : 2) + (never ? 0 : 1), s, c]);
    }
    due.sort((a, b) => a[0] - b[0] || a[2].last - b[2].last);
    for (const [, s, c] of due) {
      if (this.inFlight >= PARALLEL) break;
      c.last = now;
      c.fetching = true;
      this.inFlight++;
      this.refresh(s, c)
        .then((changed) => {
          c.wait = changed ? PER_SESSION_MS : Math.min(IDLE_MAX_MS, Math.max(PER_SESSION_MS, c.wait * 2));
        })
        .catch(() => {
          // A session that went away meanwhile: the next list update removes it.
          c.wait = IDLE_MAX_MS;
        })
        .finally(() => {
          c.fetching = false;
          this.inFlight--;
        });
    }
  }

  /** Fetches a card's preview; whether it changed. */
  private async refresh(s: SessionRow, c: Card): Promise<boolean> {
    if (s.kind === 'pty') {
      const snap = await api.snapshot(s.id);
      if (snap.offset === c.shownEnd) return false;
      c.shownEnd = snap.offset;
      c.preview.textContent = await this.screenText(snap.data, snap.cols, snap.rows, false);
    } else {
      const info = await api.get(s.id);
      if (info.outputOffset === c.shownEnd) return false;
      c.shownEnd = info.outputOffset;
      const text = await api.tail(s.id, info.outputOffset, 4096);
      c.preview.textContent = await this.screenText(text, 80, 24, true);
    }
    c.el.dataset.previewed = String(c.shownEnd);
    return true;
  }

  /** The screen `data` draws on a blank `cols`×`rows` terminal, as lines of text. */
  private screenText(data: string, cols: number, rows: number, command: boolean): Promise<string> {
    const parse = this.parsing.then(() => this.parse(data, cols, rows, command));
    this.parsing = parse.catch(() => undefined);
    return parse;
  }

  private async parse(data: string, cols: number, rows: number, command: boolean): Promise<string> {
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
