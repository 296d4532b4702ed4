// URL handling.
import { describe, expect, it } from 'vitest';
import { resolveUrls, UrlError } from '../../src/index.js';

describe('resolveUrls', () => {
  it.each([
    ['http://h:8000', 'ws://h:8000/ws', 'http://h:8000'],
    ['https://h/', 'wss://h/ws', 'https://h'],
    ['https://h/prefix', 'wss://h/prefix/ws', 'https://h/prefix'],
    ['ws://h:1/ws', 'ws://h:1/ws', 'http://h:1'],
    ['wss://h/x/ws/?dialect=flat', 'wss://h/x/ws?dialect=flat', 'https://h/x'],
  ])('%s', (url, ws, http) => {
    expect(resolveUrls(url)).toEqual({ ws, http });
  });

  it('uses the page origin without a url, and a relative url against it', () => {
    expect(resolveUrls(undefined, 'https://app.example:8443')).toEqual({ ws: 'wss://app.example:8443/ws', http: 'https://app.example:8443' });
    expect(resolveUrls('/term', 'http://a')).toEqual({ ws: 'ws://a/term/ws', http: 'http://a/term' });
  });

  it('refuses no url outside a page, and other schemes', () => {
    expect(() => resolveUrls()).toThrow(UrlError);
    expect(() => resolveUrls('ftp://h')).toThrow(/unsupported scheme/);
  });
});
