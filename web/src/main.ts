/**
 * The page's entry: checks that the server lets this browser in (the login
 * cookie, or loopback on a server without tokens), then starts the app; a
 * browser without a credential sees how to get a login link instead.
 */

import '@xterm/xterm/css/xterm.css';
import 'asciinema-player/dist/bundle/asciinema-player.css';
import './style.css';
import { App } from './app';
import { api, ApiError } from './net/api';
import { loginView } from './ui/login';

async function main(): Promise<void> {
  const root = document.getElementById('app')!;
  try {
    await api.list();
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      root.replaceWith(loginView(e.message));
      return;
    }
    throw e;
  }
  const app = new App(root);
  (window as unknown as { termstream: App }).termstream = app;
  await app.start();
}

void main();
