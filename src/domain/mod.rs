//! Domain values parsed at the edges: user and room ids, room kinds and member roles,
//! message kinds and bodies, priorities, presence statuses and timestamps.
//!
//! Wire input becomes one of these types in the session (or REST handler) before it is
//! sent to any actor, so actors never see unvalidated strings.

mod ids;
mod messages;
mod presence;
mod rooms;

use std::time::{SystemTime, UNIX_EPOCH};

pub use ids::{DeviceId, RoomId, SessionId, UserId, MAX_DEVICE_ID_LEN, MAX_ID_LEN};
pub use messages::{MessageBody, MessageKind, Priority, ReceiptStatus, SystemBodyError};
pub use presence::{ChosenStatus, CustomMessage, StatusError, VisibleStatus, MAX_CUSTOM_MESSAGE};
pub use rooms::{MemberRole, RoomKind};

/// Why a wire value was refused; the text becomes the `error` of an `invalid_data` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

fn invalid(msg: impl Into<String>) -> InvalidInput {
    InvalidInput(msg.into())
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

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}

/// Values read back from the cluster backplane are validated like any other input.
macro_rules! deserialize_by_parse {
    ($($t:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_by_parse!(UserId, RoomId, CustomMessage);
