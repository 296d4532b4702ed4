/**
 * The page's address: which view shows, and which session. Pure: parses and
 * formats `location.hash`, so a view can be bookmarked and shared.
 *
 * - `#/` the session list
 * - `#/s/ID` the terminals, with session ID open and active
 * - `#/monitor` every session's preview
 * - `#/replay/ID` the recording of session ID
 */

export type Route =
  | { view: 'list' }
  | { view: 'terminal'; id: string }
  | { view: 'monitor' }
  | { view: 'replay'; id: string };

/** Session ids the server accepts: letters, digits, `-`, `_`, `.`, at most 128. */
const ID = /^[A-Za-z0-9._-]{1,128}$/;

/** The route of a hash such as `#/s/abc`; anything unknown is the list. */
export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').map(safeDecode);
  const [head, id] = parts;
  if ((head === 's' || head === 'replay') && id !== undefined && ID.test(id) && parts.length === 2) {
    return head === 's' ? { view: 'terminal', id } : { view: 'replay', id };
  }
  if (head === 'monitor' && parts.length === 1) return { view: 'monitor' };
  return { view: 'list' };
}

/** The hash of a route; `parseRoute(formatRoute(r))` gives `r` back. */
export function formatRoute(r: Route): string {
  switch (r.view) {
    case 'list':
      return '#/';
    case 'terminal':
      return `#/s/${encodeURIComponent(r.id)}`;
    case 'monitor':
      return '#/monitor';
    case 'replay':
      return `#/replay/${encodeURIComponent(r.id)}`;
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return '';
  }
}
