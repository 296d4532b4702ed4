/** What a browser without a credential sees on a server with tokens. */

import { h } from './dom';

export function loginView(reason: string): HTMLElement {
  const origin = location.origin;
  const code = (s: string) => h('pre', {}, h('code', {}, s));
  return h(
    'main',
    { class: 'login' },
    h('h1', {}, 'termstream'),
    h('p', {}, 'This server needs a login. Open a login link made by someone who holds a token:'),
    code(`curl -s -X POST -H "Authorization: Bearer $TOKEN" ${origin}/api/login-codes`),
    h('p', {}, 'then open ', h('code', {}, `${origin}/login?code=…`), ' (the answer’s ', h('code', {}, 'path'), ') in this browser within a minute. The code works once; the login lasts 12 hours. To give read-only access, ask for ', h('code', {}, '{"projects":{"NAME":"read"}}'), '.'),
    h('p', { class: 'muted' }, `The server said: ${reason}`),
  );
}
