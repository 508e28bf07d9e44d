//! Server frames of consent (issue 18): `invitation`, pushed to every live session of the
//! invitee when an invitation is made.

use serde::Serialize;

use super::{EncodedFrame, ServerFrame};
use crate::db::models::Invitation;
use crate::domain::{rfc3339, RoomId, UserId};

/// `invitation` data: who invites whom to which room, and until when it can be accepted.
#[derive(Serialize)]
pub struct InvitationData<'a> {
    pub created_at: String,
    pub expires_at: String,
    pub from: &'a UserId,
    pub room: &'a RoomId,
    pub room_name: Option<&'a str>,
    pub to: &'a UserId,
}

impl ServerFrame<'_> {
    /// `{"type":"invitation","data":{...}}` of `i`: the one builder of the frame.
    pub fn invitation(i: &Invitation) -> EncodedFrame {
        ServerFrame::Invitation(InvitationData {
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
            from: &i.inviter,
            room: &i.room,
            room_name: i.room_name.as_deref(),
            to: &i.invitee,
        })
        .encode()
    }
}
