/**
 * Which sessions are focused (issue 12): the server's focus set of each
 * project the page shows, followed over the socket, or, on a server
 * without the focus API, a set of the page's own. Whether the server has
 * the API is learnt from `GET /api/projects` (404: it has not); until a
 * call answers (a network error, a passing 503) it is undecided, and the
 * page asks again at its next refresh.
 */

import type { ProjectFocus, WebSocketClient } from '@termstream/client';

/** What the focus sets need of the page. */
export interface FocusHost {
  readonly client: WebSocketClient;
  /** The project of a session, if the page knows the session. */
  projectOf(id: string): string | undefined;
  /** Whether the page may only watch `project` (a focus change would be refused). */
  readOnly(project: string): boolean;
  /** A focus set changed: mark the views and tabs. */
  changed(): void;
}

export class FocusSets {
  /** Whether the server has the focus API; `undefined` until a `GET /api/projects` answered. */
  private enabled: boolean | undefined;
  /** Per project followed on the server: its focus set. */
  private readonly trackers = new Map<string, ProjectFocus>();
  /** Sessions focused locally, when the server has no focus API. */
  private local = new Set<string>();

  constructor(private readonly host: FocusHost) {}

  /** Whether it is still to learn whether the server has the focus API. */
  get undecided(): boolean {
    return this.enabled === undefined;
  }

  /**
   * Takes the answer of `GET /api/projects`: a list (the API is there),
   * `null` (404: it is not), `undefined` (no answer: still undecided).
   * Returns true when the API was just found (the page then follows the
   * projects it shows).
   */
  decide(projects: unknown[] | null | undefined): boolean {
    if (this.enabled !== undefined || projects === undefined) return false;
    this.enabled = projects !== null;
    return this.enabled;
  }

  isFocused(id: string): boolean {
    const p = this.host.projectOf(id);
    const t = p ? this.trackers.get(p) : undefined;
    return t?.state ? t.state.focusedSessions.includes(id) : this.local.has(id);
  }

  /** Follows a project's focus set on the server, when the server has the API. */
  track(project: string): void {
    if (!this.enabled || this.trackers.has(project)) return;
    const t = this.host.client.focus(project);
    this.trackers.set(project, t);
    t.subscribe(() => this.host.changed());
  }

  /** Focuses `ids` (a header was clicked): on the server, or the page's own set without the API. */
  request(ids: readonly string[]): void {
    if (!this.enabled) {
      // The seam: without the server's focus API, focus is this page's own.
      this.local = new Set(ids);
      this.host.changed();
      return;
    }
    for (const sid of ids) {
      const p = this.host.projectOf(sid);
      // A read-only credential's focus PUT would only be refused.
      if (p && !this.host.readOnly(p)) void this.trackers.get(p)?.focus(sid).catch(() => {});
    }
  }
}
