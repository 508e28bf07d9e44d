// Entry point of Herald's demo chat page: sign-in (a pasted token, or a name when the server
// runs with HERALD_DEV_LOGIN), checking the token before connecting, the HeraldClient's
// lifecycle (the token travels as a WebSocket subprotocol, never in a URL), the connection
// banner, and sign-out. The chat itself is chat.js; DOM helpers are view.js.

import { HeraldClient } from './herald-client.js';
import { Chat } from './chat.js';
import { $, banner, toast } from './view.js';

/** sessionStorage keys: the token (or dev name) survives a reload of this tab only. */
const TOKEN_KEY = 'herald.token';
const DEV_USER_KEY = 'herald.devUser';

const devLogin = document.body.dataset.devLogin === 'true';
let client;
let chat;

/** `fetch` with the current token in `Authorization` (REST never takes it in the URL). */
async function authFetch(path, init = {}) {
  const token = await currentToken();
  return fetch(path, { ...init, headers: { ...(init.headers ?? {}), Authorization: `Bearer ${token}` } });
}

/** Dev login tokens live 15 minutes; one is reused for this long before a new one is asked for. */
const DEV_TOKEN_REUSE_MS = 5 * 60 * 1000;
let devCache = { user: undefined, token: undefined, at: 0 };

/** A dev login token for `user` (`POST /v1/dev/login`), reused for a few minutes. */
async function devToken(user) {
  if (devCache.user === user && Date.now() - devCache.at < DEV_TOKEN_REUSE_MS) return devCache.token;
  const res = await fetch('/v1/dev/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user }) });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error?.message ?? `dev login failed (HTTP ${res.status})`);
  devCache = { user, token: body.token, at: Date.now() };
  return body.token;
}

let tokenSource;
function currentToken() {
  return tokenSource();
}

/** Why the server refuses a token, in words for the user; undefined if it is accepted. */
async function tokenProblem() {
  let token;
  try {
    token = await currentToken();
  } catch (err) {
    return `Cannot sign in: ${err.message}`;
  }
  let res;
  try {
    res = await fetch('/v1/rooms?limit=1', { headers: { Authorization: `Bearer ${token}` } });
  } catch (err) {
    return `Cannot reach the server (${err.message}).`;
  }
  if (res.ok) return undefined;
  const body = await res.json().catch(() => ({}));
  const code = body.error?.code;
  if (code === 'token_expired') return 'Your token has expired. Paste a fresh one to continue.';
  if (code === 'invalid_token') return `This token was not accepted: ${body.error.message}. Check that you pasted all of it.`;
  if (code === 'rate_limited') return 'Too many attempts; wait a moment and try again.';
  return body.error?.message ?? `The server answered HTTP ${res.status}.`;
}

function showLogin(message) {
  $('login').hidden = false;
  $('chat').hidden = true;
  $('session').hidden = true;
  $('name-form').hidden = !devLogin;
  banner('');
  const error = $('login-error');
  error.textContent = message ?? '';
  error.hidden = !message;
  (devLogin ? $('name-input') : $('token-input')).focus();
}

/** Checks the token, then connects and shows the chat; back to the form with the reason otherwise. */
async function start(source) {
  tokenSource = source;
  let problem;
  try {
    problem = await tokenProblem();
  } catch (err) {
    problem = err.message;
  }
  if (problem) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(DEV_USER_KEY);
    showLogin(problem);
    return;
  }
  const url = new URL('/v1/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  client = new HeraldClient({ url: url.toString(), getToken: source, tokenTransport: 'protocol' });
  chat = new Chat(client, { authFetch });
  client.on('connected', (ack) => { $('me').textContent = ack.user_id; });
  client.on('state', (state) => { if (state === 'connecting' && !$('connection').textContent) banner('Connecting…'); });
  client.on('sync', () => {
    const again = $('connection').textContent.startsWith('Connection lost');
    banner(again ? 'Reconnected.' : '', { ok: true });
    if (again) setTimeout(() => { if (client?.state === 'ready') banner(''); }, 3000);
    chat.loadRoomNames().catch(() => {});
  });
  client.on('disconnected', async ({ delayMs }) => {
    banner(`Connection lost. Reconnecting in ${Math.max(1, Math.round(delayMs / 1000))} s…`);
    // A token that expired or was revoked will not come back by retrying: say so.
    const why = await tokenProblem();
    if (why && !why.startsWith('Cannot')) stop(why);
  });
  client.on('reconnecting', ({ attempt }) => banner(`Connection lost. Reconnecting (attempt ${attempt + 1})…`));
  client.on('error', (err) => { if (err.code === 'token_refresh_failed') banner(`Could not renew the session: ${err.message}`); });
  $('login').hidden = true;
  $('chat').hidden = false;
  $('session').hidden = false;
  $('login-error').hidden = true;
  $('notify-button').hidden = typeof Notification === 'undefined' || Notification.permission !== 'default';
  banner('Connecting…');
  client.connect().catch(() => {});
}

/** Closes the connection and goes back to the sign-in form (with `message`, if any). */
function stop(message) {
  devCache = { user: undefined, token: undefined, at: 0 };
  chat?.stop();
  client?.close();
  chat = undefined;
  client = undefined;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(DEV_USER_KEY);
  $('room-list').replaceChildren();
  $('messages').replaceChildren();
  $('member-list').replaceChildren();
  showLogin(message);
}

function wire() {
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token-input').value.trim();
    $('token-input').value = '';
    sessionStorage.setItem(TOKEN_KEY, token);
    start(() => token);
  });
  $('name-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const user = $('name-input').value.trim();
    sessionStorage.setItem(DEV_USER_KEY, user);
    start(() => devToken(user));
  });
  $('join-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('join-input').value.trim();
    chat?.joinPublic(name).then(() => { $('join-input').value = ''; $('composer-input').focus(); }, (err) => toast(`Cannot join: ${err.message}`));
  });
  $('create-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('create-input').value.trim();
    chat?.createPrivate(name).then(() => { $('create-input').value = ''; $('composer-input').focus(); }, (err) => toast(`Cannot create the room: ${err.message}`));
  });
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('composer-input');
    const text = input.value;
    input.value = '';
    chat?.send(text);
  });
  $('composer-input').addEventListener('input', () => chat?.typed());
  $('status-select').addEventListener('change', (ev) => {
    client?.setPresence(ev.target.value).catch((err) => toast(`Cannot change status: ${err.message}`));
  });
  $('notify-button').addEventListener('click', async () => {
    const answer = await Notification.requestPermission();
    $('notify-button').hidden = answer !== 'default';
    toast(answer === 'granted' ? 'Notifications are on.' : 'Notifications stay off.');
  });
  $('logout-button').addEventListener('click', () => stop());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && chat?.active) chat.markRead(chat.room(chat.active));
  });
}

wire();
const savedToken = sessionStorage.getItem(TOKEN_KEY);
const savedUser = sessionStorage.getItem(DEV_USER_KEY);
if (savedToken) start(() => savedToken);
else if (savedUser && devLogin) start(() => devToken(savedUser));
else showLogin();
