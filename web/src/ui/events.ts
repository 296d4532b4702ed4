/**
 * Server events: `notification` as toasts (a few at once, each for a few
 * seconds), `task_status` and `activity_log` as lines of a log panel (the
 * last 200).
 */

import { h } from './dom';

const MAX_LINES = 200;
const MAX_TOASTS = 4;

export class EventViews {
  readonly toasts = h('div', { class: 'toasts', 'aria-live': 'polite' });
  readonly list = h('ol', { class: 'log-lines' });
  readonly panel: HTMLElement;
  /** Shown until the first event arrives. */
  private readonly none = h('p', { class: 'log-none muted' }, 'No events yet. Notifications, task status and activity sent to POST /api/events show here.');
  unread = 0;
  onUnread: (n: number) => void = () => {};

  constructor() {
    this.panel = h(
      'aside',
      { class: 'log-panel', hidden: '', 'aria-label': 'Event log' },
      h('div', { class: 'log-head' }, h('strong', {}, 'Events'), h('button', { type: 'button', class: 'tbtn', onclick: () => this.toggle(false), 'aria-label': 'Close the event log' }, '×')),
      this.none,
      this.list,
    );
  }

  toggle(show = this.panel.hidden): void {
    this.panel.hidden = !show;
    if (show) {
      this.unread = 0;
      this.onUnread(0);
    }
  }

  /** Takes any server message; keeps the event ones. */
  receive(m: Record<string, unknown>): void {
    const time = new Date(typeof m.timestamp === 'number' ? m.timestamp : Date.now()).toLocaleTimeString();
    if (m.type === 'notification') {
      this.toast(String(m.title ?? ''), String(m.message ?? ''), String(m.priority ?? ''));
      this.line(time, 'notification', `${m.title}: ${m.message}`);
    } else if (m.type === 'task_status') {
      this.line(time, 'task', `${m.taskId} ${m.status}${m.message ? `: ${m.message}` : ''}`, String(m.status));
    } else if (m.type === 'activity_log') {
      this.line(time, String(m.level ?? 'info'), String(m.message ?? ''), String(m.level ?? ''));
    }
  }

  private toast(title: string, message: string, priority: string): void {
    const t = h('div', { class: 'toast', 'data-priority': priority, role: 'status' }, h('strong', {}, title), h('div', {}, message));
    t.addEventListener('click', () => t.remove());
    this.toasts.append(t);
    while (this.toasts.childElementCount > MAX_TOASTS) this.toasts.firstElementChild!.remove();
    setTimeout(() => t.remove(), priority === 'high' || priority === 'urgent' ? 12000 : 6000);
  }

  private line(time: string, kind: string, text: string, level = ''): void {
    this.none.hidden = true;
    this.list.append(h('li', { 'data-level': level }, h('time', {}, time), h('span', { class: 'log-kind' }, kind), h('span', { class: 'log-text' }, text)));
    while (this.list.childElementCount > MAX_LINES) this.list.firstElementChild!.remove();
    this.list.scrollTop = this.list.scrollHeight;
    if (this.panel.hidden) this.onUnread(++this.unread);
  }
}
