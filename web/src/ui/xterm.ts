/**
 * The xterm.js terminal of a view, as the page sets it up: its options (a
 * command session converts line feeds and does not blink), its add-ons
 * (fit, search, links, Unicode 11 widths, the clipboard) and the OSC 52
 * policy: a program may set the viewer's clipboard, never read it.
 */

import { Terminal, type IDisposable } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { SearchAddon } from '@xterm/addon-search';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import { ClipboardAddon } from '@xterm/addon-clipboard';
import type { SessionRow } from '../state/sessions';
import { currentTheme } from './theme';

/** Lines a view keeps above its screen. */
export const SCROLLBACK = 5000;

/** A view's terminal and the add-ons the view uses. */
export interface Xterm {
  term: Terminal;
  fit: FitAddon;
  search: SearchAddon;
  /** The parser hooks added here, for the view to dispose of. */
  disposables: IDisposable[];
}

/** A terminal for session `info`, at its size, opened in `body`. */
export function openXterm(info: SessionRow, body: HTMLElement): Xterm {
  const command = info.kind === 'command';
  const term = new Terminal({
    allowProposedApi: true,
    convertEol: command,
    cursorBlink: !command,
    scrollback: SCROLLBACK,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: 14,
    theme: currentTheme(),
    cols: Math.max(2, info.cols || 80),
    rows: Math.max(1, info.rows || 24),
  });
  const fit = new FitAddon();
  const search = new SearchAddon();
  term.loadAddon(fit);
  term.loadAddon(search);
  term.loadAddon(new WebLinksAddon());
  term.loadAddon(new Unicode11Addon());
  // OSC 52 sets the clipboard without waiting for the browser: xterm.js
  // parses nothing more until a handler's promise settles, and a write
  // the browser holds (a page without focus) or refuses held up every
  // byte after it.
  term.loadAddon(new ClipboardAddon(undefined, { readText: () => '', writeText: (sel, text) => void (sel === 'c' && navigator.clipboard?.writeText(text).catch(() => {})) }));
  // OSC 52 may set the clipboard, never read it: a read would send the
  // viewer's clipboard to the program (from every viewer, and for old
  // output parsed again). Registered after the addon, so it goes first.
  const disposables = [term.parser.registerOscHandler(52, (data) => data.slice(data.indexOf(';') + 1) === '?')];
  term.unicode.activeVersion = '11';
  term.open(body);
  return { term, fit, search, disposables };
}
