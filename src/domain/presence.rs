//! Presence: the status a user chooses and the status others see.

use serde::{Deserialize, Serialize};

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
