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
  /** Asks to focus a session; settles with the state in which it is focused. */
  focus: (sessionId: string) => Promise<FocusState>;
  /** Asks to unfocus a session; settles with the state in which it is not. */
  blur: (sessionId: string) => Promise<FocusState>;
}

const NONE: string[] = [];

/** Follows the focus set of `projectId`. */
export function useFocus(projectId: string): UseFocus {
  const client = useClient();
  const tracker = useMemo(() => client.focus(projectId), [client, projectId]);
  const subscribe = useCallback((onChange: () => void) => tracker.subscribe(onChange), [tracker]);
  const state = useSyncExternalStore(subscribe, () => tracker.state, () => tracker.state);
  const focus = useCallback((id: string) => tracker.focus(id), [tracker]);
  const blur = useCallback((id: string) => tracker.blur(id), [tracker]);
  return {
    focusedSessions: state?.focusedSessions ?? NONE,
    version: state?.version ?? null,
    maxFocused: state?.maxFocused ?? null,
    focus,
    blur,
  };
}
