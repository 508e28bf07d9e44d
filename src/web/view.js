// DOM helpers of the demo chat page: element creation (text only, never HTML, so message
// bodies cannot inject markup), the connection banner, toasts and small formatters.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** A new element with attributes (`class`, `aria-*`, dataset via `data-*`) and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
  }
  return node;
}

/** Shows (or hides, with `text` empty) the connection banner; `ok` styles good news. */
export function banner(text, { ok = false } = {}) {
  const node = $('connection');
  node.textContent = text ?? '';
  node.classList.toggle('ok', ok);
  node.hidden = !text;
}

/** A short-lived notice in the corner (announced to screen readers). */
export function toast(text, ms = 5000) {
  const node = el('div', { class: 'toast' }, text);
  $('toasts').append(node);
  setTimeout(() => node.remove(), ms);
}

/** `12:34` in the user's locale. */
export function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** What a room is called in the list: its name, or its id without the `public:` prefix. */
export function roomLabel(room) {
  if (room.name) return room.name;
  if (room.id.startsWith('public:')) return `# ${room.id.slice('public:'.length)}`;
  if (room.id.startsWith('direct:')) return `@ ${room.id.slice('direct:'.length).replace(':', ' & ')}`;
  return room.id;
}

/** The visible text of a message body of any kind. */
export function bodyText(message) {
  const body = message.body ?? {};
  if (typeof body.text === 'string') return body.text;
  if (typeof body.url === 'string') return `[${message.kind}] ${body.url}`;
  if (typeof body.lat === 'number') return `[location] ${body.lat}, ${body.lng}`;
  return `[${message.kind}]`;
}

/** Status words shown next to presence dots (colour is never the only cue). */
export const STATUS_LABELS = { online: 'online', away: 'away', busy: 'busy', offline: 'offline' };

/** Receipt words shown under one's own messages. */
export const RECEIPT_LABELS = { sending: 'Sending…', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent' };
