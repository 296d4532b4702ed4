// Rights (net/rights.ts): what the server says of each project, the
// refusals over the socket, and the wait for a new socket after a project
// turned writable.
import { describe, expect, it } from 'vitest';
import type { ProjectSummary } from '@termstream/client';
import { Rights } from '../../src/net/rights';

function said(projectId: string, access?: string): ProjectSummary {
  return { projectId, access, totalSessions: 1, runningSessions: 1, focusedSessions: [], version: 1, maxFocused: 4 } as unknown as ProjectSummary;
}

describe('Rights', () => {
  it('counts a project nothing was said of as writable', () => {
    expect(new Rights().readOnly('p')).toBe(false);
  });

  it('keeps a refusal when the server says no access, or one it does not know', () => {
    const r = new Rights();
    expect(r.refused('p')).toBe(true);
    expect(r.refused('p')).toBe(false);
    expect(r.take([said('p'), said('p', 'admin')])).toBe(false);
    expect(r.readOnly('p')).toBe(true);
    r.connected();
    expect(r.readOnly('p')).toBe(false);
  });

  it('keeps a refusal over the socket in force until it connects again, whatever a list says', () => {
    const r = new Rights();
    r.take([said('p', 'write')]);
    r.refused('p');
    // The socket's rights are older than the list: it must connect again.
    expect(r.take([said('p', 'write')])).toBe(true);
    expect(r.readOnly('p')).toBe(true);
    expect(r.take([said('p', 'write')])).toBe(false);
    r.connected();
    expect(r.readOnly('p')).toBe(false);
  });

  it('turns read to write only once the socket connected again', () => {
    const r = new Rights();
    expect(r.take([said('p', 'read'), said('q', 'write')])).toBe(false);
    expect(r.readOnly('p')).toBe(true);
    expect(r.readOnly('q')).toBe(false);
    expect(r.take([said('p', 'write')])).toBe(true);
    expect(r.readOnly('p')).toBe(true);
    r.connected();
    expect(r.readOnly('p')).toBe(false);
    expect(r.take([said('p', 'write')])).toBe(false);
  });

  it('turns write to read at once, and a read said again while waiting ends the wait', () => {
    const r = new Rights();
    r.take([said('p', 'write')]);
    expect(r.take([said('p', 'read')])).toBe(false);
    expect(r.readOnly('p')).toBe(true);
    expect(r.take([said('p', 'write')])).toBe(true);
    expect(r.take([said('p', 'read')])).toBe(false);
    r.connected();
    expect(r.readOnly('p')).toBe(true);
  });
});
