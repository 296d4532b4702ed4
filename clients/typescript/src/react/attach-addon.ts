/**
 * The glue between a session and an xterm.js terminal, as an addon (the shape
 * of xterm's AttachAddon, with resume by offset): the server's screen on
 * attach, output as raw bytes, input and the terminal's size to the server
 * unless read-only. The terminal's answers to queries go as responses (the
 * server passes on one viewer's), except for a restored screen. Input the
 * client refuses to send (`QueueFullError` while disconnected,
 * `MessageTooLargeError`) is reported by a red notice line in the terminal,
 * not thrown out of xterm's `onData`; so is input the server drops
 * (`rate_limited`, `busy`: a piece of a split paste, say). Every listener is kept in a list and
 * disposed with it.
 */

import type { IDisposable, ITerminalAddon, Terminal } from '@xterm/xterm';
import { type InputOptions, type SessionHandle, type WebSocketClient, inputRefusal, serverRefusal } from '../index.js';
import { watchQueries } from './answers.js';

/** Options of [`SessionAddon`]. */
export interface SessionAddonOptions {
  /** Watch only: no input, and the terminal's size is not sent. */
  readOnly?: boolean;
}

/** Attaches a session to the terminal it is loaded into. */
export class SessionAddon implements ITerminalAddon {
  private handle: SessionHandle | null = null;
  private disposables: IDisposable[] = [];

  constructor(
    private readonly client: WebSocketClient,
    readonly sessionId: string,
    private readonly options: SessionAddonOptions = {},
  ) {}

  activate(term: Terminal): void {
    const readOnly = this.options.readOnly ?? false;
    // Per write not parsed yet, in order: whether it is a restored screen (its queries were answered long ago).
    const old: boolean[] = [];
    const write = (data: string | Uint8Array, restored: boolean) => {
      old.push(restored);
      term.write(data, () => old.shift());
    };
    const handle = this.client.attach(this.sessionId, {
      output: 'binary',
      onAttached: (a) => {
        if (!readOnly && a.status === 'running' && (a.cols !== term.cols || a.rows !== term.rows) && a.cols > 0) {
          handle.resize(term.cols, term.rows);
        }
      },
      onRestore: (r) => {
        term.reset();
        write(r.data, true);
      },
      onOutput: (data) => write(data, false),
      onExit: (e) => {
        const how = e.exitCode !== null ? `exit code ${e.exitCode}` : e.signal !== null ? `signal ${e.signal}` : e.status;
        term.write(`\r\n\x1b[2m[${e.status}: ${how}]\x1b[0m\r\n`);
      },
      onError: (e) => {
        const why = serverRefusal(e);
        if (why !== null) write(`\r\n\x1b[31m[${why}]\x1b[0m\r\n`, false);
      },
    });
    this.handle = handle;
    if (!readOnly) {
      const queries = watchQueries(term);
      this.disposables.push(
        queries,
        term.onData((d) => {
          const send = (opts?: InputOptions) => {
            try {
              handle.input(d, opts);
            } catch (e) {
              const why = inputRefusal(e);
              if (why === null) throw e;
              write(`\r\n\x1b[31m[${why}]\x1b[0m\r\n`, false);
            }
          };
          if (!queries.answering) send();
          else if (!old[0]) send({ response: true });
        }),
        term.onResize(({ cols, rows }) => handle.resize(cols, rows)),
      );
    }
  }

  dispose(): void {
    for (const d of this.disposables.splice(0)) d.dispose();
    this.handle?.detach();
    this.handle = null;
  }
}
