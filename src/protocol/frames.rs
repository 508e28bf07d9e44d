//! The server frames of `/v1/ws` (docs/protocol.md "Server frames"): one typed variant per
//! frame type, and their encoding.
//!
//! A frame is serialized once, into an [`EncodedFrame`]: the native text
//! `{"type":"<name>","data":<data>}` plus a view of its `data` (a slice of the same bytes),
//! from which the Socket.IO event `42["<name>",<data>]` is one concatenation away
//! ([`crate::socketio::frame_event`]). The same buffer holds the RFC 6455 frame header right
//! before the text, so the frame on the wire is a view too, and the permessage-deflate form
//! is made on first use and kept. A broadcast encodes once and every recipient shares all of
//! it: cloning an `EncodedFrame` bumps one reference count.
//!
//! Field order is part of the wire (tests compare exact JSON): the data structs declare their
//! fields in the order the frames have always had (alphabetical where they used to be built
//! as `json!` objects).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use actix_web::web::Bytes;

use bytestring::ByteString;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{MessageObject, PresenceView, TypingState};
use crate::domain::{RoomId, UserId};
use crate::error::{EngineError, ErrorCode};
use crate::ws_wire::{self, SharedText, MAX_HEADER};

mod consent;
pub use consent::InvitationData;

/// A frame the server sends on `/v1/ws`.
pub enum ServerFrame<'a> {
    /// First frame of every connection.
    ConnectionAck(ConnectionAck<'a>),
    /// Second frame: rooms, watermarks, unread counts.
    Sync(Sync<'a>),
    /// Success reply to a client frame.
    Ack {
        reference: Option<&'a Value>,
        data: &'a Value,
    },
    /// Failure reply to a client frame, a room error, or the token-expiry warning; its fields
    /// sit at the top level of the native frame.
    Error {
        reference: Option<&'a Value>,
        body: ErrorBody<'a>,
    },
    /// Reply to `ping`.
    Pong {
        reference: Option<&'a Value>,
    },
    Message(MessageObject<'a>),
    ReplayTruncated(ReplayTruncated<'a>),
    Receipt(Receipt<'a>),
    Typing(Typing<'a>),
    RoomPresence(RoomPresence<'a>),
    Presence(&'a PresenceView),
    RoomUnread(RoomUnread<'a>),
    Notification(Notification<'a>),
    UnreadCount(UnreadCount),
    /// A custom event of a room member, relayed as it came (never stored).
    Event(CustomEvent<'a>),
    /// An entry of a room's change log: an edit, a delete, a reaction.
    MessageEdited(MessageEdited<'a>),
    MessageDeleted(MessageDeleted<'a>),
    Reaction(Reaction<'a>),
    /// An invitation to a private room (`frames/consent.rs`).
    Invitation(InvitationData<'a>),
}

/// `connection_ack` data.
#[derive(Serialize)]
pub struct ConnectionAck<'a> {
    pub heartbeat_interval_ms: u64,
    pub protocol: u32,
    pub server_time: String,
    pub server_version: &'static str,
    pub session_id: String,
    pub user_id: &'a UserId,
}

/// `sync` data.
#[derive(Serialize)]
pub struct Sync<'a> {
    pub rooms: Vec<SyncRoom<'a>>,
    pub unread_total: i64,
}

/// One room of `sync`.
#[derive(Serialize)]
pub struct SyncRoom<'a> {
    /// The room's latest change seq: fetch what changed since the one you hold (`changes`).
    pub change_seq: i64,
    pub delivered_seq: i64,
    /// Where the room's stream continues (rooms with a replay only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    pub read_seq: i64,
    /// Whether the client's resume point was honoured (rooms it named only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// The first seq whose body retention may still hold (older ones are tombstones).
    pub retained_from: i64,
    pub room: &'a str,
    pub seq: i64,
    pub unread: i64,
}

/// The fields of an `error` frame besides `type` and `ref`.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'static str,
    pub error: Cow<'a, str>,
    /// Set when the server sheds load: wait this long before retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Set on an error about a room rather than a request (no `ref`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
}

/// `replay_truncated` data: messages `missing_from..=missing_to` are left out of the stream.
#[derive(Serialize)]
pub struct ReplayTruncated<'a> {
    pub missing_from: i64,
    pub missing_to: i64,
    pub room: &'a RoomId,
}

/// `receipt` data.
#[derive(Serialize)]
pub struct Receipt<'a> {
    pub at: String,
    pub room: &'a RoomId,
    pub seq: i64,
    pub status: &'static str,
    pub user: &'a UserId,
}

/// `typing` data.
#[derive(Serialize)]
pub struct Typing<'a> {
    pub room: &'a RoomId,
    pub state: TypingState,
    pub user: &'a UserId,
}

/// `room_presence` data: presence objects sorted by user.
#[derive(Serialize)]
pub struct RoomPresence<'a> {
    pub joins: &'a [PresenceView],
    pub leaves: &'a [PresenceView],
    pub room: &'a RoomId,
}

/// `room_unread` data.
#[derive(Serialize)]
pub struct RoomUnread<'a> {
    pub room: &'a RoomId,
    pub unread: i64,
    pub unread_total: i64,
}

/// `notification` data (the notification socket's shape).
#[derive(Serialize)]
pub struct Notification<'a> {
    pub created_at: String,
    pub id: &'a str,
    pub is_read: bool,
    pub message: &'a str,
    pub notification_type: &'a str,
    pub title: &'a str,
}

/// `event` data: a custom event `name` that `from` sent to `room`.
#[derive(Serialize)]
/// `name` is serialized first: the Socket.IO event name is read back from the front of the
/// data ([`EncodedFrame::sio_name`]), so no frame carries a second copy of it.
pub struct CustomEvent<'a> {
    pub name: &'a str,
    pub data: &'a Value,
    pub from: &'a UserId,
    pub room: &'a RoomId,
}

/// `message_edited` data.
#[derive(Serialize)]
pub struct MessageEdited<'a> {
    pub body: &'a RawValue,
    pub by: &'a UserId,
    pub change_seq: i64,
    pub edited_at: String,
    pub room: &'a RoomId,
    pub seq: i64,
}

/// `message_deleted` data.
#[derive(Serialize)]
pub struct MessageDeleted<'a> {
    pub by: &'a UserId,
    pub change_seq: i64,
    pub deleted_at: String,
    pub room: &'a RoomId,
    pub seq: i64,
}

/// `reaction` data.
#[derive(Serialize)]
pub struct Reaction<'a> {
    pub change_seq: i64,
    pub emoji: &'a str,
    pub on: bool,
    pub room: &'a RoomId,
    pub seq: i64,
    pub user: &'a UserId,
}

/// `unread_count` data.
#[derive(Serialize)]
pub struct UnreadCount {
    pub unread_count: i64,
}

impl<'a> ServerFrame<'a> {
    /// The frame's `type` (and Socket.IO event name).
    /// The types whose frame is `{"type","data"}` and nothing else: the ones that can
    /// cross the cluster backplane (never `ack`, `error` or `pong`, which answer a request).
    pub const DATA_FRAME_NAMES: [&'static str; 16] = [
        "connection_ack",
        "sync",
        "message",
        "replay_truncated",
        "receipt",
        "typing",
        "room_presence",
        "presence",
        "room_unread",
        "notification",
        "unread_count",
        "event",
        "message_edited",
        "message_deleted",
        "reaction",
        "invitation",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ServerFrame::ConnectionAck(_) => "connection_ack",
            ServerFrame::Sync(_) => "sync",
            ServerFrame::Ack { .. } => "ack",
            ServerFrame::Error { .. } => "error",
            ServerFrame::Pong { .. } => "pong",
            ServerFrame::Message(_) => "message",
            ServerFrame::ReplayTruncated(_) => "replay_truncated",
            ServerFrame::Receipt(_) => "receipt",
            ServerFrame::Typing(_) => "typing",
            ServerFrame::RoomPresence(_) => "room_presence",
            ServerFrame::Presence(_) => "presence",
            ServerFrame::RoomUnread(_) => "room_unread",
            ServerFrame::Notification(_) => "notification",
            ServerFrame::UnreadCount(_) => "unread_count",
            ServerFrame::Event(_) => "event",
            ServerFrame::MessageEdited(_) => "message_edited",
            ServerFrame::MessageDeleted(_) => "message_deleted",
            ServerFrame::Reaction(_) => "reaction",
            ServerFrame::Invitation(_) => "invitation",
        }
    }

    /// `{"type":"error","ref":R,"code":C,"error":M}`.
    pub fn error(reference: Option<&'a Value>, code: ErrorCode, message: &'a str) -> Self {
        ServerFrame::Error {
            reference,
            body: ErrorBody {
                code: code.as_str(),
                error: message.into(),
                retry_after_ms: None,
                room: None,
            },
        }
    }

    /// `{"type":"error","code":C,"error":M,"room":R}`: an error about a room the session was
    /// subscribed to, not about a request (so without `ref`).
    pub fn room_error(room: &'a RoomId, code: ErrorCode, message: &'a str) -> Self {
        ServerFrame::Error {
            reference: None,
            body: ErrorBody {
                code: code.as_str(),
                error: message.into(),
                retry_after_ms: None,
                room: Some(room.as_str()),
            },
        }
    }

    /// The `error` frame of an engine error; when the server asks for a pause (a full commit
    /// queue) it carries `retry_after_ms` at the top level too.
    pub fn engine_error(reference: Option<&'a Value>, e: &EngineError) -> Self {
        ServerFrame::Error {
            reference,
            body: ErrorBody {
                code: e.code().as_str(),
                error: e.to_string().into(),
                retry_after_ms: e.retry_after_ms(),
                room: None,
            },
        }
    }

    /// `typing` for `user` in `room`: the one builder of the frame (typing start, stop and
    /// the expiry sweep).
    pub fn typing(room: &'a RoomId, user: &'a UserId, state: TypingState) -> EncodedFrame {
        ServerFrame::Typing(Typing { room, state, user }).encode()
    }

    /// The event of an entry of a room's change log: `message_edited`, `message_deleted` or
    /// `reaction` (live, and in a `changes` page).
    pub fn change(c: &crate::db::models::StoredChange) -> EncodedFrame {
        use crate::db::models::ChangeKind;
        let at = crate::domain::rfc3339(c.at);
        match c.kind {
            ChangeKind::Edit => {
                let body = c.body.as_deref().unwrap_or("null");
                // Stored bodies are validated JSON.
                let body: &RawValue =
                    serde_json::from_str(body).unwrap_or_else(|_| super::null_raw());
                ServerFrame::MessageEdited(MessageEdited {
                    body,
                    by: &c.actor,
                    change_seq: c.change_seq,
                    edited_at: at,
                    room: &c.room,
                    seq: c.seq,
                })
                .encode()
            }
            ChangeKind::Delete => ServerFrame::MessageDeleted(MessageDeleted {
                by: &c.actor,
                change_seq: c.change_seq,
                deleted_at: at,
                room: &c.room,
                seq: c.seq,
            })
            .encode(),
            ChangeKind::React | ChangeKind::Unreact => ServerFrame::Reaction(Reaction {
                change_seq: c.change_seq,
                emoji: c.emoji.as_deref().unwrap_or(""),
                on: c.kind == ChangeKind::React,
                room: &c.room,
                seq: c.seq,
                user: &c.actor,
            })
            .encode(),
        }
    }

    /// Serializes the frame once; see [`EncodedFrame`].
    pub fn encode(&self) -> EncodedFrame {
        let name = self.name();
        match self.try_encode(name) {
            Ok(f) => f,
            Err(e) => {
                // Our own frame types cannot fail (string keys, no non-finite floats).
                log::error!("{name} frame encoding failed: {e}");
                let text = br#"{"type":"error","code":"internal","error":"encoding failed"}"#;
                let mut out = vec![0; MAX_HEADER];
                out.extend_from_slice(text);
                EncodedFrame::build("error", out, None)
            }
        }
    }

    fn try_encode(&self, name: &'static str) -> serde_json::Result<EncodedFrame> {
        let mut out = Vec::with_capacity(128);
        // Room for the WebSocket frame header, written in front once the length is known.
        out.resize(MAX_HEADER, 0);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
        let reference = match self {
            ServerFrame::Ack { reference, .. }
            | ServerFrame::Error { reference, .. }
            | ServerFrame::Pong { reference } => *reference,
            _ => None,
        };
        if let Some(r) = reference {
            out.extend_from_slice(b",\"ref\":");
            serde_json::to_writer(&mut out, r)?;
        }
        let span = match self {
            ServerFrame::Pong { .. } => None,
            ServerFrame::Error { body, .. } => {
                // The body's fields go at the top level: `{"code":..}` spliced after `type`
                // and `ref`, and the body itself is the Socket.IO data.
                let data = serde_json::to_vec(body)?;
                out.push(b',');
                out.extend_from_slice(&data[1..]);
                let mut frame = EncodedFrame::build(name, out, None);
                if let Some(e) = Arc::get_mut(&mut frame.0) {
                    e.data = Some(utf8(data));
                }
                return Ok(frame);
            }
            ServerFrame::Ack { data, .. } => Some(write_data(&mut out, data)?),
            ServerFrame::ConnectionAck(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Sync(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Message(d) => Some(write_data(&mut out, d)?),
            ServerFrame::ReplayTruncated(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Receipt(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Typing(d) => Some(write_data(&mut out, d)?),
            ServerFrame::RoomPresence(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Presence(d) => Some(write_data(&mut out, d)?),
            ServerFrame::RoomUnread(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Notification(d) => Some(write_data(&mut out, d)?),
            ServerFrame::UnreadCount(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Invitation(d) => Some(write_data(&mut out, d)?),
            ServerFrame::MessageEdited(d) => Some(write_data(&mut out, d)?),
            ServerFrame::MessageDeleted(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Reaction(d) => Some(write_data(&mut out, d)?),
            ServerFrame::Event(d) => Some(write_data(&mut out, d)?),
        };
        out.push(b'}');
        Ok(EncodedFrame::build(name, out, span))
    }
}

/// Writes `,"data":<data>` and returns where `<data>` lies in `out`.
fn write_data<T: Serialize>(out: &mut Vec<u8>, data: &T) -> serde_json::Result<(usize, usize)> {
    out.extend_from_slice(b",\"data\":");
    let start = out.len();
    serde_json::to_writer(&mut *out, data)?;
    Ok((start, out.len()))
}

fn utf8(bytes: Vec<u8>) -> ByteString {
    // serde_json writes UTF-8 only, and so do we.
    ByteString::try_from(bytes).unwrap_or_default()
}

fn utf8_bytes(bytes: Bytes) -> ByteString {
    ByteString::try_from(bytes).unwrap_or_default()
}

/// A server frame serialized once: the native text and a shared view of its `data`, from
/// which both wires are written without re-parsing. Cheap to clone (shared bytes). The
/// default (empty) frame carries nothing: rooms send it with a meta to move a stream along.
#[derive(Debug, Clone, Default)]
pub struct EncodedFrame(Arc<Encoded>);

#[derive(Debug, Default)]
struct Encoded {
    name: &'static str,
    /// `{"type":"<name>"[,"ref":R],"data":<data>}` (an `error` has its fields at top level).
    native: ByteString,
    /// The JSON of `data` (for `error`, the object of its fields); `None` for `pong`.
    data: Option<ByteString>,
    /// The native text frame as written to sockets (header and `native`: the same bytes).
    wire: SharedText,
    /// The Socket.IO event of each vocabulary as written to sockets, made on first use.
    sio: [OnceLock<SharedText>; 2],
}

impl PartialEq for EncodedFrame {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
            && self.0.native == other.0.native
            && self.0.data == other.0.data
    }
}
impl Eq for EncodedFrame {}

impl EncodedFrame {
    /// From a buffer holding [`MAX_HEADER`] spare bytes, then the native text; `span` is
    /// where `data` lies in the buffer.
    fn build(name: &'static str, mut out: Vec<u8>, span: Option<(usize, usize)>) -> EncodedFrame {
        let len = out.len() - MAX_HEADER;
        let mut head = [0u8; MAX_HEADER];
        let start = ws_wire::header_before(&mut head, ws_wire::OP_TEXT, false, len);
        out[start..MAX_HEADER].copy_from_slice(&head[start..]);
        let all = Bytes::from(out);
        let wire = SharedText::framed(all.slice(start..), MAX_HEADER - start);
        let native = utf8_bytes(all.slice(MAX_HEADER..));
        let data = span.map(|(a, b)| native.slice_ref(&native[a - MAX_HEADER..b - MAX_HEADER]));
        EncodedFrame(Arc::new(Encoded {
            name,
            native,
            data,
            wire,
            sio: Default::default(),
        }))
    }

    /// The native text frame as written to sockets, shared by every recipient.
    pub fn wire(&self) -> &SharedText {
        &self.0.wire
    }

    /// The Socket.IO event (`42["<name>",<data>]`, no offset) as written to WebSocket
    /// transports, built on first use and shared by every recipient with `vocabulary`.
    pub fn sio_wire(&self, vocabulary: crate::socketio::Vocabulary) -> &SharedText {
        self.0.sio[vocabulary as usize].get_or_init(|| {
            SharedText::new(crate::socketio::event_packet(self, vocabulary, None).as_bytes())
        })
    }

    /// The frame `{"type":<name>,"data":<data>}` rebuilt from its parts (a frame another
    /// node encoded); `None` for a type this build does not send, or one without data.
    pub fn from_data(name: &str, data: &str) -> Option<EncodedFrame> {
        let name = ServerFrame::DATA_FRAME_NAMES
            .iter()
            .copied()
            .find(|n| *n == name)?;
        let mut out = Vec::with_capacity(MAX_HEADER + data.len() + name.len() + 20);
        out.resize(MAX_HEADER, 0);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\",\"data\":");
        let start = out.len();
        out.extend_from_slice(data.as_bytes());
        let end = out.len();
        out.push(b'}');
        Some(EncodedFrame::build(name, out, Some((start, end))))
    }

    /// The Socket.IO event name: the frame's type, or a custom event's own name (a custom
    /// event goes out under it: `emit(name)` on one client is `on(name)` on the others). It
    /// leads the event's data; one that is not a valid name (a frame from elsewhere) falls
    /// back to `event`, so what is spliced into a packet never needs escaping.
    pub fn sio_name(&self) -> &str {
        if self.0.name != "event" {
            return self.0.name;
        }
        self.0
            .data
            .as_deref()
            .and_then(|d| d.strip_prefix("{\"name\":\""))
            .and_then(|rest| rest.split_once('"'))
            .map(|(n, _)| n)
            .filter(|n| crate::protocol::EventName::parse(n).is_ok())
            .unwrap_or(self.0.name)
    }

    /// The frame's `type`.
    pub fn name(&self) -> &'static str {
        self.0.name
    }
    /// The native text frame.
    pub fn native(&self) -> &ByteString {
        &self.0.native
    }
    pub fn into_native(self) -> ByteString {
        self.0.native.clone()
    }
    /// The JSON of the frame's data.
    pub fn data(&self) -> Option<&str> {
        self.0.data.as_deref()
    }
    /// Bytes of the native frame (what outbox bounds count).
    pub fn len(&self) -> usize {
        self.0.native.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.native.is_empty()
    }
}

#[cfg(test)]
mod tests;
