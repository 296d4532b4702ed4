/**
 * `useFocus(projectId)`: the project's focus set as the server says it is,
 * and functions that ask the server to change it.
 */

import { useCallback, useMemo, useSyncExternalStore } from 'react';
import type { FocusState } from '../index.js';
import { useClient } from './context.js';

/** What `useFocus` returns. */
export interface UseFocus {
  focusedSessions: string[];
  /** The project's focus version, or null before the server said it. */
  version: number | null;
  maxFocused: number | null;
  /** Asks to focus a session; settles with the state in which it is focused (a failure not caught is no unhandled rejection). */
  focus: (sessionId: string) => Promise<FocusState>;
  /** Asks to unfocus a session; settles with the state in which it is not. */
  blur: (sessionId: string) => Promise<FocusState>;
}

const NONE: string[] = [];

/**
 * `p`, marked handled: a click handler that drops the promise (`onClick={()
 * => focus(id)}`) makes no unhandled rejection when the request fails (e.g.
 * `FocusError('disconnected')` as the provider unmounts). Awaiting it still
 * throws.
 */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** Follows the focus set of `projectId`. */
export function useFocus(projectId: string): UseFocus {
  const client = useClient();
  const tracker = useMemo(() => client.focus(projectId), [client, projectId]);
  const subscribe = useCallback((onChange: () => void) => tracker.subscribe(onChange), [tracker]);
  const state = useSyncExternalStore(subscribe, () => tracker.state, () => tracker.state);
  const focus = useCallback((id: string) => handled(tracker.focus(id)), [tracker]);
  const blur = useCallback((id: string) => handled(tracker.blur(id)), [tracker]);
  return {
    focusedSessions: state?.focusedSessions ?? NONE,
    version: state?.version ?? null,
    maxFocused: state?.maxFocused ?? null,
    focus,
    blur,
  };
}
