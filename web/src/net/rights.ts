/**
 * What the page's credential may do in each project: write (type, resize,
 * terminate, delete) or only watch. The server says it nowhere up front
 * (not at login, in the socket's ticket or in the session list), so the
 * page asks once per project, with a write that changes nothing
 * (`api.mayWrite`), and hides the controls that would fail for a project
 * found read-only. A write the server refuses with `read_only` (typing)
 * marks its project too. Until the answer comes, or when none can be had,
 * a project counts as writable.
 */

import { api } from './api';
import type { SessionMap } from '../state/sessions';

export class Rights {
  /** Per project: the answer, or `asking` while the request is out. */
  private readonly known = new Map<string, 'read' | 'write' | 'asking'>();

  /** `changed` is told when a project is found read-only. */
  constructor(private readonly changed: () => void) {}

  /** Whether the page may only watch the sessions of `project`. */
  readOnly(project: string): boolean {
    return this.known.get(project) === 'read';
  }

  /** Asks about each project of `sessions` not asked about yet (with one of its sessions). */
  learn(sessions: SessionMap): void {
    for (const s of sessions.values()) {
      if (this.known.has(s.project)) continue;
      this.known.set(s.project, 'asking');
      void this.ask(s.project, s.id);
    }
  }

  /** The server refused a write in `project` with `read_only`. */
  refused(project: string): void {
    if (this.readOnly(project)) return;
    this.known.set(project, 'read');
    this.changed();
  }

  private async ask(project: string, id: string): Promise<void> {
    const may = await api.mayWrite(id);
    if (this.known.get(project) !== 'asking') return;
    if (may === false) this.refused(project);
    else if (may) this.known.set(project, 'write');
    // The session went meanwhile: asked again, with another, at the next list.
    else this.known.delete(project);
  }
}
