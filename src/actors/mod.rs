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
