/**
 * The queries in a program's output that xterm.js answers while it parses
 * (its InputHandler's CSI handlers that call `triggerDataEvent`, the window
 * reports, colour queries and DECRQSS): a hook on each tells the terminal's
 * view that what `onData` emits during that parse is a response, not typing
 * (see `terminal.ts`).
 */

import type { IDisposable, IParser } from '@xterm/xterm';

/**
 * The queries xterm.js answers while it parses (its InputHandler's CSI
 * handlers that call `triggerDataEvent`, and the window reports): a hook on
 * each marks what `onData` emits during that parse as a response.
 */
const CSI_QUERIES = [
  { final: 'c' }, // DA1
  { prefix: '>', final: 'c' }, // DA2
  { prefix: '=', final: 'c' }, // DA3
  { final: 'n' }, // DSR, CPR
  { prefix: '?', final: 'n' }, // DECDSR
  { intermediates: '$', final: 'p' }, // DECRQM
  { prefix: '?', intermediates: '$', final: 'p' },
  { final: 't' }, // window reports
  { prefix: '>', final: 'q' }, // XTVERSION
  { prefix: '?', final: 'u' }, // kitty keyboard flags
];
/** OSC colour queries (`OSC 4/10/11/12 ; ? ST`). */
const OSC_QUERIES = [4, 10, 11, 12];

/**
 * Hooks `marked` on every query `parser` answers; the hooks return false,
 * so xterm.js still answers them. The disposables remove the hooks.
 */
export function hookQueries(parser: IParser, marked: () => void): IDisposable[] {
  const query = () => {
    marked();
    return false;
  };
  return [
    ...CSI_QUERIES.map((id) => parser.registerCsiHandler(id, query)),
    ...OSC_QUERIES.map((n) => parser.registerOscHandler(n, query)),
    parser.registerDcsHandler({ intermediates: '$', final: 'q' }, query), // DECRQSS
  ];
}
