/**
 * Telling a terminal's answers from typed input. xterm.js answers queries
 * in the output (cursor position, device attributes, modes, colours)
 * through `onData`, like typed keys; every viewer of a session parses the
 * same query, and the server passes on one viewer's answers when they are
 * sent with `response: true`. Parsing is synchronous, so a hook on each
 * query sequence marks what `onData` emits until the parse ends.
 */

import type { IDisposable, Terminal } from '@xterm/xterm';

/** The CSI queries xterm.js 6 answers (DA1/2/3, DSR/CPR, DECRQM, window reports, XTVERSION, kitty keyboard flags). */
const CSI_QUERIES = [
  { final: 'c' },
  { prefix: '>', final: 'c' },
  { prefix: '=', final: 'c' },
  { final: 'n' },
  { prefix: '?', final: 'n' },
  { intermediates: '$', final: 'p' },
  { prefix: '?', intermediates: '$', final: 'p' },
  { final: 't' },
  { prefix: '>', final: 'q' },
  { prefix: '?', final: 'u' },
];
/** The OSC colour queries (`OSC 4/10/11/12 ; ? ST`). */
const OSC_QUERIES = [4, 10, 11, 12];

/** Whether `onData` emits an answer right now (true only while a query is parsed). */
export interface QueryWatch extends IDisposable {
  readonly answering: boolean;
}

/** Hooks `term`'s parser so that `answering` says whether `onData` now emits an answer. */
export function watchQueries(term: Terminal): QueryWatch {
  let answering = false;
  const query = () => {
    answering = true;
    queueMicrotask(() => (answering = false));
    return false;
  };
  const p = term.parser;
  const hooks: IDisposable[] = [
    ...CSI_QUERIES.map((id) => p.registerCsiHandler(id, query)),
    ...OSC_QUERIES.map((n) => p.registerOscHandler(n, query)),
    p.registerDcsHandler({ intermediates: '$', final: 'q' }, query), // DECRQSS
  ];
  return {
    get answering() {
      return answering;
    },
    dispose: () => hooks.splice(0).forEach((h) => h.dispose()),
  };
}
