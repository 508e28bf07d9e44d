//! The native WebSocket protocol v1 (docs/protocol.md): client frames parsed into typed,
//! validated requests, and (in `frames.rs`) the typed server frames and their encoding.
//!
//! Every frame is one JSON text frame `{"type", "ref", "data"}`. Parsing turns wire input into
//! domain values before anything reaches an actor; encoding happens once per frame (a
//! broadcast is encoded once and shared by all recipients).

mod client;
mod frames;
mod hidden;

pub use client::*;
pub use frames::*;
pub use hidden::HiddenUsers;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::db::models::StoredMessage;
use crate::domain::{
    rfc3339, ChosenStatus, CustomMessage, InvalidInput, MessageBody, MessageKind, Millis, Priority,
    ReceiptStatus, RoomId, StatusError, UserId, VisibleStatus,
};
use crate::error::ErrorCode;

/// The version of the native protocol on `/v1/ws`, sent in `connection_ack` as `protocol`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Close codes the server uses (reason text accompanies each; docs/protocol.md lists them).
pub mod close_code {
    /// Normal closure: the session ended (an Engine.IO WebSocket whose session closed).
    pub const NORMAL: u16 = 1000;
    /// Server shutting down; reconnect elsewhere or later.
    pub const GOING_AWAY: u16 = 1001;
    /// WebSocket protocol violation (RFC 6455 framing).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Abusive client (policy violation).
    pub const POLICY: u16 = 1008;
    /// Message larger than the configured limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot serve the session now (storage unavailable); reconnect later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// An admin disconnected the user.
    pub const ADMIN_DISCONNECT: u16 = 4000;
    /// Authentication failed or the token expired without a refresh.
    pub const AUTH_FAILED: u16 = 4001;
    /// The client did not read fast enough and its outbox overflowed; reconnect and sync.
    pub const SLOW_CONSUMER: u16 = 4008;
}

// ---------------------------------------------------------------------------------------
// Objects inside server frames (the frames themselves: [`frames`])

/// The message object of SPEC section 2.
#[derive(Serialize)]
pub struct MessageObject<'a> {
    pub message_id: &'a str,
    pub room: &'a str,
    pub seq: i64,
    pub from: &'a str,
    pub kind: &'a str,
    pub body: &'a RawValue,
    pub priority: &'a str,
    pub client_msg_id: Option<&'a str>,
    pub created_at: String,
    /// Set once the body was edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// Set on a deleted message's tombstone (its `body` is `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// Reaction counts with `me` (in `history` pages; absent when there are none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub reactions: &'a [crate::db::models::ReactionCount],
}

impl<'a> MessageObject<'a> {
    pub fn new(m: &'a StoredMessage) -> Self {
        // Bodies are stored as validated JSON; fall back to null rather than fail a frame.
        let body: &RawValue = serde_json::from_str(&m.body).unwrap_or_else(|_| null_raw());
        MessageObject {
            message_id: &m.id,
            room: m.room.as_str(),
            seq: m.seq,
            from: m.from.as_str(),
            kind: m.kind.as_str(),
            body,
            priority: m.priority.as_str(),
            client_msg_id: m.client_msg_id.as_deref(),
            created_at: rfc3339(m.created_at),
            edited_at: m.edited_at.map(rfc3339),
            deleted_at: m.deleted_at.map(rfc3339),
            reactions: &m.reactions,
        }
    }
}

pub(crate) fn null_raw() -> &'static RawValue {
    static NULL: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| RawValue::from_string("null".into()).unwrap_or_default())
}

pub fn message_objects(ms: &[StoredMessage]) -> Vec<MessageObject<'_>> {
    ms.iter().map(MessageObject::new).collect()
}

/// The ack of a `send`.
#[derive(Debug, Clone, Serialize)]
pub struct SendAck {
    pub message_id: String,
    pub room: String,
    pub seq: i64,
    pub created_at: String,
    pub status: &'static str,
    /// True when this answers a retry and nothing new was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl SendAck {
    pub fn of(m: &StoredMessage, duplicate: bool) -> Self {
        SendAck {
            message_id: m.id.clone(),
            room: m.room.as_str().to_owned(),
            seq: m.seq,
            created_at: rfc3339(m.created_at),
            status: "sent",
            duplicate,
        }
    }
}

/// The presence object of SPEC section 2.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PresenceView {
    pub user: String,
    pub status: VisibleStatus,
    pub custom_message: Option<CustomMessage>,
    pub metadata: Option<Value>,
    pub last_seen: Option<String>,
    pub devices: usize,
}

impl PresenceView {
    pub fn offline(user: &str, last_seen: Option<Millis>) -> Self {
        PresenceView {
            user: user.to_owned(),
            status: VisibleStatus::Offline,
            custom_message: None,
            metadata: None,
            last_seen: last_seen.map(rfc3339),
            devices: 0,
        }
    }
}
