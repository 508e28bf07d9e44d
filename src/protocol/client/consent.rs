//! Client frames of consent (issue 18): `invite`, `accept`, `decline`, `block`, `unblock`
//! and `report`, parsed into a typed [`ConsentRequest`] (docs/protocol.md "Invitations,
//! blocks and reports").

use serde::Deserialize;
use serde_json::Value;

use super::{data, ClientRequest, RequestError};
use crate::domain::{RoomId, UserId};

/// A consent request: one variant per frame type.
#[derive(Debug, Clone)]
pub enum ConsentRequest {
    /// Invite `user` to the private `room` (a direct add for admins and services).
    Invite { room: RoomId, user: UserId },
    /// Accept the pending invitation to `room`: become a member.
    Accept { room: RoomId },
    /// Decline the pending invitation to `room`.
    Decline { room: RoomId },
    /// Add `user` to my block list.
    Block { user: UserId },
    /// Remove `user` from my block list.
    Unblock { user: UserId },
    /// Report the message `seq` of `room` (the reason's size is checked by the engine
    /// against `HERALD_MAX_REPORT_REASON_BYTES`).
    Report {
        room: RoomId,
        seq: i64,
        reason: String,
    },
}

impl ConsentRequest {
    /// The frame type this request came as.
    pub fn kind(&self) -> &'static str {
        match self {
            ConsentRequest::Invite { .. } => "invite",
            ConsentRequest::Accept { .. } => "accept",
            ConsentRequest::Decline { .. } => "decline",
            ConsentRequest::Block { .. } => "block",
            ConsentRequest::Unblock { .. } => "unblock",
            ConsentRequest::Report { .. } => "report",
        }
    }
}

#[derive(Deserialize)]
struct InviteData {
    room: String,
    user: String,
}
#[derive(Deserialize)]
struct RoomData {
    room: String,
}
#[derive(Deserialize)]
struct UserData {
    user: String,
}
#[derive(Deserialize)]
struct ReportData {
    room: String,
    seq: i64,
    reason: String,
}

/// The request of a consent frame type; `None` when `kind` is not one.
pub(super) fn parse(kind: &str, v: Value) -> Option<Result<ClientRequest, RequestError>> {
    let request = || -> Result<ConsentRequest, RequestError> {
        Ok(match kind {
            "invite" => {
                let d: InviteData = data(kind, v)?;
                ConsentRequest::Invite {
                    room: RoomId::parse(&d.room)?,
                    user: UserId::parse(&d.user)?,
                }
            }
            "accept" => ConsentRequest::Accept {
                room: RoomId::parse(&data::<RoomData>(kind, v)?.room)?,
            },
            "decline" => ConsentRequest::Decline {
                room: RoomId::parse(&data::<RoomData>(kind, v)?.room)?,
            },
            "block" => ConsentRequest::Block {
                user: UserId::parse(&data::<UserData>(kind, v)?.user)?,
            },
            "unblock" => ConsentRequest::Unblock {
                user: UserId::parse(&data::<UserData>(kind, v)?.user)?,
            },
            "report" => {
                let d: ReportData = data(kind, v)?;
                if d.seq < 1 {
                    return Err(RequestError::Invalid("seq must be >= 1".into()));
                }
                ConsentRequest::Report {
                    room: RoomId::parse(&d.room)?,
                    seq: d.seq,
                    reason: d.reason,
                }
            }
            _ => return Err(RequestError::Unknown),
        })
    };
    match request() {
        Err(RequestError::Unknown) => None,
        r => Some(r.map(ClientRequest::Consent)),
    }
}
