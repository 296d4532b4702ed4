/**
 * `@termstream/client/react`: a thin React binding over the client. The
 * client owns the state; hooks subscribe with `useSyncExternalStore`.
 * React is a peer dependency; `<Terminal>` also needs `@xterm/xterm`,
 * `@xterm/addon-fit` and (optionally) `@xterm/addon-webgl`.
 */

export { TermstreamProvider, useClient, useConnectionState, useWebSocket } from './context.js';
export type { TermstreamProviderProps, UseWebSocket } from './context.js';
export { useTerminalStream } from './useTerminalStream.js';
export type { TerminalStream } from './useTerminalStream.js';
export { useFocus } from './useFocus.js';
export type { UseFocus } from './useFocus.js';
export { Terminal } from './Terminal.js';
export type { TerminalProps } from './Terminal.js';
export { SessionAddon } from './attach-addon.js';
export type { SessionAddonOptions } from './attach-addon.js';
export { TerminalView, appendEntry, formatHistory } from './TerminalView.js';
export type { TerminalViewProps, ViewEntry } from './TerminalView.js';
