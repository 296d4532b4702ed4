/**
 * The page's WebSocket constructor: the browser's, with a hand on the
 * latest socket so the page can cut it (to connect again with a new
 * login's rights; tests cut it too).
 */

import type { WebSocketConstructor } from '@termstream/client';

/**
 * The browser's WebSocket, remembering the latest socket so it can be
 * cut, and telling `closed` of every socket that closes (a failed reconnect
 * attempt too: the client reports a state only when it changes).
 */
export function trackedWebSocket(closed: () => void): { ctor: WebSocketConstructor; cut(): void } {
  let last: WebSocket | null = null;
  class Tracked extends WebSocket {
    constructor(url: string) {
      super(url);
      last = this;
      this.addEventListener('close', closed);
    }
  }
  return { ctor: Tracked as unknown as WebSocketConstructor, cut: () => last?.close(4000, 'cut') };
}
