//! Engine.IO v4 and Socket.IO v5 wire formats (text only), as the public protocol documents
//! define them: packet decoding and encoding, the polling payload, the open handshake, and
//! the Socket.IO event of each server frame ([`frame_event`]).
//!
//! Binary attachments are not supported: a binary packet is refused with an error.
//!
//! The Socket.IO encoders return whole Engine.IO `message` packets (leading `4`), ready to
//! send on either transport.

use serde_json::{json, Value};

use crate::protocol::EncodedFrame;

/// Record separator between packets of an HTTP long-polling payload.
pub const SEPARATOR: char = '\u{1e}';

/// Engine.IO packet types.
pub mod eio {
    pub const OPEN: char = '0';
    pub const CLOSE: char = '1';
    pub const PING: char = '2';
    pub const PONG: char = '3';
    pub const MESSAGE: char = '4';
    pub const UPGRADE: char = '5';
    pub const NOOP: char = '6';
}

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioType {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl SioType {
    fn from_char(c: char) -> Option<Self> {
        Some(match c {
            '0' => SioType::Connect,
            '1' => SioType::Disconnect,
            '2' => SioType::Event,
            '3' => SioType::Ack,
            '4' => SioType::ConnectError,
            '5' => SioType::BinaryEvent,
            '6' => SioType::BinaryAck,
            _ => return None,
        })
    }
}

/// A decoded Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct SioPacket {
    pub kind: SioType,
    pub namespace: String,
    pub ack_id: Option<u64>,
    pub data: Option<Value>,
}

/// Why a Socket.IO packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SioError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type")]
    UnknownType,
    #[error("binary attachments are not supported; send JSON only")]
    Binary,
    #[error("invalid JSON payload")]
    InvalidJson,
}

/// Decodes the payload of an Engine.IO `message` packet.
pub fn decode(s: &str) -> Result<SioPacket, SioError> {
    let mut chars = s.char_indices();
    let (_, t) = chars.next().ok_or(SioError::Empty)?;
    let kind = SioType::from_char(t).ok_or(SioError::UnknownType)?;
    if matches!(kind, SioType::BinaryEvent | SioType::BinaryAck) {
        return Err(SioError::Binary);
    }
    let mut rest = &s[1..];
    let mut namespace = "/".to_owned();
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        namespace = rest[..end].to_owned();
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    let ack_id = if digits > 0 {
        rest[..digits].parse().ok()
    } else {
        None
    };
    rest = &rest[digits..];
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str(rest).map_err(|_| SioError::InvalidJson)?)
    };
    Ok(SioPacket {
        kind,
        namespace,
        ack_id,
        data,
    })
}

fn ns_prefix(namespace: &str) -> String {
    if namespace == "/" {
        String::new()
    } else {
        format!("{namespace},")
    }
}

/// `40{"sid":...}`: the namespace connection succeeded.
pub fn connect_ok(sid: &str, pid: &str) -> String {
    format!("40{}", json!({ "sid": sid, "pid": pid }))
}

/// `44[/ns,]{"message":...}`: the namespace connection was refused.
pub fn connect_error(namespace: &str, message: &str) -> String {
    format!(
        "44{}{}",
        ns_prefix(namespace),
        json!({ "message": message })
    )
}

/// `43<id>[payload]`: the answer to an event that asked for an acknowledgement.
pub fn ack(id: u64, payload: &Value) -> String {
    format!("43{id}{}", json!([payload]))
}

/// `42["name",payload]`.
pub fn event(name: &str, payload: &Value) -> String {
    format!("42{}", json!([name, payload]))
}

/// `41`: the server ends the namespace connection.
pub const DISCONNECT: &str = "41";

/// The Socket.IO event of a server frame: `42["<name>",<data>]` (`42["<name>"]` without
/// data), concatenated from the frame's one encoding.
pub fn frame_event(frame: &EncodedFrame) -> String {
    event_packet(frame, Vocabulary::Herald, None)
}

/// Like [`frame_event`], with the recovery `offset` as the event's last argument (the
/// official client remembers the last one it received and presents it on reconnect).
pub fn frame_event_with_offset(frame: &EncodedFrame, offset: u64) -> String {
    event_packet(frame, Vocabulary::Herald, Some(offset))
}

/// The Socket.IO event of a server frame for a client speaking `vocabulary`, with the
/// recovery offset when the client tracks them.
pub fn event_packet(frame: &EncodedFrame, vocabulary: Vocabulary, offset: Option<u64>) -> String {
    let (name, data) = (vocabulary.outgoing(frame.sio_name()), frame.data());
    // Frame names are static snake_case identifiers and custom event names are checked
    // against a JSON-safe charset: nothing to escape.
    let mut out = String::with_capacity(8 + name.len() + data.map_or(0, str::len) + 24);
    out.push_str("42[\"");
    out.push_str(name);
    out.push('"');
    if let Some(d) = data {
        out.push(',');
        out.push_str(d);
    }
    if let Some(o) = offset {
        use std::fmt::Write;
        let _ = write!(out, ",\"{o}\"");
    }
    out.push(']');
    out
}

/// The event names a Socket.IO client speaks (docs/socketio.md, "Event names"): Herald's
/// own, or the seed application's (`send_message` in, `new_message` out), chosen per
/// deployment (`HERALD_SIO_EVENTS`) or per client (`auth.events`). Only clients that ask
/// for the seed's names get them: nobody receives an event twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Vocabulary {
    #[default]
    Herald,
    Seed,
}

impl Vocabulary {
    pub fn parse(s: &str) -> Option<Vocabulary> {
        match s {
            "herald" => Some(Vocabulary::Herald),
            "seed" => Some(Vocabulary::Seed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Vocabulary::Herald => "herald",
            Vocabulary::Seed => "seed",
        }
    }

    /// The name a server frame goes out under.
    pub fn outgoing(self, name: &str) -> &str {
        match (self, name) {
            (Vocabulary::Seed, "message") => "new_message",
            _ => name,
        }
    }

    /// A seed event as Herald's request type and data: `send_message` {room | to, text,
    /// client_msg_id?, priority?} is a text `send` (a `kind` and `body` given instead of
    /// `text` pass through), `join_room`/`leave_room` {room} are `join`/`leave`. `None`: not
    /// an alias in this vocabulary (the payload comes back untouched).
    pub fn incoming(self, name: &str, payload: Value) -> Result<(&'static str, Value), Value> {
        if self != Vocabulary::Seed {
            return Err(payload);
        }
        match name {
            "send_message" => {
                let mut data = match payload {
                    Value::Object(m) => m,
                    other => return Ok(("send", other)),
                };
                if let Some(text) = data.remove("text") {
                    data.entry("kind").or_insert_with(|| json!("text"));
                    data.entry("body")
                        .or_insert_with(|| json!({ "text": text }));
                }
                Ok(("send", Value::Object(data)))
            }
            "join_room" => Ok(("join", payload)),
            "leave_room" => Ok(("leave", payload)),
            _ => Err(payload),
        }
    }
}

/// The Engine.IO `open` packet.
pub fn open_packet(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> String {
    format!(
        "0{}",
        json!({
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": ping_interval_ms,
            "pingTimeout": ping_timeout_ms,
            "maxPayload": max_payload,
        })
    )
}

/// Splits a polling payload into packets.
pub fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split(SEPARATOR).filter(|p| !p.is_empty())
}

/// Joins packets into a polling payload.
pub fn join_payload(packets: &[String]) -> String {
    let mut out = String::with_capacity(packets.iter().map(|p| p.len() + 1).sum());
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_vocabulary_maps_its_events_and_nothing_else() {
        let seed = Vocabulary::Seed;
        assert_eq!(
            seed.incoming("send_message", json!({"room": "public:a", "text": "hi"})),
            Ok((
                "send",
                json!({"room": "public:a", "kind": "text", "body": {"text": "hi"}})
            ))
        );
        assert_eq!(
            seed.incoming("join_room", json!({"room": "public:a"})),
            Ok(("join", json!({"room": "public:a"})))
        );
        assert_eq!(seed.incoming("send", json!({})), Err(json!({})));
        assert_eq!(
            Vocabulary::Herald.incoming("send_message", json!({})),
            Err(json!({}))
        );
        assert_eq!(seed.outgoing("message"), "new_message");
        assert_eq!(seed.outgoing("receipt"), "receipt");
        assert_eq!(Vocabulary::Herald.outgoing("message"), "message");
        let f = crate::protocol::EncodedFrame::from_data("message", r#"{"seq":1}"#).unwrap();
        assert_eq!(
            event_packet(&f, seed, Some(3)),
            r#"42["new_message",{"seq":1},"3"]"#
        );
        let e = crate::protocol::EncodedFrame::from_data(
            "event",
            r#"{"name":"cursor","data":{"x":1},"from":"bob","room":"public:a"}"#,
        )
        .unwrap();
        assert_eq!(
            frame_event(&e),
            r#"42["cursor",{"name":"cursor","data":{"x":1},"from":"bob","room":"public:a"}]"#
        );
        // A name that is not a valid event name never reaches a packet.
        let odd = crate::protocol::EncodedFrame::from_data(
            "event",
            r#"{"name":"a\"b","data":null,"from":"bob","room":"public:a"}"#,
        )
        .unwrap();
        assert!(frame_event(&odd).starts_with(r#"42["event","#));
    }

    #[test]
    fn decodes_connect_event_ack_and_namespaces() {
        let p = decode(r#"0{"token":"abc"}"#).unwrap();
        assert_eq!(
            (p.kind, p.namespace.as_str(), p.data),
            (SioType::Connect, "/", Some(json!({"token": "abc"})))
        );
        let p = decode(r#"212["send",{"room":"public:a"}]"#).unwrap();
        assert_eq!((p.kind, p.ack_id), (SioType::Event, Some(12)));
        assert_eq!(p.data.unwrap()[0], "send");
        let p = decode("0/admin,").unwrap();
        assert_eq!((p.namespace.as_str(), p.data), ("/admin", None));
        let p = decode(r#"2/chat,7["x"]"#).unwrap();
        assert_eq!((p.namespace.as_str(), p.ack_id), ("/chat", Some(7)));
        assert_eq!(decode("1").unwrap().kind, SioType::Disconnect);
        assert_eq!(
            decode(r#"51-["x",{"_placeholder":true,"num":0}]"#),
            Err(SioError::Binary)
        );
        assert_eq!(decode("2[oops"), Err(SioError::InvalidJson));
        assert_eq!(decode("9"), Err(SioError::UnknownType));
    }

    #[test]
    fn encodes_replies() {
        assert_eq!(connect_ok("s1", "p1"), r#"40{"pid":"p1","sid":"s1"}"#);
        assert_eq!(
            connect_error("/x", "Invalid namespace"),
            r#"44/x,{"message":"Invalid namespace"}"#
        );
        assert_eq!(ack(3, &json!({"ok": true})), r#"433[{"ok":true}]"#);
        assert_eq!(
            event("message", &json!({"a": 1})),
            r#"42["message",{"a":1}]"#
        );
    }

    #[test]
    fn server_frames_become_events_by_concatenation() {
        use crate::protocol::{ServerFrame, UnreadCount};
        let f = ServerFrame::UnreadCount(UnreadCount { unread_count: 2 }).encode();
        assert_eq!(frame_event(&f), r#"42["unread_count",{"unread_count":2}]"#);
        assert_eq!(
            frame_event_with_offset(&f, 7),
            r#"42["unread_count",{"unread_count":2},"7"]"#
        );
        let pong = ServerFrame::Pong { reference: None }.encode();
        assert_eq!(frame_event(&pong), r#"42["pong"]"#);
    }

    #[test]
    fn payloads_split_and_join_on_the_record_separator() {
        let joined = join_payload(&["4a".into(), "2".into()]);
        assert_eq!(joined, "4a\u{1e}2");
        assert_eq!(split_payload(&joined).collect::<Vec<_>>(), ["4a", "2"]);
    }
}
