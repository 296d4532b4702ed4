/** Terminal colours that follow the system's light or dark preference. */

import type { ITheme } from '@xterm/xterm';

export const darkTheme: ITheme = {
  background: '#16181d',
  foreground: '#d8dee9',
  cursor: '#d8dee9',
  selectionBackground: '#3b4252',
};

export const lightTheme: ITheme = {
  background: '#fbfbfa',
  foreground: '#24292f',
  cursor: '#24292f',
  cursorAccent: '#fbfbfa',
  selectionBackground: '#c8d6e8',
  black: '#24292f',
  red: '#cf222e',
  green: '#116329',
  yellow: '#8a6a00',
  blue: '#0550ae',
  magenta: '#8250df',
  cyan: '#1b7c83',
  white: '#6e7781',
  brightBlack: '#57606a',
  brightWhite: '#8c959f',
};

const query = matchMedia('(prefers-color-scheme: dark)');

export function currentTheme(): ITheme {
  return query.matches ? darkTheme : lightTheme;
}

/** Calls `f` when the system switches between light and dark. */
export function onThemeChange(f: (t: ITheme) => void): void {
  query.addEventListener('change', () => f(currentTheme()));
}
