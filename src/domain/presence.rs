//! Presence: the status a user chooses, their custom status message, and the status others
//! see.
//!
//! [`ChosenStatus::parse`] and [`CustomMessage::parse`] hold the only copy of the rules; the
//! `presence` frame, the admin REST routes and stored rows all go through them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest custom status message, in bytes (docs/protocol.md, "presence").
pub const MAX_CUSTOM_MESSAGE: usize = 256;

/// Why a status or custom message was refused. The texts are those of the `presence` frame's
/// `invalid_data` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("status must be online, away, busy or invisible, not {0:?}")]
    UnknownStatus(String),
    #[error("custom_message is longer than {MAX_CUSTOM_MESSAGE} bytes")]
    CustomMessageTooLong,
}

impl From<StatusError> for super::InvalidInput {
    fn from(e: StatusError) -> Self {
        super::InvalidInput(e.to_string())
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

    pub fn parse(s: &str) -> Result<Self, StatusError> {
        Ok(match s {
            "online" => ChosenStatus::Online,
            "away" => ChosenStatus::Away,
            "busy" => ChosenStatus::Busy,
            "invisible" => ChosenStatus::Invisible,
            _ => return Err(StatusError::UnknownStatus(s.to_owned())),
        })
    }
}

/// A user's custom status text ("in a meeting"): any string of at most
/// [`MAX_CUSTOM_MESSAGE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CustomMessage(String);

impl CustomMessage {
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        if s.len() > MAX_CUSTOM_MESSAGE {
            return Err(StatusError::CustomMessageTooLong);
        }
        Ok(CustomMessage(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chosen_status_parses_back_from_its_name() {
        for s in [
            ChosenStatus::Online,
            ChosenStatus::Away,
            ChosenStatus::Busy,
            ChosenStatus::Invisible,
        ] {
            assert_eq!(ChosenStatus::parse(s.as_str()), Ok(s));
        }
    }

    #[test]
    fn an_unknown_status_is_refused_with_the_protocol_text() {
        for bad in ["offline", "Online", "", "dnd"] {
            let err = ChosenStatus::parse(bad).unwrap_err();
            assert_eq!(err, StatusError::UnknownStatus(bad.to_owned()));
            assert_eq!(
                err.to_string(),
                format!("status must be online, away, busy or invisible, not {bad:?}")
            );
        }
    }

    #[test]
    fn a_custom_message_is_at_most_256_bytes() {
        assert_eq!(CustomMessage::parse("").unwrap().as_str(), "");
        let longest = "x".repeat(MAX_CUSTOM_MESSAGE);
        assert_eq!(CustomMessage::parse(&longest).unwrap().as_str(), longest);
        // Bytes, not characters: 129 two-byte characters are 258 bytes.
        assert_eq!(
            CustomMessage::parse(&"é".repeat(129)),
            Err(StatusError::CustomMessageTooLong)
        );
        let err = CustomMessage::parse(&"x".repeat(MAX_CUSTOM_MESSAGE + 1)).unwrap_err();
        assert_eq!(err.to_string(), "custom_message is longer than 256 bytes");
    }

    #[test]
    fn a_custom_message_serializes_as_its_text() {
        let m = CustomMessage::parse("on a call").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), r#""on a call""#);
    }
}
