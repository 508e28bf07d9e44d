//! Identifiers: user and device ids, session ids, and room ids (whose prefix says the
//! [`RoomKind`]). Each is parsed once from wire input and compared as is afterwards.

use std::fmt;

use serde::Serialize;

use super::{invalid, InvalidInput, RoomKind};

/// Longest accepted user id or room name, in bytes.
pub const MAX_ID_LEN: usize = 64;

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

/// So that maps keyed by `UserId` can be searched with a `str` (derived `Hash` and `Eq`
/// are those of the inner `String`, hence of the `str`).
impl std::borrow::Borrow<str> for UserId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
