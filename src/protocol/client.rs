//! Client frames of `/v1/ws` (docs/protocol.md "Client frames"): the envelope, the parse
//! limits, and parsing wire input into typed, validated [`ClientRequest`]s (and the `since`
//! resume point of a connect).

use super::*;

mod changes;
mod consent;
mod events;
pub use changes::emoji;
pub use consent::ConsentRequest;
pub use events::{
    custom_event, parse_socketio_custom_event, EventName, MAX_EVENT_NAME, RESERVED_EVENT_NAMES,
};

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_text_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Largest `data` of a custom `event`, as JSON text.
    pub max_event_bytes: usize,
    /// Longest reaction `emoji`.
    pub max_emoji_bytes: usize,
}

impl ParseLimits {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        ParseLimits {
            max_text_bytes: s.max_text_bytes,
            max_json_depth: s.limits.max_json_depth,
            max_event_bytes: s.limits.max_event_bytes,
            max_emoji_bytes: s.limits.max_emoji_bytes,
        }
    }
}

/// The nesting depth of a JSON text (brackets outside strings), stopping early past `max`.
pub fn json_depth_exceeds(text: &str, max: usize) -> bool {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A parsed client frame: its `ref` (echoed in the reply) and the request.
#[derive(Debug, Clone)]
pub struct ClientFrame {
    pub reference: Option<Value>,
    pub request: ClientRequest,
}

/// A client frame that could not be parsed; `reference` is kept when it could be read.
#[derive(Debug, Clone)]
pub struct FrameError {
    pub reference: Option<Value>,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum SendTarget {
    Room(RoomId),
    User(UserId),
}

#[derive(Debug, Clone)]
pub struct SendRequest {
    pub target: SendTarget,
    pub kind: MessageKind,
    pub body: MessageBody,
    pub priority: Priority,
    pub client_msg_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TypingState {
    Start,
    Stop,
}

/// Default and maximum page size of `history`.
pub const HISTORY_DEFAULT_LIMIT: i64 = 50;
pub const HISTORY_MAX_LIMIT: i64 = 100;
/// Default and maximum page size of `members` (the maximum also bounds
/// `HERALD_JOIN_MEMBERS_LIMIT`).
pub const MEMBERS_DEFAULT_LIMIT: usize = 100;
pub const MEMBERS_MAX_LIMIT: usize = 1000;

/// What a client asks for.
#[derive(Debug, Clone)]
pub enum ClientRequest {
    Join {
        room: RoomId,
        since_seq: Option<i64>,
    },
    Leave {
        room: RoomId,
    },
    Send(SendRequest),
    Typing {
        room: RoomId,
        state: TypingState,
    },
    Receipt {
        room: RoomId,
        seq: i64,
        status: ReceiptStatus,
    },
    Presence {
        status: ChosenStatus,
        custom_message: Option<CustomMessage>,
        /// Epoch milliseconds at which the server clears `custom_message`.
        custom_expires_at: Option<Millis>,
        metadata: Option<Value>,
    },
    History {
        room: RoomId,
        before_seq: Option<i64>,
        after_seq: Option<i64>,
        limit: i64,
    },
    /// A page of the users connected to a room, in user-id order after `after`.
    Members {
        room: RoomId,
        after: Option<UserId>,
        limit: usize,
    },
    Watch {
        users: Vec<UserId>,
    },
    Unwatch {
        users: Vec<UserId>,
    },
    Auth {
        token: String,
    },
    Ping,
    /// Replace the body of one's own message.
    Edit {
        room: RoomId,
        seq: i64,
        body: Value,
    },
    /// Delete a message (one's own, or any as the room's owner), leaving a tombstone.
    Delete {
        room: RoomId,
        seq: i64,
    },
    /// Add or take back a reaction.
    React {
        room: RoomId,
        seq: i64,
        emoji: String,
        on: bool,
    },
    /// A page of the room's change log after `after`.
    Changes {
        room: RoomId,
        after: i64,
        limit: i64,
    },
    /// A custom event relayed to the room's other members, never stored.
    Event {
        room: RoomId,
        name: EventName,
        data: Value,
    },
    /// `invite`, `accept`, `decline`, `block`, `unblock`, `report` (`client/consent.rs`).
    Consent(ConsentRequest),
}

impl ClientRequest {
    /// The frame type this request came as.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientRequest::Join { .. } => "join",
            ClientRequest::Leave { .. } => "leave",
            ClientRequest::Send(_) => "send",
            ClientRequest::Typing { .. } => "typing",
            ClientRequest::Receipt { .. } => "receipt",
            ClientRequest::Presence { .. } => "presence",
            ClientRequest::History { .. } => "history",
            ClientRequest::Members { .. } => "members",
            ClientRequest::Watch { .. } => "watch",
            ClientRequest::Unwatch { .. } => "unwatch",
            ClientRequest::Auth { .. } => "auth",
            ClientRequest::Ping => "ping",
            ClientRequest::Event { .. } => "event",
            ClientRequest::Edit { .. } => "edit",
            ClientRequest::Delete { .. } => "delete",
            ClientRequest::React { .. } => "react",
            ClientRequest::Changes { .. } => "changes",
            ClientRequest::Consent(c) => c.kind(),
        }
    }
}

/// Parses the `data` of a request of type `kind` (Socket.IO events carry type and data
/// separately). Errors come with their code.
pub fn parse_request_data(
    kind: &str,
    data: Value,
    limits: ParseLimits,
) -> Result<ClientRequest, (ErrorCode, String)> {
    match parse_request(kind, data, limits) {
        Err(RequestError::Unknown) => Err((
            ErrorCode::UnknownType,
            format!("unknown frame type {kind:?}"),
        )),
        other => other.map_err(RequestError::coded),
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(rename = "ref")]
    reference: Option<Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
struct JoinData {
    room: String,
    since_seq: Option<i64>,
}
#[derive(Deserialize)]
struct RoomData {
    room: String,
}
#[derive(Deserialize)]
struct SendData {
    room: Option<String>,
    to: Option<String>,
    kind: String,
    body: Value,
    priority: Option<String>,
    client_msg_id: Option<String>,
}
#[derive(Deserialize)]
struct TypingData {
    room: String,
    state: TypingState,
}
#[derive(Deserialize)]
struct ReceiptData {
    room: String,
    seq: i64,
    status: ReceiptStatus,
}
#[derive(Deserialize)]
struct PresenceData {
    status: String,
    custom_message: Option<String>,
    custom_expires_at: Option<String>,
    metadata: Option<Value>,
}
#[derive(Deserialize)]
struct HistoryData {
    room: String,
    before_seq: Option<i64>,
    after_seq: Option<i64>,
    limit: Option<i64>,
}
#[derive(Deserialize)]
struct MembersData {
    room: String,
    after: Option<String>,
    limit: Option<i64>,
}
#[derive(Deserialize)]
struct UsersData {
    users: Vec<String>,
}
#[derive(Deserialize)]
struct AuthData {
    token: String,
}
/// Every client frame type (on Socket.IO, event names that are requests).
pub const REQUEST_TYPES: &[&str] = &[
    "join", "leave", "send", "typing", "receipt", "presence", "history", "members", "watch",
    "unwatch", "auth", "ping", "event", "edit", "delete", "react", "changes", "invite", "accept",
    "decline", "block", "unblock", "report",
];

/// Longest accepted `client_msg_id`.
pub const MAX_CLIENT_MSG_ID: usize = 128;
/// Longest custom status message (the rule is [`CustomMessage::parse`]'s).
pub use crate::domain::MAX_CUSTOM_MESSAGE;
/// Most users one `watch` may name.
pub const MAX_WATCH_BATCH: usize = 1000;

/// Parses and validates one text frame.
pub fn parse_client_frame(text: &str, limits: ParseLimits) -> Result<ClientFrame, FrameError> {
    let err = |reference: Option<Value>, code, message: String| FrameError {
        reference,
        code,
        message,
    };
    // Checked before parsing: a deeply nested frame must not cost a deep recursion.
    if json_depth_exceeds(text, limits.max_json_depth) {
        return Err(err(
            None,
            ErrorCode::TooLarge,
            format!("JSON nested deeper than {}", limits.max_json_depth),
        ));
    }
    let env: Envelope = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => serde_json::from_value(Value::Object(map))
            .map_err(|e| err(None, ErrorCode::InvalidJson, format!("invalid frame: {e}")))?,
        Ok(_) => {
            return Err(err(
                None,
                ErrorCode::InvalidJson,
                "a frame must be a JSON object".into(),
            ))
        }
        Err(e) => {
            return Err(err(
                None,
                ErrorCode::InvalidJson,
                format!("invalid JSON: {e}"),
            ))
        }
    };
    let reference = env.reference;
    let kind = match env.kind {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(err(
                reference,
                ErrorCode::InvalidData,
                "`type` must be a string".into(),
            ))
        }
        None => {
            return Err(err(
                reference,
                ErrorCode::InvalidData,
                "`type` is required".into(),
            ))
        }
    };
    let data = env.data.unwrap_or(Value::Object(Default::default()));
    match parse_request(&kind, data, limits) {
        Ok(request) => Ok(ClientFrame { reference, request }),
        Err(RequestError::Unknown) => Err(err(
            reference,
            ErrorCode::UnknownType,
            format!("unknown frame type {kind:?}"),
        )),
        Err(RequestError::Invalid(m)) => Err(err(reference, ErrorCode::InvalidData, m)),
        Err(RequestError::TooLarge(m)) => Err(err(reference, ErrorCode::TooLarge, m)),
    }
}

pub enum RequestError {
    Unknown,
    Invalid(String),
    TooLarge(String),
}

impl RequestError {
    fn coded(self) -> (ErrorCode, String) {
        match self {
            RequestError::Unknown => (ErrorCode::UnknownType, "unknown frame type".into()),
            RequestError::Invalid(m) => (ErrorCode::InvalidData, m),
            RequestError::TooLarge(m) => (ErrorCode::TooLarge, m),
        }
    }
}

impl From<InvalidInput> for RequestError {
    fn from(e: InvalidInput) -> Self {
        RequestError::Invalid(e.0)
    }
}

impl From<StatusError> for RequestError {
    fn from(e: StatusError) -> Self {
        RequestError::Invalid(e.to_string())
    }
}

fn data<T: for<'de> Deserialize<'de>>(kind: &str, v: Value) -> Result<T, RequestError> {
    serde_json::from_value(v)
        .map_err(|e| RequestError::Invalid(format!("invalid data for {kind}: {e}")))
}

fn users(list: Vec<String>) -> Result<Vec<UserId>, RequestError> {
    if list.len() > MAX_WATCH_BATCH {
        return Err(RequestError::Invalid(format!(
            "at most {MAX_WATCH_BATCH} users per request"
        )));
    }
    list.iter()
        .map(|u| UserId::parse(u).map_err(Into::into))
        .collect()
}

fn parse_request(kind: &str, v: Value, limits: ParseLimits) -> Result<ClientRequest, RequestError> {
    Ok(match kind {
        "ping" => ClientRequest::Ping,
        "join" => {
            let d: JoinData = data(kind, v)?;
            if d.since_seq.is_some_and(|s| s < 0) {
                return Err(RequestError::Invalid("since_seq must be >= 0".into()));
            }
            ClientRequest::Join {
                room: RoomId::parse(&d.room)?,
                since_seq: d.since_seq,
            }
        }
        "leave" => ClientRequest::Leave {
            room: RoomId::parse(&data::<RoomData>(kind, v)?.room)?,
        },
        "send" => {
            let d: SendData = data(kind, v)?;
            let target = match (d.room, d.to) {
                (Some(r), None) => SendTarget::Room(RoomId::parse(&r)?),
                (None, Some(u)) => SendTarget::User(UserId::parse(&u)?),
                _ => {
                    return Err(RequestError::Invalid(
                        "send needs exactly one of `room` or `to`".into(),
                    ))
                }
            };
            if d.body
                .get("text")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.len() > limits.max_text_bytes)
            {
                return Err(RequestError::TooLarge(format!(
                    "body.text is longer than {} bytes",
                    limits.max_text_bytes
                )));
            }
            let msg_kind = MessageKind::parse(&d.kind).ok_or_else(|| {
                RequestError::Invalid(format!("unknown message kind {:?}", d.kind))
            })?;
            let body = MessageBody::parse(msg_kind, &d.body, limits.max_text_bytes)?;
            let priority = match d.priority.as_deref() {
                None => Priority::Normal,
                Some(p) => Priority::parse(p).ok_or_else(|| {
                    RequestError::Invalid(format!(
                        "priority must be low, normal, high or urgent, not {p:?}"
                    ))
                })?,
            };
            if let Some(id) = &d.client_msg_id {
                if id.is_empty() || id.len() > MAX_CLIENT_MSG_ID {
                    return Err(RequestError::Invalid(format!(
                        "client_msg_id must be 1..={MAX_CLIENT_MSG_ID} bytes"
                    )));
                }
            }
            ClientRequest::Send(SendRequest {
                target,
                kind: msg_kind,
                body,
                priority,
                client_msg_id: d.client_msg_id,
            })
        }
        "typing" => {
            let d: TypingData = data(kind, v)?;
            ClientRequest::Typing {
                room: RoomId::parse(&d.room)?,
                state: d.state,
            }
        }
        "receipt" => {
            let d: ReceiptData = data(kind, v)?;
            if d.seq < 1 {
                return Err(RequestError::Invalid("seq must be >= 1".into()));
            }
            ClientRequest::Receipt {
                room: RoomId::parse(&d.room)?,
                seq: d.seq,
                status: d.status,
            }
        }
        "presence" => {
            let d: PresenceData = data(kind, v)?;
            let status = ChosenStatus::parse(&d.status)?;
            let custom_message = d
                .custom_message
                .as_deref()
                .map(CustomMessage::parse)
                .transpose()?;
            if d.metadata
                .as_ref()
                .is_some_and(|m| m.to_string().len() > 4096)
            {
                return Err(RequestError::Invalid(
                    "metadata is larger than 4096 bytes".into(),
                ));
            }
            let custom_expires_at = match d.custom_expires_at.as_deref() {
                None => None,
                Some(t) => Some(
                    chrono::DateTime::parse_from_rfc3339(t)
                        .map_err(|e| {
                            RequestError::Invalid(format!(
                                "custom_expires_at must be RFC 3339: {e}"
                            ))
                        })?
                        .timestamp_millis(),
                ),
            };
            ClientRequest::Presence {
                status,
                custom_message,
                custom_expires_at,
                metadata: d.metadata,
            }
        }
        "history" => {
            let d: HistoryData = data(kind, v)?;
            let limit = d.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
            if limit < 1 {
                return Err(RequestError::Invalid("limit must be >= 1".into()));
            }
            ClientRequest::History {
                room: RoomId::parse(&d.room)?,
                before_seq: d.before_seq,
                after_seq: d.after_seq,
                limit: limit.min(HISTORY_MAX_LIMIT),
            }
        }
        "members" => {
            let d: MembersData = data(kind, v)?;
            let limit = d.limit.unwrap_or(MEMBERS_DEFAULT_LIMIT as i64);
            if limit < 1 {
                return Err(RequestError::Invalid("limit must be >= 1".into()));
            }
            ClientRequest::Members {
                room: RoomId::parse(&d.room)?,
                after: d.after.as_deref().map(UserId::parse).transpose()?,
                limit: (limit as u64).min(MEMBERS_MAX_LIMIT as u64) as usize,
            }
        }
        "watch" => ClientRequest::Watch {
            users: users(data::<UsersData>(kind, v)?.users)?,
        },
        "unwatch" => ClientRequest::Unwatch {
            users: users(data::<UsersData>(kind, v)?.users)?,
        },
        "auth" => ClientRequest::Auth {
            token: data::<AuthData>(kind, v)?.token,
        },
        "event" => events::parse(kind, v, limits)?,
        _ if changes::KINDS.contains(&kind) => return changes::parse(kind, v, limits),
        _ => return consent::parse(kind, v).unwrap_or(Err(RequestError::Unknown)),
    })
}

/// A resume point as a client gives it at connect: `<room>:<seq>` pairs separated by commas
/// (the seq follows the room id's last colon), at most `max_rooms` of them.
pub fn parse_since(
    s: &str,
    max_rooms: usize,
) -> Result<std::collections::HashMap<RoomId, i64>, InvalidInput> {
    let mut since = std::collections::HashMap::new();
    for pair in s.split(',').filter(|p| !p.is_empty()) {
        if since.len() >= max_rooms {
            return Err(InvalidInput(format!(
                "since names more than {max_rooms} rooms"
            )));
        }
        let bad = || {
            InvalidInput(format!(
                "invalid since entry {pair:?}: expected <room>:<seq>"
            ))
        };
        let (room, seq) = pair.rsplit_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.parse().map_err(|_| bad())?;
        if seq < 0 {
            return Err(bad());
        }
        since.insert(RoomId::parse(room)?, seq);
    }
    Ok(since)
}

#[cfg(test)]
mod tests;
