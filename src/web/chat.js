// The chat view of the demo page: rooms with unread badges, the open room's messages with
// delivered/read receipts, who is online and typing, and notifications. Owns the per-room
// state and renders it; every server event arrives through the HeraldClient it is given.

import { $, el, toast, clock, roomLabel, bodyText, STATUS_LABELS, RECEIPT_LABELS } from './view.js';

/** A `typing` start without a stop is shown this long at most. */
const TYPING_SHOWN_MS = 6000;
/** Typing `start` is re-sent at most this often while the user types. */
const TYPING_RESEND_MS = 3000;
/** Typing `stop` is sent after this long without a key press. */
const TYPING_IDLE_MS = 4000;
/** Messages loaded when a room is opened. */
const HISTORY_PAGE = 50;

export class Chat {
  /** @param {import('./herald-client.js').HeraldClient} client @param {{authFetch: Function}} api */
  constructor(client, api) {
    this.client = client;
    this.api = api;
    /** @type {Map<string, object>} room id → room state */
    this.rooms = new Map();
    this.active = undefined;
    this.me = undefined;
    this.typingSentAt = 0;
    this.typingIdle = undefined;
    this.unsubscribe = [
      client.on('connected', (ack) => { this.me = ack.user_id; }),
      client.on('sync', (data) => this.onSync(data)),
      client.on('message', (m) => this.onMessage(m)),
      client.on('room_unread', ({ room, unread }) => this.setUnread(room, unread)),
      client.on('receipt', (r) => this.onReceipt(r)),
      client.on('typing', (t) => this.onTyping(t)),
      client.on('room_presence', (p) => this.onRoomPresence(p)),
      client.on('notification', (n) => this.notify(n.title || 'Notification', n.message || '')),
    ];
  }

  stop() {
    for (const off of this.unsubscribe) off();
    clearTimeout(this.typingIdle);
    for (const room of this.rooms.values()) for (const t of room.typing.values()) clearTimeout(t);
  }

  room(id) {
    let room = this.rooms.get(id);
    if (!room) {
      room = { id, name: null, unread: 0, lastSeq: 0, messages: [], nodes: new Map(), loaded: false, members: new Map(), typing: new Map(), seen: { delivered: 0, read: 0 } };
      this.rooms.set(id, room);
    }
    return room;
  }

  /** Room names and kinds from `GET /v1/rooms` (the socket's `sync` has ids and counts only). */
  async loadRoomNames() {
    const res = await this.api.authFetch('/v1/rooms?limit=500');
    if (!res.ok) return;
    for (const r of (await res.json()).rooms ?? []) {
      const room = this.room(r.room);
      room.name = r.name;
      room.unread = r.unread;
    }
    this.renderRooms();
  }

  onSync(data) {
    for (const r of data.rooms ?? []) {
      const room = this.room(r.room);
      room.unread = r.unread;
      room.lastSeq = r.seq;
    }
    this.renderRooms();
    // After a reconnect the open room's members may have changed: take a fresh snapshot.
    if (this.active) this.open(this.active, { refresh: true });
    else if (this.rooms.size) this.open([...this.rooms.keys()].sort()[0]);
  }

  async joinPublic(name) {
    const id = name.includes(':') ? name : `public:${name.trim()}`;
    await this.open(id);
  }

  async createPrivate(name) {
    const res = await this.api.authFetch('/v1/rooms', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name }) });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error?.message ?? `HTTP ${res.status}`);
    this.room(body.room).name = body.name;
    await this.open(body.room);
  }

  /** Opens a room: joins it (a snapshot of who is online) and loads its latest messages. */
  async open(id, { refresh = false } = {}) {
    const room = this.room(id);
    this.active = id;
    this.renderRooms();
    this.renderRoom();
    const ack = await this.client.join(id);
    room.members = new Map((ack.members ?? []).map((m) => [m.user, m]));
    // A big room's ack lists the first page only: page the rest (diffs that came meanwhile win).
    if (ack.members_next) {
      for (const m of await this.client.allMembers(id, ack.members_next)) {
        if (!room.members.has(m.user)) room.members.set(m.user, m);
      }
    }
    room.lastSeq = Math.max(room.lastSeq, ack.seq ?? 0);
    if (!room.loaded || refresh) {
      const page = await this.client.history(id, { limit: HISTORY_PAGE });
      for (const m of page.messages ?? []) this.addMessage(room, m);
      room.loaded = true;
    }
    this.renderRooms();
    if (this.active === id) {
      this.renderRoom();
      this.markRead(room);
    }
  }

  addMessage(room, m) {
    if (m.seq !== undefined && room.messages.some((x) => x.seq === m.seq)) return;
    const pending = m.client_msg_id && room.messages.find((x) => x.seq === undefined && x.client_msg_id === m.client_msg_id);
    if (pending) Object.assign(pending, m, { state: 'sent' });
    else room.messages.push({ ...m, state: 'sent' });
    room.messages.sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity));
    room.lastSeq = Math.max(room.lastSeq, m.seq ?? 0);
  }

  onMessage(m) {
    const room = this.room(m.room);
    this.addMessage(room, m);
    room.typing.delete(m.from);
    if (m.room === this.active) {
      this.renderRoom();
      this.markRead(room);
    } else {
      this.renderRooms();
    }
    if (m.from !== this.me && (m.room !== this.active || document.visibilityState !== 'visible')) {
      this.notify(`${m.from} in ${roomLabel(room)}`, bodyText(m));
    }
  }

  /** Reports `read` up to the room's latest message while the room is on screen. */
  markRead(room) {
    if (document.visibilityState !== 'visible' || this.active !== room.id) return;
    const last = room.messages.reduce((max, m) => Math.max(max, m.seq ?? 0), 0);
    if (last > 0 && last > (room.readSent ?? 0)) {
      room.readSent = last;
      room.unread = 0;
      this.renderRooms();
      this.client.receipt(room.id, last, 'read').catch(() => { room.readSent = 0; });
    }
  }

  setUnread(id, unread) {
    const room = this.room(id);
    room.unread = id === this.active && document.visibilityState === 'visible' ? 0 : unread;
    this.renderRooms();
  }

  onReceipt({ room: id, user, seq, status }) {
    if (user === this.me) return;
    const room = this.room(id);
    // The furthest any other member got: one reader is enough to show "Read".
    room.seen.delivered = Math.max(room.seen.delivered, seq);
    if (status === 'read') room.seen.read = Math.max(room.seen.read, seq);
    if (id === this.active) this.renderRoom();
  }

  onTyping({ room: id, user, state }) {
    if (user === this.me) return;
    const room = this.room(id);
    clearTimeout(room.typing.get(user));
    if (state === 'start') {
      room.typing.set(user, setTimeout(() => { room.typing.delete(user); this.renderTyping(); }, TYPING_SHOWN_MS));
    } else {
      room.typing.delete(user);
    }
    if (id === this.active) this.renderTyping();
  }

  onRoomPresence({ room: id, joins = [], leaves = [] }) {
    const room = this.room(id);
    for (const p of leaves) room.members.delete(p.user);
    for (const p of joins) room.members.set(p.user, p);
    if (id === this.active) this.renderMembers();
  }

  /** Sends the composer's text to the open room; the message shows at once as "Sending…". */
  async send(text) {
    const id = this.active;
    if (!id || !text.trim()) return;
    const room = this.room(id);
    const clientMsgId = crypto.randomUUID();
    const entry = { client_msg_id: clientMsgId, from: this.me, kind: 'text', body: { text }, created_at: new Date().toISOString(), state: 'sending' };
    room.messages.push(entry);
    this.stopTyping();
    this.renderRoom();
    try {
      const ack = await this.client.send({ room: id, body: { text }, clientMsgId });
      Object.assign(entry, ack, { state: 'sent' });
      this.addMessage(room, entry);
    } catch (err) {
      entry.state = 'failed';
      toast(`Message not sent: ${err.message}`);
    }
    if (this.active === id) this.renderRoom();
  }

  /** Called on each key press in the composer: `typing start`, at most every few seconds. */
  typed() {
    if (!this.active || this.client.state !== 'ready') return;
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_RESEND_MS) {
      this.typingSentAt = now;
      this.client.typing(this.active, 'start').catch(() => {});
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.typingIdle);
    if (this.typingSentAt && this.active && this.client.state === 'ready') this.client.typing(this.active, 'stop').catch(() => {});
    this.typingSentAt = 0;
  }

  notify(title, text) {
    toast(`${title}: ${text}`);
    if (typeof Notification !== 'undefined' && Notification.permission === 'granted' && document.visibilityState !== 'visible') {
      new Notification(title, { body: text });
    }
  }

  receiptState(room, m) {
    if (m.state !== 'sent') return m.state;
    if (room.seen.read >= m.seq) return 'read';
    if (room.seen.delivered >= m.seq) return 'delivered';
    return 'sent';
  }

  // ---- rendering ------------------------------------------------------------

  renderRooms() {
    const list = $('room-list');
    const items = [...this.rooms.values()].sort((a, b) => a.id.localeCompare(b.id)).map((room) => {
      const unread = room.unread > 0
        ? el('span', { class: 'badge', 'data-count': room.unread }, String(room.unread), el('span', { class: 'visually-hidden' }, ' unread'))
        : null;
      const button = el('button', { type: 'button', 'aria-current': room.id === this.active ? 'true' : 'false', 'data-room': room.id, onclick: () => this.open(room.id).catch((e) => toast(e.message)) },
        el('span', { class: 'room-name' }, roomLabel(room)), unread);
      return el('li', {}, button);
    });
    list.replaceChildren(...items);
  }

  renderRoom() {
    const room = this.active && this.room(this.active);
    $('room-title').textContent = room ? roomLabel(room) : 'No room selected';
    $('composer-input').disabled = !room;
    $('send-button').disabled = !room;
    const list = $('messages');
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    // Nodes are kept per message and only new ones appended, so the log (role=log) announces
    // new messages to screen readers instead of re-reading the whole room.
    const wanted = (room ? room.messages : []).map((m) => this.messageNode(room, m));
    const current = [...list.children];
    if (current.length <= wanted.length && current.every((node, i) => node === wanted[i])) {
      list.append(...wanted.slice(current.length));
    } else {
      list.replaceChildren(...wanted);
    }
    if (nearBottom) list.scrollTop = list.scrollHeight;
    this.renderMembers();
    this.renderTyping();
  }

  /** The list item of message `m`, made once and then only its receipt word updated. */
  messageNode(room, m) {
    const key = m.client_msg_id ? `${m.from}/${m.client_msg_id}` : `seq:${m.seq}`;
    const mine = m.from === this.me;
    let node = room.nodes.get(key);
    if (!node) {
      node = el('li', { class: mine ? 'msg mine' : 'msg' },
        el('div', { class: 'msg-meta' }, el('strong', {}, mine ? 'You' : m.from), el('time', { datetime: m.created_at }, clock(m.created_at))),
        el('div', { class: 'msg-text' }, bodyText(m)),
        mine ? el('div', { class: 'msg-meta' }, el('span', { class: 'msg-status' })) : null);
      room.nodes.set(key, node);
    }
    if (m.seq !== undefined) node.dataset.seq = m.seq;
    const status = node.querySelector('.msg-status');
    if (status) {
      const state = this.receiptState(room, m);
      if (status.dataset.state !== state) {
        status.dataset.state = state;
        status.textContent = RECEIPT_LABELS[state];
      }
    }
    return node;
  }

  renderMembers() {
    const room = this.active && this.room(this.active);
    const members = room ? [...room.members.values()].sort((a, b) => a.user.localeCompare(b.user)) : [];
    $('member-list').replaceChildren(...members.map((p) =>
      el('li', { 'data-user': p.user, 'data-status': p.status },
        el('span', { class: `dot ${p.status}`, 'aria-hidden': 'true' }),
        el('span', {}, p.user === this.me ? `${p.user} (you)` : p.user),
        el('span', { class: 'help' }, STATUS_LABELS[p.status] ?? p.status))));
  }

  renderTyping() {
    const room = this.active && this.room(this.active);
    const who = room ? [...room.typing.keys()].sort() : [];
    $('typing').textContent = who.length === 0 ? '' : who.length === 1 ? `${who[0]} is typing…` : `${who.join(', ')} are typing…`;
  }
}
