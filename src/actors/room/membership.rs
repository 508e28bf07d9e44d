//! Membership: joining and leaving, invitations and removals over REST, private room
//! creation, and direct rooms coming into being with their first message. Capacity limits
//! (members per room, rooms per user) are checked here, atomically: a member slot is
//! reserved in the room before the write and given back when it answers, and the rooms-per-user
//! count is checked by the single writer in the transaction that adds the membership.

use actix::prelude::*;

use crate::actors::database::FetchHistory;
use crate::actors::session::handle::SessionHandle;
use crate::db::models::{MemberRole, StoredMessage, WriteOp};
use crate::domain::{now_millis, RoomKind, UserId};
use crate::error::{EngineError, PersistError};

use super::{room_slot_refusal, Room};

/// Who asks for a membership change, for authorization.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub admin: bool,
}

/// What a successful `join` returns.
#[derive(Debug, Clone)]
pub struct Joined {
    pub seq: i64,
    /// The first page of connected users (the joiner counts as connected).
    pub online: super::OnlineUsers,
    pub missed: Vec<StoredMessage>,
    pub has_more: bool,
    /// False when the user was a member already.
    pub new_member: bool,
}

/// Sent by the supervisor for a `join`: make the user a member if allowed, and fetch what they
/// missed after `since_seq`.
#[derive(Message)]
#[rtype(result = "Result<Joined, EngineError>")]
pub struct JoinMember {
    pub user: UserId,
    pub since_seq: Option<i64>,
    pub missed_limit: i64,
    /// Most bytes of bodies in `missed`.
    pub missed_max_bytes: usize,
    /// The user's live sessions, subscribed in the same turn as the membership takes effect.
    pub sessions: Vec<SessionHandle>,
    /// Most connected users listed in the ack (the rest are paged with `members`).
    pub members_limit: usize,
}

impl Handler<JoinMember> for Room {
    // A plain future driven through `InFlight`: a join storm puts hundreds of joins in flight
    // in one room, and actix would poll every actor future on each wake-up.
    type Result = ResponseFuture<Result<Joined, EngineError>>;
    fn handle(&mut self, msg: JoinMember, ctx: &mut Context<Self>) -> Self::Result {
        let already = self.is_member(&msg.user);
        // Access first (a stranger learns nothing about a private room's size), then capacity,
        // counting joins still being written (a user already holding a slot keeps it).
        if !already && self.id.kind() == RoomKind::Public && !self.joining.contains_key(&msg.user) {
            if let Err(e) = self.check_room_capacity() {
                return Box::pin(async move { Err(e) });
            }
        }
        let write = if already {
            None
        } else if self.id.kind() == RoomKind::Public {
            let at = now_millis();
            let mut ops = vec![self.claim_room_slot(&msg.user)];
            if !self.exists {
                ops.push(WriteOp::EnsureRoom {
                    room: self.id.clone(),
                    name: None,
                    created_by: Some(msg.user.clone()),
                    at,
                });
            }
            ops.push(WriteOp::AddMember {
                room: self.id.clone(),
                user: msg.user.clone(),
                role: MemberRole::Member,
                at,
            });
            self.reserve_slot(&msg.user);
            Some(self.commit(ops))
        } else {
            let why = if self.id.kind() == RoomKind::Direct {
                format!(
                    "{} is a direct room: only its two users are members",
                    self.id
                )
            } else {
                format!(
                    "room {} is private: only members invited by its owner or an admin may join",
                    self.id
                )
            };
            return Box::pin(async move { Err(EngineError::Forbidden(why)) });
        };
        let reader = self.store.reader.clone();
        let room = self.id.clone();
        let user = msg.user.clone();
        let max_rooms = self.policy.max_rooms_per_user;
        let joined_user = msg.user.clone();
        let answer = self.inflight.answer(
            async move {
                if let Some(w) = write {
                    room_slot_refusal(&w.await?, max_rooms)?;
                }
                Ok::<_, EngineError>(())
            },
            move |res, act: &mut Self, _| {
                if !already {
                    act.release_slot(&user);
                }
                if res.is_ok() {
                    act.exists = true;
                    act.members.entry(user).or_insert(MemberRole::Member);
                    for h in msg.sessions {
                        act.subscribers.insert(h);
                    }
                }
                let online = act.online_page(None, msg.members_limit, Some(&joined_user));
                (res, act.last_seq, online)
            },
            ctx,
        );
        Box::pin(async move {
            let Some((res, seq, online)) = answer.await else {
                return Err(EngineError::Unavailable(
                    "the room stopped before the join completed".into(),
                ));
            };
            res?;
            let (missed, has_more) = match msg.since_seq {
                Some(since) if since < seq && msg.missed_limit > 0 => reader
                    .send(FetchHistory {
                        room,
                        before_seq: None,
                        after_seq: Some(since),
                        limit: msg.missed_limit,
                        max_bytes: msg.missed_max_bytes,
                        reactions_for: None,
                    })
                    .await
                    .map_err(PersistError::from)
                    .and_then(|r| r)?,
                _ => (Vec::new(), false),
            };
            Ok(Joined {
                seq,
                online,
                missed,
                has_more,
                new_member: !already,
            })
        })
    }
}

/// Sent by the supervisor for a `leave`: end the membership.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct LeaveMember {
    pub user: UserId,
}

impl Handler<LeaveMember> for Room {
    type Result = ResponseActFuture<Self, Result<(), EngineError>>;
    fn handle(&mut self, msg: LeaveMember, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.require_member(&msg.user) {
            return Box::pin(fut::ready(Err(e)));
        }
        let write = self.commit(vec![WriteOp::RemoveMember {
            room: self.id.clone(),
            user: msg.user.clone(),
        }]);
        Box::pin(write.into_actor(self).map(move |res, act, _| {
            res?;
            act.members.remove(&msg.user);
            act.online_anywhere.remove(&msg.user);
            act.end_typing(&msg.user);
            act.subscribers.retain(|s| s.user != msg.user);
            Ok(())
        }))
    }
}

/// Sent by the supervisor (REST): add a member; the owner or an admin may.
#[derive(Message)]
#[rtype(result = "Result<bool, EngineError>")]
pub struct AddMember {
    pub user: UserId,
    pub by: Caller,
}

impl Handler<AddMember> for Room {
    type Result = ResponseActFuture<Self, Result<bool, EngineError>>;
    fn handle(&mut self, msg: AddMember, _: &mut Context<Self>) -> Self::Result {
        let check = if !self.exists {
            Err(EngineError::NotFound(format!(
                "room {} does not exist",
                self.id
            )))
        } else if self.id.kind() == RoomKind::Direct {
            Err(EngineError::Forbidden(
                "a direct room always has exactly its two users".into(),
            ))
        } else if !(msg.by.admin || self.members.get(&msg.by.user) == Some(&MemberRole::Owner)) {
            Err(EngineError::Forbidden(format!(
                "only the room owner or an admin may add members to {}",
                self.id
            )))
        } else {
            Ok(())
        };
        if let Err(e) = check {
            return Box::pin(fut::ready(Err(e)));
        }
        if self.is_member(&msg.user) {
            return Box::pin(fut::ready(Ok(false)));
        }
        let op = WriteOp::AddMember {
            room: self.id.clone(),
            user: msg.user.clone(),
            role: MemberRole::Member,
            at: now_millis(),
        };
        if !self.joining.contains_key(&msg.user) {
            if let Err(e) = self.check_room_capacity() {
                return Box::pin(fut::ready(Err(e)));
            }
        }
        let max_rooms = self.policy.max_rooms_per_user;
        let write = self.commit(vec![self.claim_room_slot(&msg.user), op]);
        self.reserve_slot(&msg.user);
        Box::pin(
            async move { room_slot_refusal(&write.await?, max_rooms) }
                .into_actor(self)
                .map(move |res, act, _| {
                    act.release_slot(&msg.user);
                    res?;
                    act.members.entry(msg.user).or_insert(MemberRole::Member);
                    Ok(true)
                }),
        )
    }
}

/// Sent by the supervisor (REST): remove a member; the owner, an admin or the member may.
#[derive(Message)]
#[rtype(result = "Result<bool, EngineError>")]
pub struct RemoveMember {
    pub user: UserId,
    pub by: Caller,
}

impl Handler<RemoveMember> for Room {
    type Result = ResponseActFuture<Self, Result<bool, EngineError>>;
    fn handle(&mut self, msg: RemoveMember, _: &mut Context<Self>) -> Self::Result {
        let allowed = msg.by.admin
            || msg.by.user == msg.user
            || self.members.get(&msg.by.user) == Some(&MemberRole::Owner);
        if !self.exists {
            return Box::pin(fut::ready(Err(EngineError::NotFound(format!(
                "room {} does not exist",
                self.id
            )))));
        }
        if !allowed {
            return Box::pin(fut::ready(Err(EngineError::Forbidden(format!(
                "only the room owner or an admin may remove members of {}",
                self.id
            )))));
        }
        if !self.is_member(&msg.user) {
            return Box::pin(fut::ready(Ok(false)));
        }
        let op = WriteOp::RemoveMember {
            room: self.id.clone(),
            user: msg.user.clone(),
        };
        Box::pin(
            self.commit(vec![op])
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    act.members.remove(&msg.user);
                    act.online_anywhere.remove(&msg.user);
                    act.end_typing(&msg.user);
                    act.subscribers.retain(|s| s.user != msg.user);
                    Ok(true)
                }),
        )
    }
}

/// Sent by the supervisor (REST `POST /v1/rooms`) to a freshly started private room.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct CreatePrivate {
    pub owner: UserId,
    pub name: String,
}

impl Handler<CreatePrivate> for Room {
    type Result = ResponseActFuture<Self, Result<(), EngineError>>;
    fn handle(&mut self, msg: CreatePrivate, _: &mut Context<Self>) -> Self::Result {
        if self.exists {
            return Box::pin(fut::ready(Err(EngineError::Conflict(format!(
                "room {} already exists",
                self.id
            )))));
        }
        let at = now_millis();
        let ops = vec![
            self.claim_room_slot(&msg.owner),
            WriteOp::EnsureRoom {
                room: self.id.clone(),
                name: Some(msg.name.clone()),
                created_by: Some(msg.owner.clone()),
                at,
            },
            WriteOp::AddMember {
                room: self.id.clone(),
                user: msg.owner.clone(),
                role: MemberRole::Owner,
                at,
            },
        ];
        let max_rooms = self.policy.max_rooms_per_user;
        let write = self.commit(ops);
        let work = async move { room_slot_refusal(&write.await?, max_rooms) };
        Box::pin(work.into_actor(self).map(move |res, act, _| {
            res?;
            act.exists = true;
            act.name = Some(msg.name);
            act.members.insert(msg.owner, MemberRole::Owner);
            Ok(())
        }))
    }
}

/// Sent by the supervisor before the first direct message: make sure the direct room and both
/// memberships exist. Answers the users that became members.
#[derive(Message)]
#[rtype(result = "Result<Vec<UserId>, EngineError>")]
pub struct EnsureDirect;

impl Handler<EnsureDirect> for Room {
    type Result = ResponseActFuture<Self, Result<Vec<UserId>, EngineError>>;
    fn handle(&mut self, _: EnsureDirect, _: &mut Context<Self>) -> Self::Result {
        let Some((a, b)) = self.id.direct_users() else {
            return Box::pin(fut::ready(Err(EngineError::Internal(format!(
                "{} is not a direct room",
                self.id
            )))));
        };
        let missing: Vec<UserId> = [a, b].into_iter().filter(|u| !self.is_member(u)).collect();
        if missing.is_empty() {
            return Box::pin(fut::ready(Ok(Vec::new())));
        }
        let at = now_millis();
        let mut ops: Vec<WriteOp> = missing.iter().map(|u| self.claim_room_slot(u)).collect();
        if !self.exists {
            ops.push(WriteOp::EnsureRoom {
                room: self.id.clone(),
                name: None,
                created_by: None,
                at,
            });
        }
        for u in &missing {
            ops.push(WriteOp::AddMember {
                room: self.id.clone(),
                user: u.clone(),
                role: MemberRole::Member,
                at,
            });
        }
        let max_rooms = self.policy.max_rooms_per_user;
        let write = self.commit(ops);
        let work = async move { room_slot_refusal(&write.await?, max_rooms) };
        Box::pin(work.into_actor(self).map(move |res, act, _| {
            res?;
            act.exists = true;
            for u in &missing {
                act.members.insert(u.clone(), MemberRole::Member);
            }
            Ok(missing)
        }))
    }
}
