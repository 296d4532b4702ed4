/**
 * The reconnect schedule: a pure function of the attempt number, so it can be
 * tested without timers.
 *
 * Attempt `n` (1-based) waits `initialDelay * factor^(n-1)`, capped at
 * `maxDelay`, plus up to `jitter` of that again (also capped), so many
 * clients cut off together do not come back in the same millisecond.
 */

/** How a client retries after it lost its connection. */
export interface ReconnectOptions {
  /** Attempts after a connection is lost (or a first connect fails) before giving up; `Infinity` never gives up. Default 5. */
  maxAttempts: number;
  /** The wait before the first attempt, in ms. Default 1000. */
  initialDelay: number;
  /** The longest wait between attempts, in ms. Default 30000. */
  maxDelay: number;
  /** How much each wait grows over the one before. Default 2. */
  factor: number;
  /** The random share added on top of a wait, from 0 to 1. Default 0.25. */
  jitter: number;
  /** How long a connection must stay up before the attempt count starts again from zero, in ms. Default 5000. */
  minUptime: number;
}

/** The defaults of `002-websocket-integration.md`: 5 attempts, 1 s first, 30 s at most, exponential, plus jitter. */
export const DEFAULT_RECONNECT: Readonly<ReconnectOptions> = Object.freeze({
  maxAttempts: 5,
  initialDelay: 1000,
  maxDelay: 30_000,
  factor: 2,
  jitter: 0.25,
  minUptime: 5000,
});

/**
 * The wait before attempt `attempt` (1 for the first retry), in ms.
 * `random` returns a number in [0, 1), as `Math.random` does.
 */
export function backoffDelay(
  attempt: number,
  options: Pick<ReconnectOptions, 'initialDelay' | 'maxDelay' | 'factor' | 'jitter'> = DEFAULT_RECONNECT,
  random: () => number = Math.random,
): number {
  const n = Math.max(1, Math.floor(attempt));
  const base = Math.min(options.maxDelay, options.initialDelay * Math.pow(options.factor, n - 1));
  const extra = base * Math.max(0, Math.min(1, options.jitter)) * random();
  return Math.min(options.maxDelay, base + extra);
}
