/** The connection indicator: a coloured dot and a word, from the client's state. */

import type { ConnectionState, WebSocketClient } from '@termstream/client';
import { h } from './dom';

const LABEL: Record<ConnectionState, string> = {
  connecting: 'connecting',
  connected: 'connected',
  reconnecting: 'reconnecting',
  disconnected: 'disconnected',
  error: 'error',
};

export function statusIndicator(client: WebSocketClient): HTMLElement {
  const text = h('span', { class: 'conn-text' });
  const el = h('div', { class: 'conn', role: 'status', 'aria-live': 'polite' }, h('span', { class: 'conn-dot' }), text);
  const show = (s: ConnectionState) => {
    el.dataset.state = s;
    text.textContent = LABEL[s];
    el.title = s === 'error' && client.lastError ? `error: ${client.lastError.message}` : LABEL[s];
  };
  show(client.state);
  client.onStateChange((s) => show(s));
  return el;
}
