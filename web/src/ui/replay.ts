/**
 * Replay of a session's `recording.cast` with asciinema-player: play,
 * pause, seek (its own controls and keys) and a speed choice. Works for
 * ended and running sessions (a running one plays what was recorded so far).
 * The player is loaded on first use, in its own chunk.
 */

import { api, ApiError } from '../net/api';
import { h } from './dom';

export class Replay {
  readonly el: HTMLElement;
  private readonly stage = h('div', { class: 'replay-stage' });
  private readonly title = h('h2', { class: 'replay-title' });
  private readonly speed: HTMLSelectElement;
  private player: { dispose(): void; addEventListener(n: string, f: () => void): void } | null = null;
  private id: string | null = null;
  /** Counts `show` and `hide` calls: a `show` that waited goes on only if nothing came after it (a speed change shows the same id again). */
  private generation = 0;

  constructor(back: () => void) {
    this.speed = h('select', { 'aria-label': 'Speed', onchange: () => this.id && void this.show(this.id) }, ...['0.5', '1', '2', '4', '8'].map((v) => h('option', { value: v }, `${v}×`)));
    this.speed.value = '1';
    this.el = h(
      'section',
      { class: 'view view-replay', 'aria-label': 'Replay' },
      h('div', { class: 'replay-bar' }, h('button', { type: 'button', onclick: back }, '← Back'), this.title, h('span', { class: 'spacer' }), h('label', {}, 'Speed ', this.speed)),
      this.stage,
    );
  }

  async show(id: string): Promise<void> {
    this.hide();
    const generation = this.generation;
    this.id = id;
    this.title.textContent = `Replay of ${id}`;
    this.el.dataset.state = 'loading';
    // The player shows only an icon when the recording cannot be had: ask first, and say why.
    const missing = await api.get(id).then(
      () => null,
      (e) => (e instanceof ApiError && e.status === 404 ? `There is no session ${id} (deleted, or never made), so no recording to play.` : `The recording of ${id} cannot be had: ${e instanceof Error ? e.message : String(e)}`),
    );
    if (this.generation !== generation) return;
    if (missing) {
      this.stage.replaceChildren(h('p', { class: 'replay-error', role: 'alert' }, missing));
      this.el.dataset.state = 'error';
      return;
    }
    const { create } = await import('asciinema-player');
    if (this.generation !== generation) return;
    const player = create(api.recordingUrl(id), this.stage, {
      autoPlay: true,
      speed: Number(this.speed.value),
      fit: 'both',
      idleTimeLimit: 2,
      controls: true,
      theme: matchMedia('(prefers-color-scheme: dark)').matches ? 'asciinema' : 'solarized-light',
    }) as unknown as { dispose(): void; addEventListener(n: string, f: () => void): void };
    this.player = player;
    player.addEventListener('play', () => (this.el.dataset.state = 'playing'));
    player.addEventListener('playing', () => (this.el.dataset.state = 'playing'));
    player.addEventListener('pause', () => (this.el.dataset.state = 'paused'));
    player.addEventListener('ended', () => (this.el.dataset.state = 'ended'));
  }

  hide(): void {
    this.generation++;
    this.player?.dispose();
    this.player = null;
    this.id = null;
    this.stage.replaceChildren();
    delete this.el.dataset.state;
  }
}
