/**
 * The on-screen key row for phones: Esc, Tab, sticky Ctrl and Alt, arrows,
 * `|`, `~`, `/`, `-`. Sticky modifiers also apply to the next key typed on
 * the phone's own keyboard ([`KeyRow.transform`]). Buttons do not take the
 * focus, so the phone's keyboard stays open.
 */

import { pressKey, ROW_KEYS, applySticky, type RowKey, type Sticky } from '../state/keys';
import { h } from './dom';

const LABELS: Partial<Record<RowKey, string>> = { Up: '↑', Down: '↓', Left: '←', Right: '→' };

export class KeyRow {
  readonly el: HTMLElement;
  private sticky: Sticky = { ctrl: false, alt: false };
  private readonly buttons = new Map<RowKey, HTMLButtonElement>();

  constructor(private readonly send: (data: string) => void) {
    this.el = h('div', { class: 'keyrow', role: 'toolbar', 'aria-label': 'Extra keys' });
    for (const k of ROW_KEYS) {
      const b = h('button', { type: 'button', class: 'key', 'data-key': k, 'aria-label': k, tabindex: '-1' }, LABELS[k] ?? k);
      b.addEventListener('pointerdown', (e) => e.preventDefault());
      b.addEventListener('click', () => this.press(k));
      this.buttons.set(k, b);
      this.el.append(b);
    }
  }

  /** Typed text with the sticky modifiers applied (and then released). */
  transform(data: string): string {
    if (!this.sticky.ctrl && !this.sticky.alt) return data;
    const out = applySticky(data, this.sticky);
    this.set({ ctrl: false, alt: false });
    return out;
  }

  private press(k: RowKey): void {
    const r = pressKey(k, this.sticky);
    this.set(r.sticky);
    if (r.send !== null) this.send(r.send);
  }

  private set(s: Sticky): void {
    this.sticky = s;
    this.buttons.get('Ctrl')!.classList.toggle('on', s.ctrl);
    this.buttons.get('Ctrl')!.setAttribute('aria-pressed', String(s.ctrl));
    this.buttons.get('Alt')!.classList.toggle('on', s.alt);
    this.buttons.get('Alt')!.setAttribute('aria-pressed', String(s.alt));
  }
}
