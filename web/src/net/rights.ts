/**
 * What the page's credential may do in each project: write (type, resize,
 * terminate, delete) or only watch. The server says it in `GET
 * /api/projects` (each project's `access`); the page asks on load, when
 * the tab is shown again, after the socket reconnected and after a
 * `read_only` refusal, so a new login in this browser (with other rights)
 * is followed.
 *
 * The page's WebSocket keeps the rights it had when it connected: a write
 * the server now allows is still refused over a socket opened before the
 * new login. So a project that turns from read to write stays read-only
 * until the socket connected again (`connected`; the page reconnects it
 * when `take` says so), and a `read_only` refusal over the socket stays in
 * force until then too, whatever a list says meanwhile. A project nothing
 * was said of counts as writable (an older server says no `access`: the
 * refusals teach it).
 */

import type { ProjectSummary } from '@termstream/client';

export class Rights {
  /** Per project: what the server said last (`read` or `write`). */
  private readonly said = new Map<string, 'read' | 'write'>();
  /** Projects whose writes the socket refused (`read_only`) since it connected. */
  private readonly refusals = new Set<string>();
  /** Projects the server now says writable, read-only over the socket until it connects again. */
  private readonly waiting = new Set<string>();

  /** Whether the page may only watch the sessions of `project`. */
  readOnly(project: string): boolean {
    return this.refusals.has(project) || this.waiting.has(project) || this.said.get(project) === 'read';
  }

  /**
   * Takes what a fresh `GET /api/projects` says. Returns true when a
   * project turned from read-only to writable: the socket must connect
   * again to get the new rights (until `connected` it stays read-only).
   */
  take(projects: readonly ProjectSummary[]): boolean {
    let reconnect = false;
    for (const p of projects) {
      const access = p.access === 'read' ? 'read' : p.access === 'write' ? 'write' : undefined;
      // No `access` (an older server) or one this page does not know: what refusals taught stays.
      if (!access) continue;
      if (access === 'write' && this.readOnly(p.projectId) && !this.waiting.has(p.projectId)) {
        this.waiting.add(p.projectId);
        reconnect = true;
      }
      if (access === 'read') this.waiting.delete(p.projectId);
      this.said.set(p.projectId, access);
    }
    return reconnect;
  }

  /** The server refused a write in `project` with `read_only`; true when that is news. */
  refused(project: string): boolean {
    if (this.refusals.has(project)) return false;
    this.refusals.add(project);
    return true;
  }

  /** The socket connected (again): it has the credential's rights of now. */
  connected(): void {
    this.refusals.clear();
    this.waiting.clear();
  }
}
