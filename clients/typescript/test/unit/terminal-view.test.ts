// The TerminalView history's bound (pure).
import { expect, it } from 'vitest';
import { appendEntry, formatHistory, type ViewEntry } from '../../src/react/TerminalView.js';

const empty = { entries: [] as ViewEntry[], chars: 0 };

it('merges output of one kind and session, keeps info apart, and bounds the characters', () => {
  let h = empty;
  h = appendEntry(h, { kind: 'output', text: 'ab', sessionId: 's' }, 10);
  h = appendEntry(h, { kind: 'output', text: 'cd', sessionId: 's' }, 10);
  h = appendEntry(h, { kind: 'error', text: 'E', sessionId: 's' }, 10);
  h = appendEntry(h, { kind: 'info', text: 'i1' }, 10);
  h = appendEntry(h, { kind: 'info', text: 'i2' }, 10);
  expect(h.entries.map((e) => [e.kind, e.text])).toEqual([
    ['output', 'abcd'],
    ['error', 'E'],
    ['info', 'i1'],
    ['info', 'i2'],
  ]);
  expect(h.chars).toBe(9);
  h = appendEntry(h, { kind: 'output', text: 'xyz', sessionId: 't' }, 10);
  expect(h.chars).toBe(10);
  expect(h.entries.map((e) => e.text)).toEqual(['cd', 'E', 'i1', 'i2', 'xyz']);
  h = appendEntry(h, { kind: 'output', text: '0123456789AB', sessionId: 't' }, 10);
  expect(h.entries.map((e) => e.text)).toEqual(['23456789AB']);
  expect(h.chars).toBe(10);
  expect(formatHistory([{ kind: 'output', text: 'a\n', time: 0 }, { kind: 'info', text: 'note', time: 0 }])).toBe('a\nnote\n');
});
