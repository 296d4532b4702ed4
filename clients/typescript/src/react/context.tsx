/**
 * The React binding's root: `<TermstreamProvider>` owns one client for its
 * tree (connected on mount, disconnected on unmount), and `useWebSocket()`
 * reads its state through `useSyncExternalStore`. Without a provider the
 * hooks share a default client for the page's own origin, connected while any
 * component uses it.
 */

import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import { createWebSocketClient, type ClientOptions, type ConnectionState, type MessageHandler, type TokenSource, type WebSocketClient } from '../index.js';

const ClientContext = createContext<WebSocketClient | null>(null);

/** Props of `<TermstreamProvider>`: a server and credential, or a client made elsewhere. */
export interface TermstreamProviderProps {
  /** The server (`http(s)://…` or `ws(s)://…/ws`); default the page's origin. */
  url?: string;
  token?: TokenSource;
  options?: Omit<ClientOptions, 'url'>;
  /** Use this client instead of making one (the provider still connects and disconnects it). */
  client?: WebSocketClient;
  children?: ReactNode;
}

/** Gives its tree one client, connected while the provider is mounted. */
export function TermstreamProvider({ url, token, options, client: given, children }: TermstreamProviderProps) {
  // The client is made once per provider: a new `options` object each render must not reconnect.
  const [own] = useState(() => (given ? null : createWebSocketClient(token, { ...options, url })));
  const client = given ?? own!;
  useEffect(() => {
    client.connect();
    return () => client.disconnect();
  }, [client]);
  return <ClientContext.Provider value={client}>{children}</ClientContext.Provider>;
}

let defaultClient: WebSocketClient | null = null;
let defaultUsers = 0;

/**
 * `given` if there is one, else the client of the nearest provider, else the
 * default one (connected while used; only then is it made).
 */
export function useClient(given?: WebSocketClient): WebSocketClient {
  const fromContext = useContext(ClientContext);
  const chosen = given ?? fromContext;
  const client = chosen ?? (defaultClient ??= createWebSocketClient());
  useEffect(() => {
    if (chosen) return;
    if (defaultUsers++ === 0) client.connect();
    return () => {
      if (--defaultUsers === 0) client.disconnect();
    };
  }, [client, chosen]);
  return client;
}

/** The connection state of `client`, re-rendering on change. */
export function useConnectionState(client: WebSocketClient): ConnectionState {
  const subscribe = useCallback((onChange: () => void) => client.onStateChange(onChange), [client]);
  return useSyncExternalStore(subscribe, () => client.state, () => client.state);
}

/** What `useWebSocket()` returns, as in `002-websocket-integration.md`. */
export interface UseWebSocket {
  state: ConnectionState;
  isConnected: boolean;
  /** The client's `subscribe`: `terminal_output` handlers get the typed view. */
  subscribe: WebSocketClient['subscribe'];
  send: (type: string, payload?: Record<string, unknown>) => void;
  client: WebSocketClient;
}

/** The connection: its state, and stable `subscribe` and `send` functions. */
export function useWebSocket(): UseWebSocket {
  const client = useClient();
  const state = useConnectionState(client);
  const subscribe = useCallback<WebSocketClient['subscribe']>(
    (type: string, handler: MessageHandler<any>) => client.subscribe(type, handler),
    [client],
  );
  const send = useCallback((type: string, payload?: Record<string, unknown>) => client.send(type, payload), [client]);
  return useMemo(() => ({ state, isConnected: state === 'connected', subscribe, send, client }), [state, subscribe, send, client]);
}
