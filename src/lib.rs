//! Herald: an actor-based presence and messaging engine.
//!
//! Clients connect over WebSocket (`/v1/ws`, docs/protocol.md) to message each other, see who
//! is online and typing, and track delivered/read; admins and backends use REST
//! (docs/rest.md). Every connection is a session actor; rooms, presence and persistence are
//! actors of their own (docs/architecture.md).
//!
//! # Layout
//!
//! - [`config`]: settings from `HERALD_*` variables, flags and the config file: `config/mod.rs`
//!   (`Settings` and defaults), `args`, `file`, `show` (`herald config`), `secret`, `hooks`.
//! - [`clock`]: the time source of presence decisions (manual in tests).
//! - [`cluster`]: cluster mode (`HERALD_REDIS_URL`): the `Backplane` actor (the only code
//!   that talks to Redis), the wire events between nodes, a room's seq reorder buffer, and the
//!   other nodes' presence entries (docs/cluster.md).
//! - [`startup`]: `Application::build` wires database, actors and HTTP server: `startup/mod.rs`
//!   (`Application`, start-up errors, listener, signals), `tls`, `server` (the per-worker `App`
//!   and the upgrade hook), `cors`, `rest_limit`.
//! - [`engine`]: the actor handles and the operations on them, shared by sessions, REST and tests:
//!   `engine/mod.rs` (the `Engine` handle, `Store`, `Engine::start`), `session_port` (the
//!   `SessionPort`: everything a client session may ask of the engine; sessions hold it, not the
//!   `Engine`), then one file per concern: `session_start`, `admission`, `requests`
//!   (`execute`), `messaging`, `presence`, `policy` (who may see whom), `queries` (REST/admin
//!   reads, stats), `notifications`, `shutdown`, `device_expiry`.
//! - [`actors`]: `WsSession`, `RoomSupervisor`, `Room`, `PresenceRegistry`, `CommitQueue`, `Database`;
//!   the larger actors are directories with one file per concern (`room_supervisor/`: `admission`,
//!   `sessions`, `routing`, `outbox_sweep`, `queries`; `room/`: `publish`, `lifecycle`,
//!   `membership`, `events`, `notifier`; `presence_registry/`: `sessions`, `queries`, `admin`;
//!   `notification_center/`: `notify`, `read`, `sweep`; `socketio_session/`: `connect`,
//!   `transport`, `wire`; `session/`: `WsSession`, and `handle` for what reaches every session).
//! - [`protocol`]: wire frames of the native protocol: client frames parsed into requests
//!   (`protocol/client.rs`), the typed server frames (`protocol/frames.rs`), each encoded once
//!   for both wires, and the objects inside them (`protocol.rs`).
//! - [`domain`]: validated ids and values.
//! - [`rate`]: token buckets and per-session request limits.
//! - [`admission`]: client addresses (through trusted proxies), connection rates, and the
//!   ticket holding a session's place under the per-user and per-address caps.
//! - [`recovery`]: Socket.IO connection-state recovery (`pid`, offsets) over the room streams.
//! - [`readiness`]: the briefly cached, single-flight `/readyz` check.
//! - [`auth`]: JWT verification and minting: `auth/mod.rs` (claims, refusals, the caller),
//!   `keys`, `secret` (the secret file, key warnings), `extractor` (where a token is read).
//! - [`db`]: Diesel schema, models, queries and migrations (SQLite and PostgreSQL).
//! - [`routes`]: HTTP handlers.
//! - [`socketio`]: Engine.IO v4 / Socket.IO v5 wire formats.
//! - [`error`]: typed errors and their wire codes.
//! - [`metrics`]: Prometheus metrics and rates.
//! - [`notification`]: notification rules: preferences, quiet hours, mentions.
//! - [`stream`]: per-room continuity of a session's `message` frames (replay, live, catch-up).
//! - [`unread`]: per-session unread counts and `room_unread` frames.
//! - [`wsframe`]: RFC 6455 message reassembly and close codes.
//! - [`ws_transport`]: upgraded WebSocket connections served without actix-http's buffers.
//! - [`testkit`]: drive the engine from tests without sockets.
//!
//! ```text
//!   WebSocket ─► WsSession ─► RoomSupervisor ─► Room ─► CommitQueue ─► Database (1 writer)
//!                   │   ▲           ▲             │
//!                   │   └─ Deliver ─┼─────────────┘ (encoded once, shared)
//!                   └─► PresenceRegistry ─► RoomSupervisor (room_presence)
//!   REST ──────────► Engine ─► (same actors)        Database (N readers)
//! ```

pub mod actors;
pub mod admission;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod db;
pub mod domain;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod notification;
pub mod protocol;
pub mod rate;
pub mod readiness;
pub mod recovery;
pub mod routes;
pub mod socketio;
pub mod startup;
pub mod stream;
pub mod testkit;
pub mod unread;
pub mod webhook;
pub mod ws_deflate;
pub mod ws_transport;
pub mod ws_wire;
pub mod wsframe;
