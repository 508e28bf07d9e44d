// Entry point of Herald's admin dashboard (/admin): sign-in with an admin token (typed, or
// from the `#token=` URL fragment, which is read and then removed from the address bar),
// the token check, the polling loop (stats every second, lists every other), the summary
// tiles, and the "connection lost" banner while the server cannot be reached. The token is
// only ever sent in the `Authorization` header. Charts are admin-charts.js, lists and actions
// admin-lists.js.

import { $, banner, el } from './view.js';
import { Charts, History, format, readings, renderNodes } from './admin-charts.js';
import { Lists } from './admin-lists.js';

/** sessionStorage key: the token survives a reload of this tab only. */
const TOKEN_KEY = 'herald.adminToken';
/** How often the stats are read, and the lists every how many reads. */
const POLL_MS = 1000;
const LISTS_EVERY = 2;
/** A request that takes longer counts as a lost connection. */
const REQUEST_TIMEOUT_MS = 5000;

let token;
let timer;
let charts;
let history;
let lists;
let polls = 0;
let lost = false;
/** Bumped on every sign-in and sign-out, so a poll of an old session stops. */
let generation = 0;

/** An HTTP failure of the API, with the server's status and error code. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A failure to reach the server at all (network error or time-out). */
class Unreachable extends Error {}

/** Calls the API with the token in `Authorization`; answers the JSON body. */
async function api(path, init = {}) {
  const abort = new AbortController();
  const t = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  let res;
  try {
    res = await fetch(path, {
      ...init,
      signal: abort.signal,
      cache: 'no-store',
      headers: { ...(init.headers ?? {}), Authorization: `Bearer ${token}` },
    });
  } catch (err) {
    throw new Unreachable(err.name === 'AbortError' ? 'the server did not answer in time' : err.message);
  } finally {
    clearTimeout(t);
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    throw new ApiError(res.status, body.error?.code, body.error?.message ?? `HTTP ${res.status}`);
  }
  return body;
}

/** What is wrong with the token, in words for the person signing in. */
function explain(err) {
  if (err instanceof Unreachable) return `Cannot reach the server (${err.message}).`;
  if (err.code === 'token_expired') return 'This token has expired. Paste a fresh admin token.';
  if (err.code === 'invalid_token') return `This token was not accepted: ${err.message}. Check that you pasted all of it.`;
  if (err.status === 403) return 'This token is valid but has no admin role. The dashboard needs a token whose roles include "admin".';
  if (err.code === 'rate_limited') return 'Too many attempts; wait a moment and try again.';
  return `The server refused: ${err.message}.`;
}

/** The `sub` of a JWT, read without verifying (the server verifies); for display only. */
function subject(jwt) {
  try {
    const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).sub ?? 'admin';
  } catch {
    return 'admin';
  }
}

function showLogin(message) {
  $('login').hidden = false;
  $('dashboard').hidden = true;
  $('session').hidden = true;
  banner('');
  const error = $('login-error');
  error.textContent = message ?? '';
  error.hidden = !message;
  $('token-input').focus();
}

/** Checks `candidate` with a first stats read, then shows the dashboard and starts polling. */
async function start(candidate) {
  stop();
  const mine = ++generation;
  token = candidate;
  let stats;
  try {
    stats = await api('/v1/admin/stats');
  } catch (err) {
    if (mine !== generation) return;
    token = undefined;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(explain(err));
    return;
  }
  if (mine !== generation) return;
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $('login').hidden = true;
  $('login-error').hidden = true;
  $('dashboard').hidden = false;
  $('session').hidden = false;
  $('me').textContent = subject(candidate);
  history = new History();
  charts = new Charts($('charts'));
  lists = new Lists(api);
  polls = 0;
  lost = false;
  $('dashboard').focus();
  try {
    await show(stats, Date.now(), mine);
  } catch (err) {
    failed(err, mine);
  }
}

/** Stops polling and forgets the token; back to the sign-in form with `message`, if any. */
function stop(message) {
  generation++;
  clearTimeout(timer);
  charts?.destroy();
  lists?.clear();
  charts = undefined;
  lists = undefined;
  history = undefined;
  token = undefined;
  if (message !== undefined) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(message || undefined);
  }
}

/** Renders one stats answer (and every other time the lists), then schedules the next poll. */
async function show(stats, receivedAt, mine) {
  const added = history.push(readings(stats, receivedAt), receivedAt / 1000);
  charts.update(history, added);
  renderTiles(stats);
  renderNodes(stats, history);
  if (polls++ % LISTS_EVERY === 0) await lists.refresh(stats.users_by_status);
  if (mine !== generation) return;
  if (lost) {
    lost = false;
    banner('Reconnected.', { ok: true });
    setTimeout(() => { if (!lost && mine === generation) banner(''); }, 3000);
  }
  $('updated').textContent = `Updated ${new Date(receivedAt).toLocaleTimeString()}`;
  timer = setTimeout(() => poll(mine), POLL_MS);
}

async function poll(mine) {
  if (mine !== generation) return;
  try {
    const stats = await api('/v1/admin/stats');
    if (mine !== generation) return;
    await show(stats, Date.now(), mine);
  } catch (err) {
    failed(err, mine);
  }
}

/** A poll failed: back to sign-in for a refused token, else "connection lost" and retry. */
function failed(err, mine) {
  if (mine !== generation) return;
  if (err instanceof ApiError && err.status === 401) {
    // Retrying will not bring an expired or revoked token back.
    stop(explain(err));
    return;
  }
  lost = true;
  const why = err instanceof Unreachable ? err.message
    : err instanceof ApiError ? `HTTP ${err.status}: ${err.message}` : err.message;
  banner(`Connection lost (${why}). Retrying every few seconds…`);
  // Slower while the server is away, so a restarting server is not hammered.
  clearTimeout(timer);
  timer = setTimeout(() => poll(mine), POLL_MS * 3);
}

/** The summary: this server's (or, in cluster mode, the cluster's) figures now. */
function renderTiles(stats) {
  const cluster = stats.cluster;
  $('scope').textContent = cluster ? `(cluster of ${Object.keys(cluster.nodes ?? {}).length} nodes; you are on ${cluster.node})` : '';
  const byStatus = stats.users_by_status ?? {};
  const total = (id) => history.total(id);
  const connections = cluster?.total?.connections ?? stats.connections;
  const tiles = [
    ['connections', 'Connections', format(connections)],
    ['users', 'Users online', format(stats.users_online)],
    ['online', 'Online', format(byStatus.online)],
    ['away', 'Away', format(byStatus.away)],
    ['busy', 'Busy', format(byStatus.busy)],
    ['invisible', 'Invisible', format(byStatus.invisible)],
    ['rooms', 'Active rooms', format(cluster?.total?.active_rooms ?? stats.active_rooms)],
    ['messages', 'Messages', format(total('messages'), '/s'), total('messages')],
    ['deliveries', 'Deliveries', format(total('deliveries'), '/s'), total('deliveries')],
    ['commit', 'Commit latency', format(total('commit'), ' ms')],
    ['queue', 'Persistence queue', format(total('queue'))],
    ['evictions', 'Slow-consumer evictions', format(stats.slow_consumers_total)],
    ['notifications', 'Notifications sent', format(stats.notifications_created_total)],
    ['database', 'Database', stats.database?.reachable ? `reachable, ${format(stats.database.latency_ms, ' ms')}` : 'unreachable'],
    ['uptime', 'Uptime', uptime(stats.uptime_s)],
  ];
  $('tiles').replaceChildren(...tiles.map(([id, label, text, value]) => el('div', { class: 'tile', id: `tile-${id}`, 'data-value': value ?? '' },
    el('dt', {}, label), el('dd', {}, text))));
}

function uptime(s) {
  if (typeof s !== 'number') return '—';
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A `#token=<JWT>` fragment: answers the token and removes it from the address bar. */
function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const t = params.get('token');
  // Drop the fragment without a reload and without a history entry that holds the token.
  if (location.hash) window.history.replaceState(null, '', location.pathname + location.search);
  return t?.trim() || undefined;
}

function wire() {
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token-input').value.trim();
    $('token-input').value = '';
    start(t);
  });
  $('logout-button').addEventListener('click', () => stop(''));
  window.addEventListener('hashchange', () => {
    const t = tokenFromFragment();
    if (t) start(t);
  });
}

wire();
const initial = tokenFromFragment() ?? sessionStorage.getItem(TOKEN_KEY);
if (initial) start(initial);
else showLogin();
