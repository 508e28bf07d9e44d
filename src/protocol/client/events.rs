//! Custom events (docs/protocol.md "event"): the `event` frame, event names (with Herald's
//! own reserved), and a Socket.IO event outside Herald's vocabulary read as a custom event
//! for the room its payload names.

use serde::Deserialize;
use serde_json::Value;

use super::{data, ClientRequest, ErrorCode, InvalidInput, ParseLimits, RequestError, RoomId};

#[derive(Deserialize)]
struct EventData {
    room: String,
    name: String,
    #[serde(default)]
    data: Value,
}

/// The `event` frame.
pub(super) fn parse(
    kind: &str,
    v: Value,
    limits: ParseLimits,
) -> Result<ClientRequest, RequestError> {
    let d: EventData = data(kind, v)?;
    custom_event(&d.room, &d.name, d.data, limits)
}

/// The names a custom event may not take: every frame and event name of Herald's own
/// vocabulary (client and server, native and Socket.IO, and the seed aliases), so that a
/// Socket.IO client listening for one of them never receives another client's event.
pub const RESERVED_EVENT_NAMES: &[&str] = &[
    "accept",
    "ack",
    "auth",
    "block",
    "changes",
    "connect",
    "connect_error",
    "connection_ack",
    "decline",
    "delete",
    "disconnect",
    "disconnecting",
    "edit",
    "error",
    "event",
    "history",
    "invitation",
    "invite",
    "join",
    "join_room",
    "leave",
    "leave_room",
    "members",
    "message",
    "message_deleted",
    "message_edited",
    "new_message",
    "newListener",
    "notification",
    "ping",
    "pong",
    "presence",
    "react",
    "reaction",
    "receipt",
    "removeListener",
    "replay_truncated",
    "report",
    "room_presence",
    "room_unread",
    "send",
    "send_message",
    "sync",
    "typing",
    "unblock",
    "unread_count",
    "unwatch",
    "watch",
];

/// Longest custom event name.
pub const MAX_EVENT_NAME: usize = 64;

/// The name of a custom event: 1 to [`MAX_EVENT_NAME`] bytes of ASCII letters, digits and
/// `_ . : -`, not one of [`RESERVED_EVENT_NAMES`]. The charset keeps it safe to splice into
/// JSON and Socket.IO packets as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventName(String);

impl EventName {
    pub fn parse(name: &str) -> Result<EventName, InvalidInput> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
        if name.is_empty() || name.len() > MAX_EVENT_NAME || !name.chars().all(ok_char) {
            return Err(InvalidInput(format!(
                "event name must be 1..={MAX_EVENT_NAME} characters of A-Z a-z 0-9 _ . : -, not {name:?}"
            )));
        }
        if RESERVED_EVENT_NAMES.contains(&name) {
            return Err(InvalidInput(format!(
                "event name {name:?} is reserved by Herald"
            )));
        }
        Ok(EventName(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A custom event request from its parts (the native `event` frame, or a Socket.IO event
/// under its own name): a valid name, a room, and `data` within the size limit.
pub fn custom_event(
    room: &str,
    name: &str,
    data: Value,
    limits: ParseLimits,
) -> Result<ClientRequest, RequestError> {
    let name = EventName::parse(name)?;
    let room = RoomId::parse(room)?;
    let size = serde_json::to_string(&data).map_or(usize::MAX, |t| t.len());
    if size > limits.max_event_bytes {
        return Err(RequestError::TooLarge(format!(
            "event data is larger than {} bytes",
            limits.max_event_bytes
        )));
    }
    Ok(ClientRequest::Event { room, name, data })
}

/// A custom event named by a Socket.IO client: the event's own name, and its payload, an
/// object naming the `room`; the rest of the object is the event's data.
pub fn parse_socketio_custom_event(
    name: &str,
    payload: Value,
    limits: ParseLimits,
) -> Result<ClientRequest, (ErrorCode, String)> {
    let Value::Object(mut fields) = payload else {
        return Err((
            ErrorCode::InvalidData,
            format!(
                "event {name:?} is not Herald's: a custom event needs an object naming its room"
            ),
        ));
    };
    let room = match fields.remove("room") {
        Some(Value::String(r)) => r,
        _ => {
            return Err((
                ErrorCode::InvalidData,
                format!(
                    "event {name:?} is not Herald's: a custom event needs `room` (a room id) in its payload"
                ),
            ))
        }
    };
    custom_event(&room, name, Value::Object(fields), limits).map_err(RequestError::coded)
}
