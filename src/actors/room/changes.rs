//! Edits, deletes and reactions (`ChangeMessage`) and the room's change log (`RoomChanges`):
//! checked against membership and the room's roles, written in one transaction with the
//! room's next change seq, then announced to every subscriber (the actor's own sessions
//! too) and to the other nodes. A change to a message never moves its seq.

use actix::prelude::*;

use super::{Caller, Room};
use crate::actors::database::FetchChanges;
use crate::db::models::{
    ChangeRefusal, ChangeResult, ChangeRules, MemberRole, MessageChange, StoredChange, WriteOp,
    WriteOutcome,
};
use crate::domain::now_millis;
use crate::error::EngineError;
use crate::protocol::ServerFrame;

/// Sent by the supervisor for `edit`, `delete` and `react` (socket frames and REST).
/// Answers the logged change, or `None` when nothing changed (changes are idempotent).
#[derive(Message)]
#[rtype(result = "Result<Option<StoredChange>, EngineError>")]
pub struct ChangeMessage {
    pub by: Caller,
    pub seq: i64,
    pub change: MessageChange,
}

impl Handler<ChangeMessage> for Room {
    type Result = ResponseActFuture<Self, Result<Option<StoredChange>, EngineError>>;
    fn handle(&mut self, msg: ChangeMessage, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.require_member_or_admin(&msg.by) {
            return Box::pin(fut::ready(Err(e)));
        }
        let rules = ChangeRules {
            actor: msg.by.user.clone(),
            moderator: msg.by.admin || self.members.get(&msg.by.user) == Some(&MemberRole::Owner),
            edit_window_ms: self.policy.edit_window.as_millis() as i64,
            max_reactions: self.policy.max_reactions_per_message,
        };
        let (room, seq) = (self.id.clone(), msg.seq);
        let op = WriteOp::ChangeMessage {
            room: room.clone(),
            seq,
            change: msg.change,
            rules,
            at: now_millis(),
        };
        Box::pin(
            self.commit(vec![op])
                .into_actor(self)
                .map(move |res, act, _| match res?.into_iter().next() {
                    Some(WriteOutcome::Change(ChangeResult::Applied(change))) => {
                        let frame = ServerFrame::change(&change);
                        act.broadcast(&frame, |_| true);
                        act.publish_frame(&frame, None, None);
                        Ok(Some(change))
                    }
                    Some(WriteOutcome::Change(ChangeResult::Unchanged)) => Ok(None),
                    Some(WriteOutcome::Change(ChangeResult::Refused(r))) => {
                        Err(refusal(r, &room, seq))
                    }
                    _ => Err(EngineError::Internal(
                        "the change write answered no change outcome".into(),
                    )),
                }),
        )
    }
}

fn refusal(r: ChangeRefusal, room: &crate::domain::RoomId, seq: i64) -> EngineError {
    match r {
        ChangeRefusal::NoSuchMessage => {
            EngineError::NotFound(format!("room {room} has no message {seq}"))
        }
        ChangeRefusal::NotYours => EngineError::Forbidden(format!(
            "message {seq} of {room} is not yours: only its sender edits it, and only its sender, the room's owner or an admin deletes it"
        )),
        ChangeRefusal::WindowPassed => EngineError::Forbidden(format!(
            "message {seq} of {room} is older than the edit window"
        )),
        ChangeRefusal::Deleted => {
            EngineError::Conflict(format!("message {seq} of {room} was deleted"))
        }
        ChangeRefusal::TooManyReactions(max) => EngineError::LimitExceeded(format!(
            "message {seq} of {room} already has {max} different reactions, the limit"
        )),
        ChangeRefusal::InvalidBody(m) => EngineError::Invalid(m),
    }
}

/// Sent by the supervisor for `changes`: a page of the room's change log after `after`,
/// and whether more follow. Members only (admins over REST).
#[derive(Message)]
#[rtype(result = "Result<(Vec<StoredChange>, bool), EngineError>")]
pub struct RoomChanges {
    pub by: Caller,
    pub after: i64,
    pub limit: i64,
}

impl Handler<RoomChanges> for Room {
    type Result = ResponseFuture<Result<(Vec<StoredChange>, bool), EngineError>>;
    fn handle(&mut self, msg: RoomChanges, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.require_member_or_admin(&msg.by) {
            return Box::pin(async move { Err(e) });
        }
        let reader = self.store.reader.clone();
        let q = FetchChanges {
            room: self.id.clone(),
            after: msg.after,
            limit: msg.limit,
        };
        Box::pin(async move { Ok(reader.send(q).await.map_err(EngineError::from)??) })
    }
}

impl Room {
    /// A member (or, over REST, an admin) may; an admin gets `not_found` for a room that
    /// does not exist.
    fn require_member_or_admin(&self, by: &Caller) -> Result<(), EngineError> {
        if !by.admin {
            return self.require_member(&by.user);
        }
        if !self.exists {
            return Err(EngineError::NotFound(format!(
                "room {} does not exist",
                self.id
            )));
        }
        Ok(())
    }
}
