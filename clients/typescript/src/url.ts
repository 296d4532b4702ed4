/**
 * Where the client connects: the WebSocket URL of `/ws` and the HTTP base
 * for `POST /api/ws-ticket`, from `options.url` or the page's own origin.
 */

/** The two addresses of one server. */
export interface ServerUrls {
  /** `ws(s)://host[:port]/prefix/ws`, with any query the caller gave. */
  ws: string;
  /** `http(s)://host[:port]/prefix`, no trailing slash. */
  http: string;
}

/** Thrown when no URL is given and there is no page origin to use. */
export class UrlError extends Error {
  override name = 'UrlError';
}

/**
 * Resolves `url` (an `http(s)://` server URL, or a `ws(s)://…/ws` URL) or,
 * without one, `origin` (the page's `location.origin`) + `/ws`.
 */
export function resolveUrls(url?: string, origin?: string): ServerUrls {
  const raw = url ?? origin;
  if (!raw) throw new UrlError('no url given, and no page origin to connect to');
  let u: URL;
  try {
    u = new URL(raw, origin);
  } catch {
    throw new UrlError(`not a URL: ${raw}`);
  }
  const secure = u.protocol === 'https:' || u.protocol === 'wss:';
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol)) {
    throw new UrlError(`unsupported scheme ${u.protocol} in ${raw}`);
  }
  let path = u.pathname.replace(/\/+$/, '');
  const isWsPath = path.endsWith('/ws');
  const prefix = isWsPath ? path.slice(0, -3) : path;
  const wsPath = isWsPath ? path : `${path}/ws`;
  const host = u.host;
  return {
    ws: `${secure ? 'wss' : 'ws'}://${host}${wsPath}${u.search}`,
    http: `${secure ? 'https' : 'http'}://${host}${prefix}`,
  };
}

/** `base` with `params` added to its query (values already set are replaced). */
export function withQuery(base: string, params: Record<string, string | undefined>): string {
  const u = new URL(base);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined) u.searchParams.set(k, v);
  }
  return u.toString();
}
