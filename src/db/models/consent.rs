//! Consent as stored (issue 18): invitations to private rooms, blocks between users and
//! reports of messages; the writes the commit queue batches for them ([`ConsentWrite`], one
//! [`WriteOp::Consent`](super::WriteOp::Consent)) with their outcomes, and the reads the
//! database readers answer ([`ConsentRead`]).
//!
//! The checks that must not race (an invitation's room, owner, block and pending caps; the
//! block list's cap) run inside the single writer's transaction, as `ClaimRoomSlot` does for
//! the rooms-per-user cap, so two requests at once cannot both pass them.

use diesel::prelude::*;
use serde::Serialize;

use super::{bad_column, parse_user_column};
use crate::db::schema::{blocks, invitations, reports};
use crate::domain::{rfc3339, Millis, RoomId, UserId};

/// A pending invitation of `invitee` to a private room.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub room: RoomId,
    /// The room's name, when it has one (listing only; `None` right after creation).
    pub room_name: Option<String>,
    pub invitee: UserId,
    pub inviter: UserId,
    pub created_at: Millis,
    pub expires_at: Millis,
}

impl Invitation {
    /// The JSON shape of the `invitation` frame, the REST lists and the acks.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "room": self.room,
            "room_name": self.room_name,
            "from": self.inviter,
            "to": self.invitee,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
        })
    }
}

/// An `invitations` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = invitations)]
pub struct InvitationRow {
    pub room_id: String,
    pub invitee: String,
    pub inviter: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl TryFrom<(InvitationRow, Option<String>)> for Invitation {
    type Error = diesel::result::Error;
    fn try_from((r, room_name): (InvitationRow, Option<String>)) -> QueryResult<Self> {
        Ok(Invitation {
            room: RoomId::parse(&r.room_id)
                .map_err(|_| bad_column("invitation", "room_id", &r.room_id))?,
            room_name,
            invitee: parse_user_column("invitation", "invitee", &r.invitee)?,
            inviter: parse_user_column("invitation", "inviter", &r.inviter)?,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

/// A `blocks` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = blocks)]
pub struct BlockRow {
    pub blocker: String,
    pub blocked: String,
    pub created_at: i64,
}

/// One entry of a user's block list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockEntry {
    pub user: UserId,
    #[serde(serialize_with = "as_rfc3339")]
    pub created_at: Millis,
}

/// A report of a message, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredReport {
    pub id: String,
    pub room: RoomId,
    pub seq: i64,
    pub message_id: String,
    /// The reported message's sender.
    pub sender: UserId,
    pub reporter: UserId,
    pub reason: String,
    #[serde(serialize_with = "as_rfc3339")]
    pub created_at: Millis,
    #[serde(serialize_with = "as_opt_rfc3339")]
    pub resolved_at: Option<Millis>,
    pub resolved_by: Option<UserId>,
    pub resolution: Option<String>,
}

fn as_rfc3339<S: serde::Serializer>(at: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*at))
}

fn as_opt_rfc3339<S: serde::Serializer>(at: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&rfc3339(*at)),
        None => s.serialize_none(),
    }
}

/// A `reports` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reports)]
pub struct ReportRow {
    pub id: String,
    pub room_id: String,
    pub seq: i64,
    pub message_id: String,
    pub sender: String,
    pub reporter: String,
    pub reason: String,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

impl From<&StoredReport> for ReportRow {
    fn from(r: &StoredReport) -> Self {
        ReportRow {
            id: r.id.clone(),
            room_id: r.room.as_str().to_owned(),
            seq: r.seq,
            message_id: r.message_id.clone(),
            sender: r.sender.as_str().to_owned(),
            reporter: r.reporter.as_str().to_owned(),
            reason: r.reason.clone(),
            created_at: r.created_at,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by.as_ref().map(|u| u.as_str().to_owned()),
            resolution: r.resolution.clone(),
        }
    }
}

impl TryFrom<ReportRow> for StoredReport {
    type Error = diesel::result::Error;
    fn try_from(r: ReportRow) -> QueryResult<Self> {
        Ok(StoredReport {
            room: RoomId::parse(&r.room_id)
                .map_err(|_| bad_column("report", "room_id", &r.room_id))?,
            sender: parse_user_column("report", "sender", &r.sender)?,
            reporter: parse_user_column("report", "reporter", &r.reporter)?,
            resolved_by: r
                .resolved_by
                .as_deref()
                .map(|u| parse_user_column("report", "resolved_by", u))
                .transpose()?,
            id: r.id,
            seq: r.seq,
            message_id: r.message_id,
            reason: r.reason,
            created_at: r.created_at,
            resolved_at: r.resolved_at,
            resolution: r.resolution,
        })
    }
}

/// A consent write, checked and applied by the single writer.
#[derive(Debug, Clone)]
pub enum ConsentWrite {
    /// Invites `invitee` to the private `room` on behalf of its owner `inviter`: refused
    /// unless the room exists and is private, the inviter owns it, the invitee is not a
    /// member, has not blocked the inviter, and both are under their pending caps. A pending
    /// invitation of the same (room, invitee) is answered as it is (idempotent); an expired
    /// one is replaced.
    CreateInvitation {
        room: RoomId,
        invitee: UserId,
        inviter: UserId,
        at: Millis,
        expires_at: Millis,
        max_per_invitee: i64,
        max_per_inviter: i64,
    },
    /// Deletes the invitation of `invitee` to `room` (accepted, declined or revoked); with
    /// `inviter`, only one that inviter made. `Changed(true)` when one was deleted.
    DeleteInvitation {
        room: RoomId,
        invitee: UserId,
        inviter: Option<UserId>,
    },
    /// Adds `blocked` to `blocker`'s list unless it already holds `max` users.
    Block {
        blocker: UserId,
        blocked: UserId,
        at: Millis,
        max: i64,
    },
    /// Removes `blocked` from `blocker`'s list (`Changed`).
    Unblock { blocker: UserId, blocked: UserId },
    /// Stores a report unless its reporter already reported that message (then the stored
    /// one is answered).
    InsertReport { report: StoredReport },
    /// Marks a report resolved (a resolved one is left as it is).
    ResolveReport {
        id: String,
        by: UserId,
        resolution: Option<String>,
        at: Millis,
    },
}

/// Why the writer refused an invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteRefusal {
    NoRoom,
    NotPrivate,
    NotOwner,
    AlreadyMember,
    /// The invitee blocked the inviter.
    Blocked,
    InviteeFull,
    InviterFull,
}

/// The outcome of a [`ConsentWrite`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConsentOutcome {
    /// `CreateInvitation`: the invitation and whether it is new, or the refusal.
    Invitation(Result<(Invitation, bool), InviteRefusal>),
    /// `Block`: whether it was added (false: already blocked); `Err(())` when the list is full.
    Block(Result<bool, ()>),
    /// `InsertReport` / `ResolveReport`: the stored report (`None`: no such report) and
    /// whether the write changed it.
    Report(Option<StoredReport>, bool),
}

/// A consent read, answered by a database reader.
#[derive(Debug, Clone)]
pub enum ConsentRead {
    /// The invitee's invitations unexpired at `now`, oldest first, at most `limit`.
    PendingInvitations {
        invitee: UserId,
        now: Millis,
        limit: i64,
    },
    /// The unexpired invitation of `invitee` to `room`.
    Invitation {
        room: RoomId,
        invitee: UserId,
        now: Millis,
    },
    /// `blocker`'s block list, oldest first.
    Blocks { blocker: UserId },
    /// Which of `among` have blocked `user`.
    BlockersOf { user: UserId, among: Vec<UserId> },
    /// Everyone who blocked `user` (at most `limit`): hidden from `user`'s sessions in
    /// shared rooms' presence and typing.
    AllBlockersOf { user: UserId, limit: i64 },
    /// Whether `user` and `other` share a public or private room (direct rooms do not count).
    SharesGroupRoom { user: UserId, other: UserId },
    /// Whether `user` is a member of `room`.
    IsMember { room: RoomId, user: UserId },
    /// The message at (`room`, `seq`): its id and sender, if stored.
    Message { room: RoomId, seq: i64 },
    /// Reports newest first; `open` filters open (true) or resolved (false) ones; `before`
    /// is the (created_at, id) of the last report of the previous page.
    Reports {
        open: Option<bool>,
        before: Option<(Millis, String)>,
        limit: i64,
    },
}

/// The answer to a [`ConsentRead`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConsentAnswer {
    Invitations(Vec<Invitation>),
    Invitation(Option<Invitation>),
    Blocks(Vec<BlockEntry>),
    Users(Vec<UserId>),
    Flag(bool),
    Message(Option<(String, UserId)>),
    Reports(Vec<StoredReport>),
}
