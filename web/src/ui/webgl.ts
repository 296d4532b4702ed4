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

let hardware: boolean | undefined;

/**
 * Whether the page uses WebGL: `?renderer=dom|webgl` (or the stored choice
 * `termstream.renderer`) decides; by default only when the browser's WebGL
 * runs on a GPU. A software rasterizer (SwiftShader, llvmpipe) draws slower
 * than the DOM renderer.
 */
function allowed(): boolean {
  const choice = new URLSearchParams(location.search).get('renderer') ?? localStorage.getItem('termstream.renderer');
  if (choice === 'dom' || choice === 'webgl') return choice === 'webgl';
  if (hardware === undefined) {
    try {
      const gl = document.createElement('canvas').getContext('webgl2');
      const info = gl?.getExtension('WEBGL_debug_renderer_info');
      const name = gl && info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : '';
      hardware = !!gl && !/swiftshader|llvmpipe|softpipe|software/i.test(name);
      gl?.getExtension('WEBGL_lose_context')?.loseContext();
    } catch {
      hardware = false;
    }
  }
  return hardware;
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
