//! The actors of the engine, one file each.
//!
//! ```text
//!   WsSession ──► RoomSupervisor ──► Room ──► CommitQueue ──► Database (writer, SyncArbiter)
//!      │  ▲            │  ▲            │                          
//!      │  │            │  │            └──────► Database (readers, SyncArbiter)
//!      │  └─ Deliver ──┘  │ PresenceChanged (up), UserRoomsChanged (down)
//!      └──────► PresenceRegistry ──► CommitQueue / Database (readers)
//! ```
//!
//! Sessions talk to the supervisor (rooms) and the registry (presence) through their
//! `SessionPort` (`engine/session_port.rs`), never the whole `Engine`; rooms and the
//! registry push encoded frames back to sessions with `Deliver`. The persistence actors only
//! answer: they never call back into the engine.
//!
//! Imports go one way. The core actors (rooms, supervisor, presence, notifications,
//! persistence, and the session handle they deliver to, `session/handle.rs`) import no
//! engine module: their persistence handles are [`store::Store`]. The engine imports them
//! and wires them. The client sessions (`session/mod.rs`, `socketio_session/`,
//! `notification_socket.rs`, `requests.rs`, `continuity.rs`) sit above the engine and
//! reach it through its `SessionPort`.

pub mod client_session;
pub mod commit_queue;
pub mod continuity;
pub mod database;
pub mod echo_session;
pub mod eio_registry;
pub mod eio_websocket;
pub mod inflight;
pub mod notification_center;
pub mod notification_socket;
pub mod presence_registry;
pub mod requests;
pub mod room;
pub mod room_supervisor;
pub mod session;
pub mod socketio_session;
pub mod store;
pub mod webhook_sender;
