// Pure backoff schedule.
import { describe, expect, it } from 'vitest';
import { backoffDelay, DEFAULT_RECONNECT } from '../../src/index.js';

describe('backoffDelay', () => {
  it('doubles from 1 s and stops at 30 s without jitter', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffDelay(n, DEFAULT_RECONNECT, () => 0));
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it('adds at most a quarter of the wait as jitter, never past the maximum', () => {
    for (let attempt = 1; attempt <= 10; attempt++) {
      const base = Math.min(30_000, 1000 * 2 ** (attempt - 1));
      for (const r of [0, 0.1, 0.5, 0.9, 0.999999]) {
        const d = backoffDelay(attempt, DEFAULT_RECONNECT, () => r);
        expect(d).toBeGreaterThanOrEqual(base);
        expect(d).toBeLessThanOrEqual(Math.min(30_000, base * 1.25));
      }
    }
    expect(backoffDelay(1, DEFAULT_RECONNECT, () => 0.999999)).toBeGreaterThan(1249);
  });

  it('spreads clients: different random draws give different waits', () => {
    const draws = new Set(Array.from({ length: 50 }, (_, i) => backoffDelay(3, DEFAULT_RECONNECT, () => i / 50)));
    expect(draws.size).toBe(50);
  });

  it('takes attempt numbers below 1 as the first', () => {
    expect(backoffDelay(0, { initialDelay: 10, maxDelay: 100, factor: 3, jitter: 0 })).toBe(10);
    expect(backoffDelay(3, { initialDelay: 10, maxDelay: 100, factor: 3, jitter: 0 })).toBe(90);
    expect(backoffDelay(4, { initialDelay: 10, maxDelay: 100, factor: 3, jitter: 0 })).toBe(100);
  });
});
