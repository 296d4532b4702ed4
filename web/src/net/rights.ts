/**
 * What the page's credential may do in each project: write (type, resize,
 * terminate, delete) or only watch. The server says it in `GET
 * /api/projects` (each project's `access`), which the page asks with every
 * refresh of its list, so a new login in this browser (with other rights)
 * is followed at the next refresh. A write the server refuses with
 * `read_only` (typing) marks its project too: an older server says no
 * `access`, and a credential's rights may change between two lists. A
 * project nothing was said of counts as writable.
 */

import type { ProjectSummary } from '@termstream/client';

export class Rights {
  /** Per project: what the server said, or what a refusal taught. */
  private readonly known = new Map<string, 'read' | 'write'>();

  /** `changed` is told when a project's rights change. */
  constructor(private readonly changed: () => void) {}

  /** Whether the page may only watch the sessions of `project`. */
  readOnly(project: string): boolean {
    return this.known.get(project) === 'read';
  }

  /** Takes what a fresh `GET /api/projects` says; true when a right changed. */
  take(projects: readonly ProjectSummary[]): boolean {
    let changed = false;
    for (const p of projects) {
      const access = p.access === 'read' ? 'read' : p.access === 'write' ? 'write' : undefined;
      // No `access` (an older server) or one this page does not know: what refusals taught stays.
      if (!access || this.known.get(p.projectId) === access) continue;
      this.known.set(p.projectId, access);
      changed = true;
    }
    return changed;
  }

  /** The server refused a write in `project` with `read_only`. */
  refused(project: string): void {
    if (this.readOnly(project)) return;
    this.known.set(project, 'read');
    this.changed();
  }
}
