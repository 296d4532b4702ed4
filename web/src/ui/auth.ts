/**
 * The banner that says the server no longer takes this browser's login
 * (expired, logged out, or gone with a server restart: logins live in the
 * server's memory). The server does not close open sockets when a login
 * ends, so terminals may keep streaming while REST calls fail: the banner
 * follows the calls. Shown on a 401 from any call; hidden on any call that
 * succeeds (a new login, say in another tab) and when the socket connects.
 */

import type { WebSocketClient } from '@termstream/client';
import { onCredential } from '../net/api';
import { h, fill } from './dom';

export class LoginBanner {
  readonly el = h('div', { class: 'auth-banner', role: 'alert', hidden: '' });

  constructor(client: WebSocketClient) {
    fill(
      this.el,
      h('strong', {}, 'Your login has ended.'),
      ' ',
      'The server no longer accepts this browser: the list and the buttons fail, and the terminals may stop updating. Open a new login link in this browser to carry on; the terminals keep what they show.',
    );
    onCredential((accepted) => (this.el.hidden = accepted));
    client.onStateChange((s) => {
      if (s === 'connected') this.el.hidden = true;
    });
  }
}
