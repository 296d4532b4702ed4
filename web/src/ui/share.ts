/**
 * The share box: makes a one-time, read-only login link for a terminal's
 * project (`POST /api/login-codes`), copies it, and shows it (or why it
 * could not be made).
 */

import { api, ApiError } from '../net/api';
import { formatRoute } from '../state/route';
import { h, fill } from './dom';

export class ShareBox {
  readonly el = h('div', { class: 'share-box', hidden: '', role: 'dialog', 'aria-label': 'Read-only link' });

  /** Makes and shows a link that opens session `id` of `project` read-only. */
  async show(project: string, id: string): Promise<void> {
    let text: string;
    try {
      const code = await api.shareLink(project);
      const url = `${location.origin}${code.path}${formatRoute({ view: 'terminal', id })}`;
      await navigator.clipboard?.writeText(url).catch(() => {});
      text = url;
      this.el.dataset.link = url;
    } catch (e) {
      text = e instanceof ApiError && e.status === 403 ? `Cannot make a link: ${e.message}` : String(e instanceof Error ? e.message : e);
      delete this.el.dataset.link;
    }
    const input = h('input', { readonly: '', value: text, class: 'share-link', 'aria-label': 'Read-only link' });
    fill(
      this.el,
      h('strong', {}, 'Read-only link'),
      h('p', { class: 'muted' }, 'Copied. It works once, within a minute, and lets the viewer watch this project without typing.'),
      input,
      h('button', { type: 'button', onclick: () => (this.el.hidden = true) }, 'Done'),
    );
    this.el.hidden = false;
    input.select();
  }
}
