// Types of Herald's JavaScript client (herald-client.js). Wire shapes follow
// docs/protocol.md; the client's behaviour is described in docs/client-js.md.

/** Anything shaped like the WHATWG WebSocket (the browser's, Node 22's, or the `ws` package's). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface BackoffOptions {
  /** Delay before the first retry, before jitter. Default 500. */
  initialMs?: number;
  /** Cap on any delay, before jitter. Default 30000. */
  maxMs?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
  /** Fraction of the delay that is random: delays are drawn from [raw * (1 - jitter), raw]. Default 0.5. */
  jitter?: number;
  /** Randomness in [0, 1). Default Math.random. */
  random?: () => number;
}

export interface HeraldClientOptions {
  /** The WebSocket endpoint, e.g. `wss://chat.example/v1/ws`. */
  url: string;
  /** Returns a valid JWT; called at every (re)connect and for every in-band refresh. */
  getToken: () => string | Promise<string>;
  /** WebSocket implementation; default `globalThis.WebSocket` (required on Node 20: pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Sent as `device_id`: the server keeps this device's position per room. */
  deviceId?: string;
  /**
   * How the token reaches the server: `'query'` (default, `?token=`) or `'protocol'`
   * (subprotocols `herald.v1` and `herald.bearer.<JWT>`: the token stays out of the URL and
   * so out of access logs; for browsers, which cannot set `Authorization`).
   */
  tokenTransport?: 'query' | 'protocol';
  /** Positions saved from an earlier run (`client.positions`): the first connection resumes after them. */
  positions?: Record<string, number>;
  backoff?: BackoffOptions;
  /** Most unacked sends kept; `send()` beyond it rejects with `outbox_full`. Default 1000. */
  outboxSize?: number;
  /** Deadline of a request's reply, of one `send` attempt's ack (then it is re-sent), and of the handshake. Default 10000. */
  requestTimeoutMs?: number;
  /** Ping period; default the server's `heartbeat_interval_ms`. */
  heartbeatIntervalMs?: number;
  /** Silence after which the connection is dropped and reopened; default two ping periods. */
  heartbeatTimeoutMs?: number;
  /** Refresh the token this long before `exp` (or half-way for shorter tokens). Default 60000. */
  refreshBeforeMs?: number;
  /** Report `delivered` receipts for received messages (batched per room). Default true. */
  autoDelivered?: boolean;
  /** Largest `send` frame accepted into the outbox (the server's `HERALD_MAX_FRAME_BYTES`). Default 1 MiB. */
  maxFrameBytes?: number;
}

export type Priority = 'low' | 'normal' | 'high' | 'urgent';
export type Status = 'online' | 'away' | 'busy' | 'offline';

export interface Message {
  message_id: string;
  room: string;
  seq: number;
  from: string;
  kind: string;
  body: Record<string, unknown>;
  priority: Priority;
  client_msg_id: string | null;
  created_at: string;
}

export interface Presence {
  user: string;
  status: Status;
  custom_message: string | null;
  metadata: unknown;
  last_seen: string | null;
  devices: number;
}

export interface SendAck {
  message_id: string;
  room: string;
  seq: number;
  created_at: string;
  status: 'sent';
  /** The server already had this `client_msg_id`: this is the original ack. */
  duplicate?: boolean;
}

export interface SyncRoom {
  room: string;
  seq: number;
  delivered_seq: number;
  read_seq: number;
  unread: number;
  position: number;
  recovered?: boolean;
}
export interface SyncData {
  rooms: SyncRoom[];
  unread_total: number;
}

export interface ConnectionAck {
  session_id: string;
  user_id: string;
  heartbeat_interval_ms: number;
  server_time: string;
  protocol: number;
  server_version: string;
}

export interface JoinAck {
  room: string;
  seq: number;
  /** The first page of connected users (at most the server's HERALD_JOIN_MEMBERS_LIMIT). */
  members: Presence[];
  /** The cursor of the next page (`members` / `allMembers`), or null when `members` lists everyone. */
  members_next: string | null;
  missed: Message[];
  has_more: boolean;
}

export interface HeraldEvents {
  /** `idle` → `connecting` → `open` (connection_ack) → `ready` (sync) …; `closed` after `close()`. */
  state: 'idle' | 'connecting' | 'open' | 'ready' | 'closed';
  connected: ConnectionAck;
  sync: SyncData;
  disconnected: { code?: number; reason?: string; willReconnect: boolean; delayMs: number };
  reconnecting: { attempt: number };
  /** Every message of every room once, in seq order per room (your own sends arrive as acks instead). */
  message: Message;
  replay_truncated: { room: string; missing_from: number; missing_to: number };
  /** The server could not resume a room where this client stood: `from..=to` were skipped; page `history` if needed. */
  gap: { room: string; from: number; to: number };
  receipt: { room: string; user: string; seq: number; status: 'delivered' | 'read'; at: string };
  typing: { room: string; user: string; state: 'start' | 'stop' };
  /** Edits, deletes and reactions: once per room change seq, in order, also those made while this client was away (fetched after `sync`). */
  message_edited: { room: string; seq: number; body: Record<string, unknown>; edited_at: string; by: string; change_seq: number };
  message_deleted: { room: string; seq: number; deleted_at: string; by: string; change_seq: number };
  reaction: { room: string; seq: number; user: string; emoji: string; on: boolean; change_seq: number };
  /** A custom event another member sent with `sendEvent` (never stored: only live sessions get it). */
  event: { room: string; from: string; name: string; data: unknown };
  room_presence: { room: string; joins: Presence[]; leaves: Presence[] };
  presence: Presence;
  room_unread: { room: string; unread: number; unread_total: number };
  notification: { id: string; title: string; message: string | null; is_read: boolean; created_at: string; notification_type: string };
  unread_count: { unread_count: number };
  token_refreshed: { expiresAt: string };
  /** Server errors without `ref` (e.g. `token_expired`, a room `unavailable`) and client-side failures. */
  error: HeraldError;
  unknown_frame: { type: string; [k: string]: unknown };
}

export class HeraldError extends Error {
  constructor(code: string, message: string, extra?: Record<string, unknown>);
  /** A server code (docs/protocol.md, Error codes) or one of the client's: `not_connected`, `disconnected`, `timeout`, `closed`, `outbox_full`, `too_large`, `token_refresh_failed`. */
  code: string;
  retryAfterMs?: number;
  room?: string;
  ref?: unknown;
}

export class Backoff {
  constructor(options?: BackoffOptions);
  attempt: number;
  next(): number;
  bounds(): [number, number];
  reset(): void;
}

export class Positions {
  constructor(initial?: Record<string, number>);
  get(room: string): number | undefined;
  accept(room: string, seq: number): boolean;
  sinceParam(): string;
  toJSON(): Record<string, number>;
}

export class HeraldClient {
  constructor(options: HeraldClientOptions);
  readonly state: HeraldEvents['state'];
  readonly userId: string | undefined;
  readonly sessionId: string | undefined;
  /** Last seq held per room; persist it to resume after a restart. */
  readonly positions: Record<string, number>;
  /** Sends not acknowledged yet. */
  readonly outboxSize: number;

  on<K extends keyof HeraldEvents>(type: K, listener: (data: HeraldEvents[K]) => void): () => void;
  once<K extends keyof HeraldEvents>(type: K, listener: (data: HeraldEvents[K]) => void): () => void;
  off<K extends keyof HeraldEvents>(type: K, listener: (data: HeraldEvents[K]) => void): void;

  /** Start (re)connecting until `close()`; resolves with the first `sync`. */
  connect(): Promise<SyncData>;
  close(): void;
  /** Drop the connection and reconnect at once (resuming; the outbox is kept). */
  reconnect(): void;

  send(message: {
    room?: string;
    to?: string;
    kind?: string;
    body: Record<string, unknown>;
    priority?: Priority;
    clientMsgId?: string;
  }): Promise<SendAck>;
  join(room: string, options?: { sinceSeq?: number }): Promise<JoinAck>;
  leave(room: string): Promise<Record<string, never>>;
  typing(room: string, state?: 'start' | 'stop'): Promise<Record<string, never>>;
  /** Replaces the body of your message `seq` (within the server's edit window). */
  edit(room: string, seq: number, body: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Deletes message `seq` (yours, or any as the room's owner), leaving a tombstone. */
  deleteMessage(room: string, seq: number): Promise<Record<string, unknown>>;
  /** Adds (`on`, the default) or takes back a reaction. */
  react(room: string, seq: number, emoji: string, on?: boolean): Promise<Record<string, unknown>>;
  /** Relays `{room, name, data}` to the room's other members; names: 1-64 of `A-Z a-z 0-9 _ . : -`, Herald's own reserved. */
  sendEvent(room: string, name: string, data?: unknown): Promise<Record<string, never>>;
  receipt(room: string, seq: number, status?: 'delivered' | 'read'): Promise<Record<string, never>>;
  setPresence(
    status: 'online' | 'away' | 'busy' | 'invisible',
    options?: { customMessage?: string; customExpiresAt?: string; metadata?: unknown },
  ): Promise<Record<string, never>>;
  history(room: string, options?: { beforeSeq?: number; afterSeq?: number; limit?: number }): Promise<{ messages: Message[]; has_more: boolean }>;
  /** A page of the users connected to a room (members only), in user-id order after `after`; `next` is the following page's cursor, or null. */
  members(room: string, options?: { after?: string | null; limit?: number }): Promise<{ room: string; members: Presence[]; next: string | null }>;
  /** Every connected user after `after` (a join ack's `members_next`), paging `members` until `next` is null. */
  allMembers(room: string, after?: string | null, options?: { limit?: number }): Promise<Presence[]>;
  watch(users: string[]): Promise<{ presence: Presence[] }>;
  unwatch(users: string[]): Promise<{ presence: Presence[] }>;
  ping(): Promise<Record<string, never>>;
  /** Any request frame; rejects with `not_connected` unless connected, `disconnected` if the socket drops first. */
  request(type: string, data?: Record<string, unknown>, options?: { timeoutMs?: number }): Promise<any>;
}
