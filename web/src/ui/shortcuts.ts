/**
 * The page's keys: its shortcuts (Alt+Shift+G, N, ←/→), the tab strip's
 * arrows, full screen with its keyboard lock, and the question before
 * leaving while typing into a terminal.
 *
 * What the page keeps from the program: Alt+Shift+G and Alt+Shift+N always
 * (outside full screen), Alt+Shift+←/→ only while two or more terminals are
 * open (with one there is nothing to switch to). In full screen the page
 * takes none of them: every key goes to the program, which is what the
 * keyboard lock there is for.
 */

import type { LayoutAction, Mode } from '../state/layout';

/** What the keys act on: the app's layout, its dialog and its terminals. */
export interface ShortcutTarget {
  /** How many terminals are open (tabs or grid). */
  openCount(): number;
  mode(): Mode;
  dispatch(a: LayoutAction): void;
  /** Opens the dialog that starts a session. */
  newSession(): void;
  /** Whether a terminal of the page may still be running (then leaving asks first). */
  anyLive(): boolean;
  /** The terminals fit their boxes again (full screen entered or left). */
  refit(): void;
  /** Gives the keyboard to the active terminal. */
  focusActive(): void;
}

/** Installs the keys on the window and on the tab strip `tabs`. */
export function installShortcuts(target: ShortcutTarget, tabs: HTMLElement): void {
  window.addEventListener('beforeunload', (e) => {
    // Closing the tab while typing into a terminal asks first.
    if (document.activeElement?.closest('.term') && target.anyLive()) {
      e.preventDefault();
      e.returnValue = '';
    }
  });
  document.addEventListener('fullscreenchange', () => {
    if (!document.fullscreenElement) (navigator as { keyboard?: { unlock?: () => void } }).keyboard?.unlock?.();
    target.refit();
  });
  // In the capture phase, so the page's shortcuts work while a terminal
  // has the keyboard: xterm.js stops the keys it takes from bubbling, and
  // would send them to the program (Alt+Shift+G as ESC G).
  window.addEventListener('keydown', (e) => shortcut(target, e), true);
  tabs.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      e.preventDefault();
      target.dispatch({ type: e.key === 'ArrowRight' ? 'next' : 'prev' });
      (tabs.querySelector('[aria-selected="true"]') as HTMLElement | null)?.focus();
    } else if (e.key === 'Enter') {
      target.focusActive();
    }
  });
}

/** Takes a page shortcut from `e` (before the terminal sees it), or leaves it for the program. */
function shortcut(target: ShortcutTarget, e: KeyboardEvent): void {
  if (!(e.altKey && e.shiftKey) || e.ctrlKey || e.metaKey) return;
  // Full screen gives the program every key (and the page shows only it).
  if (document.fullscreenElement) return;
  if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
    if (target.openCount() < 2) return;
    target.dispatch({ type: e.key === 'ArrowRight' ? 'next' : 'prev' });
  } else if (e.code === 'KeyG') {
    target.dispatch({ type: 'mode', mode: target.mode() === 'tabs' ? 'grid' : 'tabs' });
  } else if (e.code === 'KeyN') {
    target.newSession();
  } else {
    return;
  }
  e.preventDefault();
  e.stopPropagation();
}

/**
 * Shows `el` in full screen, or leaves full screen. In full screen the
 * keyboard is locked where the browser can, so Ctrl+W, Ctrl+T and friends
 * reach the program; `focus` gives the terminal the keyboard (before the
 * lock is granted, and again after).
 */
export async function toggleFullscreen(el: HTMLElement, focus: () => void): Promise<void> {
  if (document.fullscreenElement) {
    await document.exitFullscreen();
    return;
  }
  await el.requestFullscreen();
  // The terminal takes the keyboard at once: keys typed while the browser
  // is still granting the lock go to the program, not to the button.
  focus();
  const kb = (navigator as { keyboard?: { lock?: () => Promise<void> } }).keyboard;
  await kb?.lock?.().catch(() => {});
  focus();
}
