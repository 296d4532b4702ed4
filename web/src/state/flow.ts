/**
 * Flow control of one terminal: how many bytes were handed to xterm.js and
 * not yet parsed (its write callbacks say when). Above `high` the terminal
 * stops taking output (the page detaches that session); once below `low`
 * it takes output again from the offset it reached (the server replays the
 * missing bytes, or sends a fresh screen when they are too many).
 */

export interface FlowOptions {
  high: number;
  low: number;
}

/** At most 4 MiB queued in xterm.js; resume when under 512 KiB. */
export const defaultFlow: FlowOptions = { high: 4 << 20, low: 512 << 10 };

export type FlowSignal = 'pause' | 'resume' | null;

export class FlowGauge {
  /** Bytes written to xterm.js whose callback has not fired yet. */
  pending = 0;
  /** Whether output is paused (the session detached for catching up). */
  paused = false;

  constructor(private readonly o: FlowOptions = defaultFlow) {}

  /** `n` bytes were written; says `pause` when the queue went over `high`. */
  wrote(n: number): FlowSignal {
    this.pending += n;
    if (!this.paused && this.pending > this.o.high) {
      this.paused = true;
      return 'pause';
    }
    return null;
  }

  /** `n` bytes were parsed; says `resume` when a paused queue fell under `low`. */
  parsed(n: number): FlowSignal {
    this.pending = Math.max(0, this.pending - n);
    if (this.paused && this.pending < this.o.low) {
      this.paused = false;
      return 'resume';
    }
    return null;
  }
}
