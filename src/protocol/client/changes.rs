//! Client frames that change stored messages (docs/protocol.md "Edits, deletes and
//! reactions"): `edit`, `delete`, `react`, and `changes`, the room's change log.

use serde::Deserialize;
use serde_json::Value;

use super::{data, ClientRequest, ParseLimits, RequestError, HISTORY_MAX_LIMIT};
use crate::domain::RoomId;

#[derive(Deserialize)]
struct EditData {
    room: String,
    seq: i64,
    body: Value,
}
#[derive(Deserialize)]
struct MessageRef {
    room: String,
    seq: i64,
}
#[derive(Deserialize)]
struct ReactData {
    room: String,
    seq: i64,
    emoji: String,
    #[serde(default = "yes")]
    on: bool,
}
fn yes() -> bool {
    true
}
#[derive(Deserialize)]
struct ChangesData {
    room: String,
    after_change_seq: Option<i64>,
    limit: Option<i64>,
}

/// The frame types parsed here.
pub(super) const KINDS: [&str; 4] = ["edit", "delete", "react", "changes"];

/// The request of a change frame (`kind` is one of [`KINDS`]).
pub(super) fn parse(
    kind: &str,
    v: Value,
    limits: ParseLimits,
) -> Result<ClientRequest, RequestError> {
    Ok(match kind {
        "edit" => {
            let d: EditData = data(kind, v)?;
            if d.body
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| t.len() > limits.max_text_bytes)
            {
                return Err(RequestError::TooLarge(format!(
                    "body.text is longer than {} bytes",
                    limits.max_text_bytes
                )));
            }
            ClientRequest::Edit {
                room: RoomId::parse(&d.room)?,
                seq: message_seq(d.seq)?,
                body: d.body,
            }
        }
        "delete" => {
            let d: MessageRef = data(kind, v)?;
            ClientRequest::Delete {
                room: RoomId::parse(&d.room)?,
                seq: message_seq(d.seq)?,
            }
        }
        "react" => {
            let d: ReactData = data(kind, v)?;
            ClientRequest::React {
                room: RoomId::parse(&d.room)?,
                seq: message_seq(d.seq)?,
                emoji: emoji(&d.emoji, limits.max_emoji_bytes)?,
                on: d.on,
            }
        }
        "changes" => {
            let d: ChangesData = data(kind, v)?;
            let after = d.after_change_seq.unwrap_or(0);
            if after < 0 {
                return Err(RequestError::Invalid(
                    "after_change_seq must be >= 0".into(),
                ));
            }
            let limit = d.limit.unwrap_or(HISTORY_MAX_LIMIT);
            if limit < 1 {
                return Err(RequestError::Invalid("limit must be >= 1".into()));
            }
            ClientRequest::Changes {
                room: RoomId::parse(&d.room)?,
                after,
                limit: limit.min(HISTORY_MAX_LIMIT),
            }
        }
        _ => return Err(RequestError::Unknown),
    })
}

fn message_seq(seq: i64) -> Result<i64, RequestError> {
    if seq < 1 {
        return Err(RequestError::Invalid("seq must be >= 1".into()));
    }
    Ok(seq)
}

/// A reaction: 1 to `max` bytes, no whitespace or control characters (an emoji, or a short
/// code such as `:thumbsup:`).
pub fn emoji(s: &str, max: usize) -> Result<String, RequestError> {
    if s.is_empty() || s.len() > max {
        return Err(RequestError::Invalid(format!(
            "emoji must be 1..={max} bytes"
        )));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RequestError::Invalid(
            "emoji must not contain spaces or control characters".into(),
        ));
    }
    Ok(s.to_owned())
}
