import { describe, expect, it } from 'vitest';
import { formatRoute, parseRoute, type Route } from '../../src/state/route';
import { emptyLayout, reduceLayout, restoreLayout, visible, type Layout, type LayoutAction } from '../../src/state/layout';
import { FlowGauge } from '../../src/state/flow';
import { applySticky, ctrlOf, pressKey } from '../../src/state/keys';
import {
  applyUpdate,
  commandLine,
  durationOf,
  formatDuration,
  formatExit,
  fromList,
  outcome,
  parseArgv,
  sortedRows,
  type SessionInfo,
} from '../../src/state/sessions';

describe('route', () => {
  it('round-trips every view', () => {
    const routes: Route[] = [{ view: 'list' }, { view: 'monitor' }, { view: 'terminal', id: 'a-1.b_c' }, { view: 'replay', id: 'x' }];
    for (const r of routes) expect(parseRoute(formatRoute(r))).toEqual(r);
  });
  it('falls back to the list on anything unknown or invalid', () => {
    expect(parseRoute('')).toEqual({ view: 'list' });
    expect(parseRoute('#/s/')).toEqual({ view: 'list' });
    expect(parseRoute('#/s/a b')).toEqual({ view: 'list' });
    expect(parseRoute('#/s/a/b')).toEqual({ view: 'list' });
    expect(parseRoute('#/s/%E0%A4%A')).toEqual({ view: 'list' });
    expect(parseRoute('#/nope')).toEqual({ view: 'list' });
  });
});

describe('layout', () => {
  const run = (actions: LayoutAction[], from: Layout = emptyLayout) => actions.reduce(reduceLayout, from);
  it('opens once, activates, and closes to the neighbour', () => {
    const s = run([{ type: 'open', id: 'a' }, { type: 'open', id: 'b' }, { type: 'open', id: 'c' }, { type: 'open', id: 'a' }]);
    expect(s.open).toEqual(['a', 'b', 'c']);
    expect(s.active).toBe('a');
    const closed = run([{ type: 'activate', id: 'b' }, { type: 'close', id: 'b' }], s);
    expect(closed.open).toEqual(['a', 'c']);
    expect(closed.active).toBe('c');
    expect(run([{ type: 'close', id: 'a' }, { type: 'close', id: 'c' }], closed)).toEqual({ ...closed, open: [], active: null });
  });
  it('shows the active tab, or its page of four in the grid', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    let s = run(ids.map((id) => ({ type: 'open', id }) as LayoutAction));
    expect(visible(s)).toEqual(['f']);
    s = reduceLayout(s, { type: 'mode', mode: 'grid' });
    expect(visible(s)).toEqual(['e', 'f']);
    s = reduceLayout(s, { type: 'activate', id: 'b' });
    expect(visible(s)).toEqual(['a', 'b', 'c', 'd']);
  });
  it('cycles, moves and prunes', () => {
    let s = run([{ type: 'open', id: 'a' }, { type: 'open', id: 'b' }, { type: 'next' }]);
    expect(s.active).toBe('a');
    s = reduceLayout(s, { type: 'prev' });
    expect(s.active).toBe('b');
    s = reduceLayout(s, { type: 'move', id: 'b', to: 0 });
    expect(s.open).toEqual(['b', 'a']);
    s = reduceLayout(s, { type: 'prune', exists: (id) => id === 'a' });
    expect(s).toEqual({ mode: 'tabs', open: ['a'], active: 'a' });
  });
  it('restores only valid stored layouts', () => {
    expect(restoreLayout(null)).toEqual(emptyLayout);
    expect(restoreLayout({ mode: 'grid', open: ['a', 'a', 3, 'b'], active: 'zz' })).toEqual({ mode: 'grid', open: ['a', 'b'], active: 'a' });
  });
});

describe('flow', () => {
  it('pauses over the high mark and resumes under the low one, once each', () => {
    const g = new FlowGauge({ high: 100, low: 10 });
    expect(g.wrote(60)).toBe(null);
    expect(g.wrote(60)).toBe('pause');
    expect(g.wrote(60)).toBe(null);
    expect(g.parsed(100)).toBe(null);
    expect(g.parsed(75)).toBe('resume');
    expect(g.parsed(75)).toBe(null);
    expect(g.pending).toBe(0);
  });
});

describe('keys', () => {
  it('maps Ctrl and Alt', () => {
    expect(ctrlOf('c')).toBe('\x03');
    expect(ctrlOf('[')).toBe('\x1b');
    expect(ctrlOf('1')).toBe('1');
    expect(applySticky('c', { ctrl: true, alt: false })).toBe('\x03');
    expect(applySticky('x', { ctrl: false, alt: true })).toBe('\x1bx');
  });
  it('makes Ctrl and Alt sticky for one key', () => {
    let r = pressKey('Ctrl', { ctrl: false, alt: false });
    expect(r).toEqual({ send: null, sticky: { ctrl: true, alt: false } });
    r = pressKey('/', r.sticky);
    expect(r.send).toBe('/');
    expect(r.sticky).toEqual({ ctrl: false, alt: false });
    expect(pressKey('Up', { ctrl: false, alt: true }).send).toBe('\x1b\x1b[A');
    expect(pressKey('Esc', { ctrl: false, alt: false }).send).toBe('\x1b');
  });
});

describe('sessions', () => {
  const info = (id: string, over: Partial<SessionInfo> = {}): SessionInfo => ({
    id,
    kind: 'pty',
    argv: ['bash'],
    cwd: '/',
    project: 'default',
    status: 'running',
    epoch: '0',
    outputOffset: 0,
    cols: 80,
    rows: 24,
    createdAt: 1000,
    startedAt: 1000,
    ...over,
  });
  it('merges updates and asks for a refresh when it lacks details', () => {
    const m = fromList([info('a'), info('b', { createdAt: 2000 })], { a: 2 });
    expect(m.get('a')?.viewers).toBe(2);
    let r = applyUpdate(m, { type: 'session_update', sessionId: 'c', change: 'created', status: 'running' }, 0);
    expect(r.refresh).toBe(true);
    r = applyUpdate(m, { type: 'session_update', sessionId: 'a', change: 'status', status: 'exited', timestamp: 5000 }, 0);
    expect(r.refresh).toBe(true);
    expect(r.map.get('a')?.status).toBe('exited');
    expect(durationOf(r.map.get('a')!, 9999)).toBe(4000);
    r = applyUpdate(r.map, { type: 'session_update', sessionId: 'b', change: 'deleted' }, 0);
    expect([...r.map.keys()]).toEqual(['a']);
  });
  it('asks for a refresh when a known id is created again (a new incarnation)', () => {
    const m = fromList([info('a')], {});
    const r = applyUpdate(m, { type: 'session_update', sessionId: 'a', change: 'created', status: 'running' }, 0);
    expect(r.refresh).toBe(true);
  });
  it('takes viewer counts from viewers events, without a refresh', () => {
    const m = fromList([info('a')], { a: 1 });
    const r = applyUpdate(m, { type: 'session_update', sessionId: 'a', change: 'viewers', viewers: 3 }, 0);
    expect(r.refresh).toBe(false);
    expect(r.map.get('a')?.viewers).toBe(3);
    expect(r.map.get('a')?.status).toBe('running');
    expect(m.get('a')?.viewers).toBe(1);
  });
  it('sorts running first, then newest', () => {
    const m = fromList([info('old'), info('new', { createdAt: 5000 }), info('done', { status: 'exited', createdAt: 9000 })], {});
    expect(sortedRows(m).map((s) => s.id)).toEqual(['new', 'old', 'done']);
  });
  it('formats durations, exits and commands', () => {
    expect(formatDuration(null)).toBe('');
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(184_000)).toBe('3m 04s');
    expect(formatDuration(7_500_000)).toBe('2h 05m');
    expect(formatExit(info('a', { exitCode: 3 }))).toBe('exit 3');
    expect(formatExit(info('a', { signal: 9 }))).toBe('SIGKILL');
    expect(commandLine(['sh', '-c', "echo 'hi' there"])).toBe(`sh -c 'echo '\\''hi'\\'' there'`);
  });
  it('parses argv as JSON or quoted words', () => {
    expect(parseArgv('')).toBe(null);
    expect(parseArgv('["ls", "-l a"]')).toEqual(['ls', '-l a']);
    expect(parseArgv(`printf '%s\\n' "a b" ''`)).toEqual(['printf', '%s\\n', 'a b', '']);
    expect(() => parseArgv('echo "x')).toThrow();
    expect(() => parseArgv('[1]')).toThrow();
  });
});

describe('outcome', () => {
  it('tells a success from a failure, and says nothing while running', () => {
    expect(outcome({ status: 'running' })).toBe('');
    expect(outcome({ status: 'terminating' })).toBe('');
    expect(outcome({ status: 'exited', exitCode: 0 })).toBe('ok');
    expect(outcome({ status: 'exited', exitCode: 2 })).toBe('bad');
    expect(outcome({ status: 'terminated', signal: 15 })).toBe('bad');
    expect(outcome({ status: 'failed' })).toBe('bad');
    expect(outcome({ status: 'lost' })).toBe('bad');
  });
});
