/**
 * Which terminals are open and how they are arranged: a pure reducer, so
 * every change of layout goes through one function that tests can drive.
 *
 * Invariants: `open` has no duplicates; `active` is in `open` or null;
 * in the grid, the visible terminals are `open.slice(page*4, page*4+4)`
 * and `active` is one of them.
 */

export type Mode = 'tabs' | 'grid';

export interface Layout {
  readonly mode: Mode;
  /** Open terminals by session id, in tab order. */
  readonly open: readonly string[];
  readonly active: string | null;
}

export type LayoutAction =
  | { type: 'open'; id: string }
  | { type: 'close'; id: string }
  | { type: 'activate'; id: string }
  | { type: 'mode'; mode: Mode }
  | { type: 'move'; id: string; to: number }
  | { type: 'next' }
  | { type: 'prev' }
  /** Sessions that no longer exist are closed. */
  | { type: 'prune'; exists: (id: string) => boolean };

/** Cells of the grid. */
export const GRID_CELLS = 4;

export const emptyLayout: Layout = { mode: 'tabs', open: [], active: null };

export function reduceLayout(s: Layout, a: LayoutAction): Layout {
  switch (a.type) {
    case 'open':
      if (s.open.includes(a.id)) return { ...s, active: a.id };
      return { ...s, open: [...s.open, a.id], active: a.id };
    case 'close': {
      const i = s.open.indexOf(a.id);
      if (i < 0) return s;
      const open = s.open.filter((x) => x !== a.id);
      const active = s.active !== a.id ? s.active : (open[Math.min(i, open.length - 1)] ?? null);
      return { ...s, open, active };
    }
    case 'activate':
      return s.open.includes(a.id) ? { ...s, active: a.id } : s;
    case 'mode':
      return { ...s, mode: a.mode };
    case 'move': {
      const i = s.open.indexOf(a.id);
      if (i < 0) return s;
      const open = s.open.filter((x) => x !== a.id);
      open.splice(Math.max(0, Math.min(a.to, open.length)), 0, a.id);
      return { ...s, open };
    }
    case 'next':
    case 'prev': {
      if (s.open.length === 0) return s;
      const i = s.active === null ? 0 : s.open.indexOf(s.active);
      const step = a.type === 'next' ? 1 : -1;
      return { ...s, active: s.open[(i + step + s.open.length) % s.open.length] ?? null };
    }
    case 'prune': {
      const open = s.open.filter(a.exists);
      if (open.length === s.open.length) return s;
      const active = s.active !== null && open.includes(s.active) ? s.active : (open[0] ?? null);
      return { ...s, open, active };
    }
  }
}

/** The terminals on screen: the active one in tabs; its page of four in the grid. */
export function visible(s: Layout): string[] {
  if (s.active === null) return [];
  if (s.mode === 'tabs') return [s.active];
  const page = Math.floor(s.open.indexOf(s.active) / GRID_CELLS);
  return s.open.slice(page * GRID_CELLS, page * GRID_CELLS + GRID_CELLS);
}

/** A layout read back from storage, or the empty one when it is not valid. */
export function restoreLayout(raw: unknown): Layout {
  if (typeof raw !== 'object' || raw === null) return emptyLayout;
  const r = raw as Record<string, unknown>;
  const mode: Mode = r.mode === 'grid' ? 'grid' : 'tabs';
  const open = Array.isArray(r.open) ? [...new Set(r.open.filter((x): x is string => typeof x === 'string'))] : [];
  const active = typeof r.active === 'string' && open.includes(r.active) ? r.active : (open[0] ?? null);
  return { mode, open: open.slice(0, 64), active };
}
