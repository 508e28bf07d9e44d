// Lists of Herald's admin dashboard: users online grouped by status
// (`GET /v1/admin/presence`), rooms with their online members (`GET /v1/admin/rooms`), and
// the chosen user's sessions (`GET /v1/admin/presence/{user}`) with the two actions: force a
// status (`PUT /v1/admin/presence/{user}`) and disconnect (`POST
// /v1/admin/users/{user}/disconnect`). Everything is rendered as text, never as HTML.

import { $, el } from './view.js';

const STATUS_LABELS = { online: 'Online', away: 'Away', busy: 'Busy', invisible: 'Invisible', offline: 'Offline' };
const STATUSES = ['online', 'away', 'busy', 'invisible'];

/** Users asked for per refresh; the status counts come from the stats and are exact. */
const USERS_PAGE = 200;
const ROOMS_PAGE = 50;

/** `12:34:56` for an RFC 3339 time, or `—`. */
function time(iso) {
  const d = new Date(iso);
  return iso && !Number.isNaN(d.getTime()) ? d.toLocaleTimeString() : '—';
}

/** A user agent cut to its first 40 characters (the whole one is the cell's tooltip). */
function short(ua) {
  if (!ua) return '—';
  return ua.length > 40 ? `${ua.slice(0, 40)}…` : ua;
}

function statusBadge(status, autoAway) {
  const shown = autoAway && status === 'online' ? 'away' : status;
  return el('span', { class: 'status', 'data-status': status },
    el('span', { class: `dot ${shown === 'invisible' ? 'offline' : shown}`, 'aria-hidden': 'true' }),
    ` ${STATUS_LABELS[status] ?? status}${autoAway ? ' (idle)' : ''}`);
}

export class Lists {
  /** `api(path, init)` answers the parsed JSON or throws an Error with `status` and `code`. */
  constructor(api) {
    this.api = api;
    this.selected = undefined;
    this.busy = false;
    $('status-filter').addEventListener('change', () => this.refresh().catch(() => {}));
    $('force-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.forceStatus();
    });
    $('disconnect-button').addEventListener('click', () => this.disconnect());
  }

  /** Reloads the three lists (the caller handles a failure: it means the server is unreachable). */
  async refresh(byStatus) {
    if (byStatus) this.byStatus = byStatus;
    const filter = $('status-filter').value;
    const query = new URLSearchParams({ limit: String(USERS_PAGE) });
    if (filter) query.set('status', filter);
    const [users, rooms] = await Promise.all([
      this.api(`/v1/admin/presence?${query}`),
      this.api(`/v1/admin/rooms?limit=${ROOMS_PAGE}&members=20`),
    ]);
    this.renderUsers(users.users, filter, this.byStatus);
    this.renderRooms(rooms);
    if (this.selected) await this.loadDetail(this.selected);
  }

  renderUsers(users, filter, byStatus) {
    const groups = (filter ? [filter] : STATUSES).map((status) => {
      const members = users.filter((u) => u.status === status);
      // A full page may leave users out: then the exact count is the stats'. Otherwise the
      // listing itself counts, which is also right just after an action changed a status.
      const count = users.length < USERS_PAGE ? members.length : byStatus?.[status] ?? members.length;
      const id = `users-${status}`;
      return el('div', { class: 'group', 'data-status': status },
        el('h3', { id }, `${STATUS_LABELS[status]} (${count})`),
        members.length === 0
          ? el('p', { class: 'help' }, 'Nobody.')
          : el('ul', { class: 'user-list', 'aria-labelledby': id }, members.map((u) => el('li', { 'data-user': u.user },
            el('button', {
              type: 'button',
              class: 'link',
              'aria-pressed': String(this.selected === u.user),
              onclick: () => this.select(u.user),
            }, u.user),
            statusBadge(u.status, u.auto_away),
            el('span', { class: 'help' }, `${u.devices} ${u.devices === 1 ? 'device' : 'devices'}`),
            u.custom_message ? el('span', { class: 'help' }, `“${u.custom_message}”`) : null))));
    });
    $('users').replaceChildren(...groups);
    const more = $('users-more');
    more.hidden = users.length < USERS_PAGE;
    more.textContent = `Showing the first ${USERS_PAGE} users by id.`;
  }

  renderRooms({ rooms, total }) {
    const items = rooms.map((r) => el('li', { 'data-room': r.room },
      el('div', { class: 'room-head' }, el('strong', {}, r.room), el('span', { class: 'help' }, `${r.online} online`)),
      el('ul', { class: 'chips', 'aria-label': `Online in ${r.room}` }, r.members.map((m) => el('li', { 'data-user': m.user },
        el('button', { type: 'button', class: 'chip', onclick: () => this.select(m.user) },
          el('span', { class: `dot ${m.status === 'invisible' ? 'offline' : m.status}`, 'aria-hidden': 'true' }),
          ` ${m.user} `, el('span', { class: 'visually-hidden' }, STATUS_LABELS[m.status])))))));
    $('rooms').replaceChildren(...(items.length ? items : [el('li', { class: 'help' }, 'No room has a member online.')]));
    const more = $('rooms-more');
    more.hidden = total <= rooms.length;
    more.textContent = `Showing the ${rooms.length} busiest of ${total} rooms.`;
  }

  async select(user) {
    this.selected = user;
    $('action-result').textContent = '';
    for (const b of document.querySelectorAll('#users button[aria-pressed]')) {
      b.setAttribute('aria-pressed', String(b.textContent === user));
    }
    try {
      await this.loadDetail(user);
    } catch (err) {
      $('action-result').textContent = `Cannot load ${user}: ${err.message}`;
    }
    $('detail-title').scrollIntoView({ block: 'nearest' });
    $('force-status').focus();
  }

  async loadDetail(user) {
    const p = await this.api(`/v1/admin/presence/${encodeURIComponent(user)}`);
    if (this.selected !== user) return;
    $('detail-empty').hidden = true;
    $('detail').hidden = false;
    $('detail').dataset.user = user;
    $('detail-user').textContent = p.user;
    $('detail-status').replaceChildren(statusBadge(p.status, p.auto_away),
      p.custom_message ? ` “${p.custom_message}”` : '');
    $('disconnect-button').disabled = p.sessions.length === 0;
    const rows = p.sessions.map((s) => el('tr', { 'data-session': s.session_id },
      el('td', {}, s.session_id),
      el('td', {}, s.node ?? '—'),
      el('td', {}, time(s.connected_at)),
      el('td', {}, time(s.last_activity)),
      el('td', {}, s.remote_addr ?? '—'),
      el('td', { class: 'ua', title: s.user_agent ?? undefined }, short(s.user_agent)),
      el('td', {}, s.subscribed_rooms.join(', ') || '—')));
    $('sessions').replaceChildren(...(rows.length ? rows
      : [el('tr', {}, el('td', { colspan: '7', class: 'help' }, `${user} has no session (last seen ${time(p.last_seen)}).`))]));
  }

  async forceStatus() {
    const user = this.selected;
    if (!user || this.busy) return;
    const status = $('force-status').value;
    const message = $('force-message').value.trim();
    await this.act(async () => {
      await this.api(`/v1/admin/presence/${encodeURIComponent(user)}`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ status, custom_message: message || null }),
      });
      return `${user} is now ${STATUS_LABELS[status].toLowerCase()}.`;
    });
  }

  async disconnect() {
    const user = this.selected;
    if (!user || this.busy) return;
    await this.act(async () => {
      const r = await this.api(`/v1/admin/users/${encodeURIComponent(user)}/disconnect`, { method: 'POST' });
      return `Disconnected ${user}: ${r.sessions_closed} ${r.sessions_closed === 1 ? 'session' : 'sessions'} closed.`;
    });
  }

  /** Runs an action, says how it went, and reloads the lists so its effect shows. */
  async act(fn) {
    this.busy = true;
    const result = $('action-result');
    result.classList.remove('failed');
    try {
      result.textContent = await fn();
      await this.refresh().catch(() => {});
    } catch (err) {
      result.classList.add('failed');
      result.textContent = `Failed: ${err.message}`;
    } finally {
      this.busy = false;
    }
  }

  clear() {
    this.selected = undefined;
    $('users').replaceChildren();
    $('rooms').replaceChildren();
    $('sessions').replaceChildren();
    $('detail').hidden = true;
    $('detail-empty').hidden = false;
    $('action-result').textContent = '';
  }
}
