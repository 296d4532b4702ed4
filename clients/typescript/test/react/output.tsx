// What the React tests render of useTerminalStream: whether it is live,
// its error's code (or "no error") and its output.
import { useTerminalStream } from '../../src/react/index.js';

/** Session `sessionId` through the hook, as text: `live` or `offline`, `error CODE` or `no error`, and the output (test id `output`). */
export function Output({ sessionId }: { sessionId: string }) {
  const { output, isConnected, error } = useTerminalStream(sessionId);
  return (
    <div>
      <span>{isConnected ? 'live' : 'offline'}</span>
      <span>{error ? `error ${error.code}` : 'no error'}</span>
      <pre data-testid="output">{output}</pre>
    </div>
  );
}
