/**
 * The xterm.js terminal of a view, as the page sets it up: its options (a
 * command session converts line feeds and does not blink), its add-ons
 * (fit, search, links, Unicode 11 widths, the clipboard), its own keys
 * (Ctrl+Shift+F searches, Ctrl+Shift+C copies the selection), and the OSC
 * 52 policy: a program may set the viewer's clipboard, never read it. And
 * how the terminal takes a size: at its place in the output stream.
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

/** A terminal for session `info`, at its size, opened in `body`; Ctrl+Shift+F calls `search`. */
export function openXterm(info: SessionRow, body: HTMLElement, search: () => void): Xterm {
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
  const finder = new SearchAddon();
  term.loadAddon(fit);
  term.loadAddon(finder);
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
  term.attachCustomKeyEventHandler((e) => ownKey(term, e, search));
  return { term, fit, search: finder, disposables };
}

/** Whether xterm.js is to handle `e`: not for the keys the page takes itself. */
function ownKey(term: Terminal, e: KeyboardEvent, search: () => void): boolean {
  if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true;
  if (e.key === 'F' || e.key === 'f') {
    search();
    return false;
  }
  if ((e.key === 'C' || e.key === 'c') && term.hasSelection()) {
    void navigator.clipboard?.writeText(term.getSelection());
    return false;
  }
  return true;
}

/**
 * Resizes `term` at this point of the output stream: after the bytes
 * already handed to xterm.js are parsed, before the ones that follow. The
 * server's screen model resizes at the offset where the resize happened,
 * and `session.resized` arrives at that point of the stream; resizing at
 * once instead would parse queued bytes, written for the old size, at the
 * new one (a screen that differs from the server's: issue 15).
 */
export function resizeInStream(term: Terminal, cols: number, rows: number): void {
  term.write('', () => {
    if (cols !== term.cols || rows !== term.rows) term.resize(cols, rows);
  });
}
