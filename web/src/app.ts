/**
 * The page: one `@termstream/client` connection, the session list kept live
 * by the `sessions` event channel, the open terminals in tabs or a 2×2 grid,
 * the monitor, replay, events and the connection indicator. State that is
 * pure (layout, routes, the session map) lives in `state/`; the parts with
 * a job of their own (the keys and full screen, the login banner, the share
 * box, ...) in `ui/`; this file wires them to the DOM and the network.
 */

import { createWebSocketClient, type WebSocketClient } from '@termstream/client';
import { api, ApiError, type CreateRequest } from './net/api';
import { formatRoute, parseRoute, type Route } from './state/route';
import { emptyLayout, reduceLayout, restoreLayout, visible, type Layout, type LayoutAction } from './state/layout';
import { applyUpdate, fromList, isLive, outcome, type SessionMap, type SessionUpdate } from './state/sessions';
import { h, fill } from './ui/dom';
import { TermView } from './ui/terminal';
import type { TermAction } from './ui/termheader';
import { SessionList } from './ui/list';
import { createDialog } from './ui/create';
import { Monitor } from './ui/monitor';
import { Replay } from './ui/replay';
import { EventViews } from './ui/events';
import { KeyRow } from './ui/keyrow';
import { statusIndicator } from './ui/status';
import { onThemeChange } from './ui/theme';
import { webglCount } from './ui/webgl';
import { installShortcuts, toggleFullscreen } from './ui/shortcuts';
import { LoginBanner } from './ui/auth';
import { ShareBox } from './ui/share';
import { Rights } from './net/rights';
import { FocusSets } from './net/focus';
import { trackedWebSocket } from './net/socket';

const LAYOUT_KEY = 'termstream.layout';
/** How many restored tabs are checked against the server at once. */
const GONE_CHECKS = 4;

export class App {
  readonly client: WebSocketClient;
  // A browser hides why a WebSocket upgrade failed: after each closed
  // socket (each failed attempt to reconnect) a REST call finds out whether
  // the login ended (a 401 shows the banner).
  private readonly cutter = trackedWebSocket(() => this.scheduleRefresh());
  sessions: SessionMap = new Map();
  layout: Layout;
  route: Route = { view: 'list' };
  readonly views = new Map<string, TermView>();
  private readonly list: SessionList;
  private readonly monitor: Monitor;
  private readonly replay: Replay;
  private readonly events = new EventViews();
  private readonly keyrow: KeyRow;
  private readonly dialog = createDialog((req) => this.create(req));
  private readonly tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Open terminals' });
  private readonly terms = h('div', { class: 'terms' });
  private readonly termsView: HTMLElement;
  private readonly nav: Record<'list' | 'terminal' | 'monitor', HTMLAnchorElement>;
  private readonly modeButton: HTMLButtonElement;
  private readonly eventsButton: HTMLButtonElement;
  private readonly shareBox = new ShareBox();
  /** Says that the server no longer takes this browser's login. */
  private readonly authBanner: LoginBanner;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** Whether the next refresh asks for the rights too (`GET /api/projects`). */
  private rightsDue = false;
  /** `connected` messages so far: after the first, each is a reconnect. */
  private connects = 0;
  /** Which projects the page may only watch: their write controls hide. */
  private readonly rights = new Rights();
  /** The focus sets of the projects shown (issue 12). */
  private readonly focus: FocusSets;

  constructor(private readonly root: HTMLElement) {
    this.client = createWebSocketClient(undefined, { WebSocket: this.cutter.ctor });
    this.layout = this.loadLayout();
    this.authBanner = new LoginBanner(this.client);
    this.focus = new FocusSets({
      client: this.client,
      projectOf: (id) => this.sessions.get(id)?.project,
      readOnly: (p) => this.rights.readOnly(p),
      changed: () => this.markFocus(),
    });
    this.list = new SessionList({
      open: (id) => this.go({ view: 'terminal', id }),
      replay: (id) => this.go({ view: 'replay', id }),
      terminate: (id) => void this.act(() => api.terminate(id)),
      remove: (id) => void this.act(() => api.remove(id)),
      create: () => this.dialog.open(),
      readOnly: (project) => this.rights.readOnly(project),
    });
    this.monitor = new Monitor((id) => this.go({ view: 'terminal', id }));
    this.replay = new Replay(() => history.back());
    this.keyrow = new KeyRow((data) => this.activeView()?.info && this.sendToActive(data));
    this.termsView = h('section', { class: 'view view-terms', 'aria-label': 'Terminals' }, this.tabs, this.terms, this.keyrow.el);
    const link = (label: string, r: Route) => h('a', { href: formatRoute(r), class: 'nav-link' }, label);
    this.nav = { list: link('Sessions', { view: 'list' }), terminal: link('Terminals', { view: 'list' }), monitor: link('Monitor', { view: 'monitor' }) };
    this.nav.terminal.addEventListener('click', (e) => {
      e.preventDefault();
      const id = this.layout.active;
      if (id) this.go({ view: 'terminal', id });
    });
    this.modeButton = h('button', { type: 'button', class: 'mode-btn', title: 'Tabs or a 2×2 grid', onclick: () => this.dispatch({ type: 'mode', mode: this.layout.mode === 'tabs' ? 'grid' : 'tabs' }) });
    this.eventsButton = h('button', { type: 'button', class: 'events-btn', title: 'Event log', onclick: () => this.events.toggle() }, 'Events');
    this.events.onUnread = (n) => (this.eventsButton.dataset.unread = n > 0 ? String(n) : '');
    const header = h(
      'header',
      { class: 'topbar' },
      h('a', { class: 'brand', href: '#/' }, 'termstream'),
      h('nav', {}, this.nav.list, this.nav.terminal, this.nav.monitor),
      this.modeButton,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'primary new-btn', onclick: () => this.dialog.open() }, '+ New'),
      this.eventsButton,
      statusIndicator(this.client),
    );
    fill(root, header, this.authBanner.el, h('main', { class: 'main' }, this.list.el, this.termsView, this.monitor.el, this.replay.el, this.events.panel), this.events.toasts, this.shareBox.el, this.dialog.el);
  }

  async start(): Promise<void> {
    this.client.subscribe('*', (m) => this.onMessage(m as unknown as Record<string, unknown>));
    // Given up reconnecting: one more look at whether the login ended.
    this.client.onStateChange((s) => s === 'error' && this.scheduleRefresh());
    this.client.connect();
    await this.refresh(true);
    window.addEventListener('hashchange', () => this.applyRoute());
    // Back to this tab: a login made meanwhile in another tab (other rights) shows at once.
    document.addEventListener('visibilitychange', () => document.hidden || this.scheduleRefresh(true));
    onThemeChange(() => this.views.forEach((v) => v.setTheme()));
    installShortcuts(
      {
        openCount: () => this.layout.open.length,
        mode: () => this.layout.mode,
        dispatch: (a) => this.dispatch(a),
        newSession: () => this.dialog.open(),
        // A read-only view's session is not this page's to lose.
        anyLive: () => [...this.views.values()].some((v) => !v.readOnly && isLive(v.info.status)),
        refit: () => this.views.forEach((v) => v.fitNow()),
        focusActive: () => this.activeView()?.focusInput(),
      },
      this.tabs,
    );
    this.installViewport();
    this.applyRoute();
    void this.dropGoneTabs();
    this.started = true;
  }

  /**
   * Tabs restored from the last visit whose session is not in the list: a
   * session deleted meanwhile loses its tab (it would show nothing); one the
   * server still has (the list may lag) is added to the map and opens.
   */
  private async dropGoneTabs(): Promise<void> {
    const routed = this.route.view === 'terminal' ? this.route.id : null;
    const ids = this.layout.open.filter((id) => !this.sessions.has(id) && id !== routed);
    // A few at a time: a restored layout may name 64 sessions.
    const worker = async (): Promise<void> => {
      for (let id = ids.shift(); id !== undefined; id = ids.shift()) await this.checkGone(id);
    };
    await Promise.all(Array.from({ length: GONE_CHECKS }, worker));
  }

  private async checkGone(id: string): Promise<void> {
    try {
      const info = await api.get(id);
      if (!this.sessions.has(id)) this.setSessions(new Map(this.sessions).set(id, { ...info, viewers: 0 }));
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 403)) this.dispatch({ type: 'close', id });
    }
  }

  /** Whether `start` finished: the list is loaded and the URL's view applied (tests wait for it). */
  started = false;

  /** Test hooks: cut the socket, look at the terminals. */
  cutSocket(): void {
    this.cutter.cut();
  }

  webglContexts(): number {
    return webglCount();
  }

  go(r: Route): void {
    const hash = formatRoute(r);
    if (location.hash !== hash) location.hash = hash;
    else this.applyRoute();
  }

  private applyRoute(): void {
    const r = parseRoute(location.hash);
    if (this.route.view === 'replay' && r.view !== 'replay') this.replay.hide();
    this.route = r;
    if (r.view === 'terminal') {
      if (!this.sessions.has(r.id) && !this.views.has(r.id)) {
        void this.openMissing(r.id);
        return;
      }
      this.dispatch({ type: 'open', id: r.id });
    }
    if (r.view === 'replay') void this.replay.show(r.id);
    this.renderView();
  }

  /** A bookmarked session the list does not have (yet): ask for it. */
  private async openMissing(id: string): Promise<void> {
    try {
      const info = await api.get(id);
      this.sessions = new Map(this.sessions).set(id, { ...info, viewers: 0 });
      this.dispatch({ type: 'open', id });
      this.renderView();
    } catch {
      this.toast('No such session', `Session ${id} does not exist, or you may not see it.`);
      this.go({ view: 'list' });
    }
  }

  private renderView(): void {
    const v = this.route.view;
    this.list.el.hidden = v !== 'list';
    this.termsView.hidden = v !== 'terminal';
    this.monitor.el.hidden = v !== 'monitor';
    this.replay.el.hidden = v !== 'replay';
    this.monitor.setShown(v === 'monitor');
    for (const [k, a] of Object.entries(this.nav)) a.setAttribute('aria-current', String(k === v));
    this.nav.terminal.classList.toggle('disabled', this.layout.open.length === 0);
    this.modeButton.hidden = v !== 'terminal';
    this.renderTerms();
  }

  dispatch(a: LayoutAction): void {
    const before = this.layout;
    this.layout = reduceLayout(this.layout, a);
    if (this.layout === before) return;
    localStorage.setItem(LAYOUT_KEY, JSON.stringify(this.layout));
    if (this.route.view === 'terminal' && this.layout.active && this.layout.active !== this.route.id) {
      history.replaceState(null, '', formatRoute({ view: 'terminal', id: this.layout.active }));
      this.route = { view: 'terminal', id: this.layout.active };
    }
    if (this.route.view === 'terminal' && !this.layout.active) {
      this.go({ view: 'list' });
      return;
    }
    this.renderView();
  }

  private renderTerms(): void {
    const l = this.layout;
    for (const [id, v] of this.views) {
      if (!l.open.includes(id)) {
        v.dispose();
        this.views.delete(id);
      }
    }
    for (const id of l.open) {
      if (this.views.has(id)) continue;
      const info = this.sessions.get(id);
      if (!info) continue;
      const view = new TermView({ ...info }, this.client, {
        transformInput: (d) => this.keyrow.transform(d),
        requestFocus: (sid) => this.focus.request(this.layout.mode === 'grid' ? visible(this.layout) : [sid]),
        changed: () => this.renderTabs(),
        refused: (v) => this.refused(v.info.project),
        action: (v, what) => this.termAction(v, what),
      });
      view.setReadOnly(this.rights.readOnly(info.project));
      this.views.set(id, view);
      this.terms.append(view.el);
      this.focus.track(info.project);
    }
    const shownIds = this.route.view === 'terminal' ? visible(l) : [];
    this.terms.dataset.mode = l.mode;
    this.terms.dataset.count = String(shownIds.length);
    this.modeButton.textContent = l.mode === 'tabs' ? 'Grid' : 'Tabs';
    this.modeButton.setAttribute('aria-label', l.mode === 'tabs' ? 'Show a 2×2 grid' : 'Show tabs');
    for (const [id, v] of this.views) {
      v.setShown(shownIds.includes(id));
      v.el.style.order = String(shownIds.indexOf(id));
      v.el.classList.toggle('active', id === l.active);
    }
    this.renderTabs();
    const active = this.activeView();
    if (active && this.route.view === 'terminal' && !this.root.contains(document.activeElement?.closest('dialog') ?? null)) active.focusInput();
  }

  private renderTabs(): void {
    const l = this.layout;
    // The key row types into the active terminal: hidden where that is refused.
    this.termsView.toggleAttribute('data-read-only', !!this.activeView()?.readOnly);
    fill(
      this.tabs,
      ...l.open.map((id) => {
        const v = this.views.get(id);
        const status = v?.info.status ?? this.sessions.get(id)?.status ?? '';
        const selected = id === l.active;
        const tab = h(
          'div',
          { role: 'tab', class: 'tab', 'aria-selected': String(selected), tabindex: selected ? '0' : '-1', 'data-session': id, 'data-status': status, onclick: () => this.dispatch({ type: 'activate', id }) },
          h('span', { class: `dot st-${status}`, 'data-outcome': outcome(v?.info ?? this.sessions.get(id) ?? { status: 'running' }) }),
          h('span', { class: 'tab-title' }, id),
          v?.readOnly ? h('span', { class: 'ro' }, 'read-only') : null,
          h('button', { type: 'button', class: 'tab-close', tabindex: '-1', 'aria-label': `Close ${id}`, onclick: (e: Event) => (e.stopPropagation(), this.dispatch({ type: 'close', id })) }, '×'),
        );
        tab.classList.toggle('focused', this.focus.isFocused(id));
        return tab;
      }),
    );
    // The active tab in view when it changes (many tabs scroll sideways);
    // not on every redraw, so scrolling the strip by hand stays put.
    if (!this.termsView.hidden && l.active !== this.tabScrolledTo) {
      this.tabScrolledTo = l.active;
      this.tabs.querySelector('[aria-selected="true"]')?.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    }
  }

  /** The tab last scrolled into view. */
  private tabScrolledTo: string | null = null;

  private activeView(): TermView | undefined {
    return this.layout.active ? this.views.get(this.layout.active) : undefined;
  }

  private sendToActive(data: string): void {
    const v = this.activeView();
    if (!v) return;
    // Through the view, so read-only and flow state apply as for typing.
    v.term.input(data, true);
  }

  // ---- sessions --------------------------------------------------------

  private onMessage(m: Record<string, unknown>): void {
    if (m.type === 'session_update') {
      const u = m as unknown as SessionUpdate;
      const r = applyUpdate(this.sessions, u, Date.now());
      // A release is no deletion: the session may be listed again at once.
      if (u.change === 'deleted' && u.reason !== 'released') this.views.get(u.sessionId)?.deletedInList();
      this.setSessions(r.map);
      if (r.refresh) this.scheduleRefresh();
    } else if (m.type === 'connected') {
      // The socket has the credential's rights of now: views wait for it
      // to type again (see `Rights`).
      this.rights.connected();
      this.setSessions(this.sessions);
      // After a reconnect the list (and the rights) may have changed while we were away.
      if (this.connects++ > 0) this.scheduleRefresh(true);
    } else {
      this.events.receive(m);
    }
  }

  /** A refresh soon; `rights`: it asks for the rights too. */
  private scheduleRefresh(rights = false): void {
    this.rightsDue ||= rights;
    clearTimeout(this.refreshTimer);
    // A failed refresh (the page is leaving, the server restarts) waits for the next event.
    this.refreshTimer = setTimeout(() => void this.refresh().catch(() => {}), 100);
  }

  /**
   * The list and the viewers; with `rights` (the first load, the tab shown
   * again, a reconnect, a `read_only` refusal: not every refresh, a
   * cluster reads Redis per project for it) also the projects with this
   * credential's rights in each, which tell whether the server has the
   * focus API (issue 12; asked again while no answer told it).
   */
  async refresh(rights = false): Promise<void> {
    const asked = ++this.refreshes;
    const withRights = rights || this.rightsDue || this.focus.undecided;
    this.rightsDue = false;
    const [list, viewers, projects] = await Promise.all([
      api.list(),
      api.viewers().catch(() => ({})),
      withRights ? api.projects().catch(() => ((this.rightsDue = true), undefined)) : undefined,
    ]);
    if (this.focus.decide(projects)) for (const v of this.views.values()) this.focus.track(v.info.project);
    // A list answered after a newer one was asked for is older than the
    // events since: it could bring back a session deleted meanwhile.
    if (asked !== this.refreshes) return;
    // A project the credential may write now: the socket connects again to get the new rights.
    if (projects && this.rights.take(projects)) this.cutter.cut();
    this.setSessions(fromList(list, viewers));
  }

  /** The server refused a write in `project` with `read_only`: read-only until the socket connects again; the rights are asked. */
  private refused(project: string): void {
    if (!this.rights.refused(project)) return;
    this.setSessions(this.sessions);
    this.scheduleRefresh(true);
  }

  /** Refreshes asked for so far (only the latest one's answer is taken). */
  private refreshes = 0;

  private setSessions(m: SessionMap): void {
    this.sessions = m;
    this.list.render(m);
    this.monitor.render(m);
    for (const [id, v] of this.views) {
      const s = m.get(id);
      if (s && s.epoch && v.info.epoch && s.epoch !== v.info.epoch) {
        // The id was deleted and made again (API clients choose ids): a new
        // session, so a fresh view (made below), not the old one's end.
        v.dispose();
        this.views.delete(id);
        continue;
      }
      if (s && s.status !== v.info.status && !v.exit && !v.deleted) v.info.status = s.status;
      v.setReadOnly(this.rights.readOnly(v.info.project));
    }
    if (this.layout.open.some((id) => !this.views.has(id) && m.has(id))) this.renderTerms();
    else this.renderTabs();
  }

  private async create(req: CreateRequest): Promise<void> {
    const v = this.activeView();
    const box = (v?.el.querySelector('.term-body') as HTMLElement | null) ?? this.terms;
    if (req.kind === 'pty' && box.clientWidth > 0) {
      // A first guess at the size: the terminal asks for the exact fit once it shows.
      req.cols = Math.max(20, Math.floor(box.clientWidth / 8.5));
      req.rows = Math.max(5, Math.floor(box.clientHeight / 17));
    }
    const info = await api.create(req);
    this.sessions = new Map(this.sessions).set(info.id, { ...info, viewers: 0 });
    this.setSessions(this.sessions);
    this.go({ view: 'terminal', id: info.id });
  }

  private async act(f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
    } catch (e) {
      this.toast('Failed', e instanceof Error ? e.message : String(e));
    }
    this.scheduleRefresh();
  }

  private toast(title: string, message: string): void {
    this.events.receive({ type: 'notification', title, message });
  }

  // ---- terminals -------------------------------------------------------

  private termAction(v: TermView, what: TermAction): void {
    switch (what) {
      case 'close':
        this.dispatch({ type: 'close', id: v.id });
        break;
      case 'replay':
        this.go({ view: 'replay', id: v.id });
        break;
      case 'terminate':
        void this.act(() => api.terminate(v.id));
        break;
      case 'share':
        void this.shareBox.show(v.info.project, v.id);
        break;
      case 'fullscreen':
        void toggleFullscreen(v.el, () => v.focusInput());
        break;
    }
  }

  // ---- focus -----------------------------------------------------------

  private markFocus(): void {
    for (const [id, v] of this.views) v.setFocused(this.focus.isFocused(id));
    this.renderTabs();
  }

  // ---- page behaviour --------------------------------------------------

  /** Terminals fit the visible viewport, above a phone's on-screen keyboard. */
  private installViewport(): void {
    const vv = window.visualViewport;
    if (!vv) return;
    const apply = () => document.documentElement.style.setProperty('--app-height', `${Math.round(vv.height)}px`);
    vv.addEventListener('resize', apply);
    apply();
  }

  private loadLayout(): Layout {
    try {
      return restoreLayout(JSON.parse(localStorage.getItem(LAYOUT_KEY) ?? 'null'));
    } catch {
      return emptyLayout;
    }
  }
}
