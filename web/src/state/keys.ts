/**
 * The on-screen key row of small screens: keys that phone keyboards lack,
 * and sticky Ctrl and Alt that apply to the next key typed (on the row or
 * the keyboard). Pure: turns key presses into the bytes a terminal sends.
 */

export type RowKey = 'Esc' | 'Tab' | 'Ctrl' | 'Alt' | 'Up' | 'Down' | 'Left' | 'Right' | '|' | '~' | '/' | '-';

export const ROW_KEYS: readonly RowKey[] = ['Esc', 'Tab', 'Ctrl', 'Alt', 'Up', 'Down', 'Left', 'Right', '|', '~', '/', '-'];

export interface Sticky {
  ctrl: boolean;
  alt: boolean;
}

const PLAIN: Partial<Record<RowKey, string>> = {
  Esc: '\x1b',
  Tab: '\t',
  Up: '\x1b[A',
  Down: '\x1b[B',
  Right: '\x1b[C',
  Left: '\x1b[D',
  '|': '|',
  '~': '~',
  '/': '/',
  '-': '-',
};

/** The byte Ctrl gives with `ch`, or `ch` itself when Ctrl means nothing there. */
export function ctrlOf(ch: string): string {
  if (ch.length !== 1) return ch;
  const c = ch.toUpperCase().charCodeAt(0);
  if (c >= 64 && c <= 95) return String.fromCharCode(c - 64); // @, A-Z, [ \ ] ^ _
  if (ch === '?') return '\x7f';
  if (ch === ' ') return '\x00';
  return ch;
}

/** Applies sticky modifiers to typed text: Ctrl to its first character, Alt as an Esc prefix. */
export function applySticky(data: string, s: Sticky): string {
  if (!s.ctrl && !s.alt) return data;
  let out = data;
  if (s.ctrl && out.length > 0) out = ctrlOf(out[0]!) + out.slice(1);
  if (s.alt) out = '\x1b' + out;
  return out;
}

/**
 * Presses `key` with `sticky` modifiers: the bytes to send (or null for a
 * modifier) and the modifiers after the press (a key press clears them;
 * pressing a modifier toggles it).
 */
export function pressKey(key: RowKey, sticky: Sticky): { send: string | null; sticky: Sticky } {
  if (key === 'Ctrl') return { send: null, sticky: { ...sticky, ctrl: !sticky.ctrl } };
  if (key === 'Alt') return { send: null, sticky: { ...sticky, alt: !sticky.alt } };
  const plain = PLAIN[key] ?? '';
  const send = plain.length === 1 ? applySticky(plain, sticky) : sticky.alt ? '\x1b' + plain : plain;
  return { send, sticky: { ctrl: false, alt: false } };
}
