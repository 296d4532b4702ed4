/**
 * WebGL renderers for visible terminals, at most `MAX_CONTEXTS` on the page
 * (browsers allow about 16 and drop the oldest beyond that). A terminal that
 * is hidden gives its context back; one whose context is lost falls back to
 * xterm.js's DOM renderer for good.
 */

import type { Terminal } from '@xterm/xterm';
import { WebglAddon } from '@xterm/addon-webgl';

export const MAX_CONTEXTS = 8;

const holders = new Map<Terminal, WebglAddon>();
/** Terminals whose context was lost, or that failed to create one. */
const broken = new WeakSet<Terminal>();

/** Whether the page may use WebGL at all (`?renderer=dom` or a stored choice turns it off). */
function allowed(): boolean {
  const q = new URLSearchParams(location.search).get('renderer');
  return (q ?? localStorage.getItem('termstream.renderer')) !== 'dom';
}

/** Gives `term` a WebGL renderer if one is free; otherwise it keeps the DOM one. */
export function acquireWebgl(term: Terminal): void {
  if (holders.has(term) || broken.has(term) || holders.size >= MAX_CONTEXTS || !allowed()) return;
  try {
    const addon = new WebglAddon();
    addon.onContextLoss(() => {
      broken.add(term);
      releaseWebgl(term);
    });
    term.loadAddon(addon);
    holders.set(term, addon);
  } catch {
    broken.add(term);
  }
}

/** Takes the WebGL renderer back (the terminal renders with the DOM). */
export function releaseWebgl(term: Terminal): void {
  const addon = holders.get(term);
  if (!addon) return;
  holders.delete(term);
  try {
    addon.dispose();
  } catch {
    // A lost context may throw on dispose; the DOM renderer takes over anyway.
  }
}

/** How many terminals render with WebGL now. */
export function webglCount(): number {
  return holders.size;
}
