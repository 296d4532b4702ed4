/**
 * Browser lifecycle events that mean "try now": `online`, `visibilitychange`
 * to visible, and `pageshow` of a page restored from the back-forward cache.
 */

/** Something events can be listened to on (`window`, `document`, or a fake). */
export interface EventSourceLike {
  addEventListener(type: string, listener: (ev: any) => void): void;
  removeEventListener(type: string, listener: (ev: any) => void): void;
}

/** Where the lifecycle events come from. */
export interface LifecycleTargets {
  /** Fires `online` and `pageshow`; default `globalThis.window`. */
  window?: EventSourceLike;
  /** Fires `visibilitychange` and has `visibilityState`; default `globalThis.document`. */
  document?: EventSourceLike & { visibilityState?: string };
}

/** Why the client was woken. */
export type WakeReason = 'online' | 'visible' | 'pageshow';

/** Listens for the events; returns the function that stops listening. `null` targets listen to nothing. */
export function watchLifecycle(targets: LifecycleTargets | null | undefined, wake: (why: WakeReason) => void): () => void {
  if (targets === null) return () => {};
  const g = globalThis as { window?: EventSourceLike; document?: EventSourceLike & { visibilityState?: string } };
  const win = targets?.window ?? (typeof g.window?.addEventListener === 'function' ? g.window : undefined);
  const doc = targets?.document ?? (typeof g.document?.addEventListener === 'function' ? g.document : undefined);
  const online = () => wake('online');
  const pageshow = (ev: { persisted?: boolean }) => ev?.persisted && wake('pageshow');
  const visibility = () => doc?.visibilityState === 'visible' && wake('visible');
  win?.addEventListener('online', online);
  win?.addEventListener('pageshow', pageshow);
  doc?.addEventListener('visibilitychange', visibility);
  return () => {
    win?.removeEventListener('online', online);
    win?.removeEventListener('pageshow', pageshow);
    doc?.removeEventListener('visibilitychange', visibility);
  };
}
