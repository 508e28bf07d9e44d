//! Domain values parsed at the edges: user and room ids, message kinds and bodies,
//! priorities, presence statuses and timestamps.
//!
//! Wire input becomes one of these types in the session (or REST handler) before it is
//! sent to any actor, so actors never see unvalidated strings.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest accepted user id or room name, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a wire value was refused; the text becomes the `error` of an `invalid_data` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

fn invalid(msg: impl Into<String>) -> InvalidInput {
    InvalidInput(msg.into())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')
}

/// A user id: the JWT `sub`. 1..=64 bytes of `[A-Za-z0-9_.@-]`, so that direct room ids
/// (`direct:<a>:<b>`) are unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        if s.is_empty() || s.len() > MAX_ID_LEN || !s.chars().all(is_id_char) {
            return Err(invalid(format!(
                "user id must be 1..={MAX_ID_LEN} characters of [A-Za-z0-9_.@-]"
            )));
        }
        Ok(UserId(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of room an id names; the prefix of the id says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    /// `public:<name>`: anyone may join.
    Public,
    /// `private:<id>`: created over REST; members are invited by the owner or an admin.
    Private,
    /// `direct:<a>:<b>` (a < b): the conversation of two users, created by the first `send` with `to`.
    Direct,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Public => "public",
            RoomKind::Private => "private",
            RoomKind::Direct => "direct",
        }
    }
}

/// A client device's name for itself (`device_id`): 1 to 64 id characters. Chosen by the
/// client; it only ever names a device of the authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        if s.is_empty() || s.len() > MAX_DEVICE_ID_LEN || !s.chars().all(is_id_char) {
            return Err(invalid(format!(
                "invalid device_id {s:?}: 1 to {MAX_DEVICE_ID_LEN} characters of letters, digits, _ - . @"
            )));
        }
        Ok(DeviceId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest `device_id`.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// A room id such as `public:lobby`, `private:7f3a...` or `direct:alice:bob`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomId(String);

impl RoomId {
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let bad = || {
            invalid(format!("invalid room id {s:?}: expected public:<name>, private:<id> or direct:<user>:<user>"))
        };
        let (prefix, rest) = s.split_once(':').ok_or_else(bad)?;
        let name_ok = |n: &str| !n.is_empty() && n.len() <= MAX_ID_LEN && n.chars().all(is_id_char);
        match prefix {
            "public" | "private" if name_ok(rest) => Ok(RoomId(s.to_owned())),
            "direct" => {
                let (a, b) = rest.split_once(':').ok_or_else(bad)?;
                let (a, b) = (UserId::parse(a)?, UserId::parse(b)?);
                if a >= b {
                    return Err(bad());
                }
                Ok(RoomId(s.to_owned()))
            }
            _ => Err(bad()),
        }
    }

    /// The direct room of two distinct users (order does not matter).
    pub fn direct(a: &UserId, b: &UserId) -> Self {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        RoomId(format!("direct:{lo}:{hi}"))
    }

    /// A fresh private room id.
    pub fn new_private() -> Self {
        RoomId(format!("private:{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn kind(&self) -> RoomKind {
        if self.0.starts_with("public:") {
            RoomKind::Public
        } else if self.0.starts_with("private:") {
            RoomKind::Private
        } else {
            RoomKind::Direct
        }
    }

    /// The two users of a direct room.
    pub fn direct_users(&self) -> Option<(UserId, UserId)> {
        let rest = self.0.strip_prefix("direct:")?;
        let (a, b) = rest.split_once(':')?;
        Some((UserId(a.to_owned()), UserId(b.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session id, unique within the process (registry-assigned counter, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl SessionId {
    pub fn next() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Message priority; `normal` when the client gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Priority::Low,
            "normal" => Priority::Normal,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            _ => return None,
        })
    }
}

/// Message kinds; `system` is server-originated only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Image,
    File,
    Audio,
    Video,
    Location,
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::File => "file",
            MessageKind::Audio => "audio",
            MessageKind::Video => "video",
            MessageKind::Location => "location",
            MessageKind::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => MessageKind::Text,
            "image" => MessageKind::Image,
            "file" => MessageKind::File,
            "audio" => MessageKind::Audio,
            "video" => MessageKind::Video,
            "location" => MessageKind::Location,
            "system" => MessageKind::System,
            _ => return None,
        })
    }
}

/// Why a system message body was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum SystemBodyError {
    NotAnObject,
    /// The encoded size in bytes.
    TooLarge(usize),
}

/// A validated message body, kept as its JSON text so it is encoded once and stored as is.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageBody {
    json: String,
}

impl MessageBody {
    /// Validates `body` for a client-sent message of `kind`. `max_text_bytes` bounds the
    /// `text` of a text message (and the encoded size of any body).
    pub fn parse(
        kind: MessageKind,
        body: &Value,
        max_text_bytes: usize,
    ) -> Result<Self, InvalidInput> {
        let obj = body
            .as_object()
            .ok_or_else(|| invalid("body must be a JSON object"))?;
        let str_field = |name: &str| -> Result<&str, InvalidInput> {
            match obj.get(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
                Some(Value::String(_)) => Err(invalid(format!("body.{name} must not be empty"))),
                Some(_) => Err(invalid(format!("body.{name} must be a string"))),
                None => Err(invalid(format!(
                    "body.{name} is required for kind {}",
                    kind.as_str()
                ))),
            }
        };
        let uint_field = |name: &str| -> Result<u64, InvalidInput> {
            obj.get(name)
                .ok_or_else(|| {
                    invalid(format!(
                        "body.{name} is required for kind {}",
                        kind.as_str()
                    ))
                })?
                .as_u64()
                .ok_or_else(|| invalid(format!("body.{name} must be a non-negative integer")))
        };
        let coord = |name: &str, limit: f64| -> Result<f64, InvalidInput> {
            let v = obj
                .get(name)
                .ok_or_else(|| invalid(format!("body.{name} is required for kind location")))?
                .as_f64()
                .ok_or_else(|| invalid(format!("body.{name} must be a number")))?;
            if !(-limit..=limit).contains(&v) {
                return Err(invalid(format!("body.{name} must be within ±{limit}")));
            }
            Ok(v)
        };
        match kind {
            MessageKind::Text => {
                let text = str_field("text")?;
                if text.len() > max_text_bytes {
                    return Err(invalid(format!(
                        "body.text is longer than {max_text_bytes} bytes"
                    )));
                }
            }
            MessageKind::Image | MessageKind::Video => {
                str_field("url")?;
            }
            MessageKind::File => {
                str_field("url")?;
                str_field("name")?;
                uint_field("size")?;
                str_field("mime")?;
            }
            MessageKind::Audio => {
                str_field("url")?;
                uint_field("duration_ms")?;
            }
            MessageKind::Location => {
                coord("lat", 90.0)?;
                coord("lng", 180.0)?;
            }
            MessageKind::System => return Err(invalid("kind system is server-originated only")),
        }
        let json = body.to_string();
        // A body of any kind is bounded, not only text: the text bound plus room for the envelope.
        if json.len() > max_text_bytes + 1024 {
            return Err(invalid(format!(
                "body is larger than {} bytes",
                max_text_bytes + 1024
            )));
        }
        Ok(MessageBody { json })
    }

    /// The body of a system message posted by an app backend: any JSON object up to
    /// `max_bytes` encoded (not held to the client rules of the other kinds).
    pub fn system_checked(body: &Value, max_bytes: usize) -> Result<Self, SystemBodyError> {
        if !body.is_object() {
            return Err(SystemBodyError::NotAnObject);
        }
        let json = body.to_string();
        if json.len() > max_bytes {
            return Err(SystemBodyError::TooLarge(json.len()));
        }
        Ok(MessageBody { json })
    }

    /// Rebuilds a body read back from storage.
    pub fn from_stored(json: String) -> Self {
        MessageBody { json }
    }

    pub fn as_json(&self) -> &str {
        &self.json
    }
}

/// A status a client can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChosenStatus {
    #[default]
    Online,
    Away,
    Busy,
    Invisible,
}

impl ChosenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChosenStatus::Online => "online",
            ChosenStatus::Away => "away",
            ChosenStatus::Busy => "busy",
            ChosenStatus::Invisible => "invisible",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "online" => ChosenStatus::Online,
            "away" => ChosenStatus::Away,
            "busy" => ChosenStatus::Busy,
            "invisible" => ChosenStatus::Invisible,
            _ => return None,
        })
    }
}

/// The status others see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VisibleStatus {
    Online,
    Away,
    Busy,
    Offline,
}

/// Watermark kinds of a `receipt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Delivered,
    Read,
}

impl ReceiptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Read => "read",
        }
    }
}

/// Milliseconds since the Unix epoch; how every timestamp is stored.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC with milliseconds, how every timestamp goes on the wire.
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn room_ids_parse_by_prefix() {
        assert_eq!(
            RoomId::parse("public:lobby").unwrap().kind(),
            RoomKind::Public
        );
        assert_eq!(
            RoomId::parse("direct:alice:bob").unwrap().kind(),
            RoomKind::Direct
        );
        assert!(RoomId::parse("direct:bob:alice").is_err());
        assert!(RoomId::parse("lobby").is_err());
        assert!(RoomId::parse("public:").is_err());
        assert!(RoomId::parse("public:a b").is_err());
        let a = UserId::parse("zed").unwrap();
        let b = UserId::parse("amy").unwrap();
        assert_eq!(RoomId::direct(&a, &b).as_str(), "direct:amy:zed");
    }

    #[test]
    fn bodies_are_validated_per_kind() {
        assert!(MessageBody::parse(MessageKind::Text, &json!({"text": "hi"}), 10).is_ok());
        assert!(MessageBody::parse(MessageKind::Text, &json!({"text": ""}), 10).is_err());
        assert!(
            MessageBody::parse(MessageKind::Text, &json!({"text": "x".repeat(11)}), 10).is_err()
        );
        assert!(
            MessageBody::parse(MessageKind::Location, &json!({"lat": 10.5, "lng": -20}), 10)
                .is_ok()
        );
        assert!(
            MessageBody::parse(MessageKind::Location, &json!({"lat": 91, "lng": 0}), 10).is_err()
        );
        assert!(
            MessageBody::parse(MessageKind::Location, &json!({"lat": "1", "lng": 0}), 10).is_err()
        );
        assert!(MessageBody::parse(
            MessageKind::File,
            &json!({"url": "u", "name": "n", "size": 3, "mime": "m"}),
            10
        )
        .is_ok());
        assert!(MessageBody::parse(
            MessageKind::File,
            &json!({"url": "u", "name": "n", "mime": "m"}),
            10
        )
        .is_err());
        assert!(MessageBody::parse(
            MessageKind::Audio,
            &json!({"url": "u", "duration_ms": 5}),
            10
        )
        .is_ok());
        assert!(MessageBody::parse(MessageKind::System, &json!({"text": "x"}), 10).is_err());
        assert!(MessageBody::parse(MessageKind::Image, &json!("x"), 10).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}

/// Ids read back from the cluster backplane are validated like any other input.
macro_rules! deserialize_by_parse {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_by_parse!(UserId, RoomId);
