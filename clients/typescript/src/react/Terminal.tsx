/**
 * `<Terminal sessionId readOnly? />`: an xterm.js 6 terminal showing a
 * session: the server's screen on attach, live output, resume after a
 * reconnect, input to the server, and its size (fitted to the element by the
 * fit addon) sent as the window size. It draws with WebGL when it can, and
 * falls back to the DOM renderer when WebGL is missing or its context is lost
 * (browsers allow about 16 contexts per page).
 *
 * xterm.js and its addons are optional peer dependencies, loaded when the
 * component mounts; import `@xterm/xterm/css/xterm.css` in the application.
 */

import type { ITerminalInitOnlyOptions, ITerminalOptions, Terminal as XTerm } from '@xterm/xterm';
import { type CSSProperties, useEffect, useRef } from 'react';
import { SessionAddon } from './attach-addon.js';
import { useClient } from './context.js';

/** Props of `<Terminal>`. */
export interface TerminalProps {
  sessionId: string;
  /** Watch only: keystrokes and the size are not sent. */
  readOnly?: boolean;
  /** xterm.js options (font, theme, scrollback, ...). */
  options?: ITerminalOptions & ITerminalInitOnlyOptions;
  /** Called with the xterm.js instance once it is open (and with null when it is disposed). */
  onReady?: (term: XTerm | null, renderer: 'webgl' | 'dom') => void;
  className?: string;
  style?: CSSProperties;
}

/** A terminal for `sessionId`. */
export function Terminal({ sessionId, readOnly = false, options, onReady, className, style }: TerminalProps) {
  const client = useClient();
  const el = useRef<HTMLDivElement>(null);
  const ready = useRef(onReady);
  ready.current = onReady;
  const opts = useRef(options);

  useEffect(() => {
    let disposed = false;
    let cleanup = () => {};
    void (async () => {
      const [{ Terminal: XTermClass }, { FitAddon }] = await Promise.all([import('@xterm/xterm'), import('@xterm/addon-fit')]);
      if (disposed || !el.current) return;
      const term = new XTermClass({ cursorBlink: !readOnly, disableStdin: readOnly, ...opts.current });
      const fit = new FitAddon();
      term.loadAddon(fit);
      term.open(el.current);
      const renderer = await loadWebgl(term);
      if (disposed) {
        term.dispose();
        return;
      }
      const refit = () => {
        try {
          fit.fit();
        } catch {
          // Not laid out yet (or no layout at all): keep the current size.
        }
      };
      refit();
      term.loadAddon(new SessionAddon(client, sessionId, { readOnly }));
      const observer = typeof ResizeObserver === 'function' ? new ResizeObserver(refit) : null;
      observer?.observe(el.current);
      ready.current?.(term, renderer);
      cleanup = () => {
        observer?.disconnect();
        term.dispose();
        ready.current?.(null, renderer);
      };
    })();
    return () => {
      disposed = true;
      cleanup();
    };
  }, [client, sessionId, readOnly]);

  return <div ref={el} className={className} style={{ width: '100%', height: '100%', ...style }} data-termstream-session={sessionId} />;
}

/** Loads the WebGL renderer if it works here; on a lost context it goes back to the DOM renderer. */
async function loadWebgl(term: XTerm): Promise<'webgl' | 'dom'> {
  try {
    const { WebglAddon } = await import('@xterm/addon-webgl');
    const webgl = new WebglAddon();
    webgl.onContextLoss(() => webgl.dispose());
    term.loadAddon(webgl);
    return 'webgl';
  } catch {
    return 'dom';
  }
}
