//! Requests the room supervisor routes to a room: `Join`, `Leave`, `RoutePublish`,
//! `RouteTyping`, `RouteEvent`, `RouteChange`, `RouteChanges`, `RouteReceipt`, `RouteRead`
//! (`history`, `members`), `CreateRoom`, `ChangeMember`, `PresenceChanged` and `GetRoom`,
//! with the refusals it answers without starting a room.

use super::*;
use crate::actors::room::{
    AddMember, BroadcastPresence, Caller, ChangeMessage, CreatePrivate, EnsureDirect, History,
    JoinMember, Joined, LeaveMember, OnlinePage, Publish, Published, Receipt, RelayEvent,
    RemoveMember, Room, RoomChanges, Typing,
};
use crate::db::models::MemberRole;
use crate::db::models::StoredChange;

/// Sent for a `join`.
#[derive(Message)]
#[rtype(result = "Result<Joined, EngineError>")]
pub struct Join {
    pub user: UserId,
    pub room: RoomId,
    pub since_seq: Option<i64>,
    pub missed_limit: i64,
    pub missed_max_bytes: usize,
    pub members_limit: usize,
}

impl Handler<Join> for RoomSupervisor {
    type Result = ResponseFuture<Result<Joined, EngineError>>;
    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        // Only `public:` rooms are joined by asking; a private or direct room the user is
        // known not to be in is refused without starting it.
        if msg.room.kind() != RoomKind::Public
            && self.knows_member(&msg.user, &msg.room) == Some(false)
        {
            let e = EngineError::no_access(&msg.room);
            return Box::pin(async move { Err(e) });
        }
        let fresh = !self.rooms.contains_key(&msg.room);
        let addr = self.room(&msg.room);
        let started = self
            .rooms
            .get(&msg.room)
            .map(|e| e.last_used)
            .filter(|_| fresh);
        let (deadline, room) = (self.load_deadline(&msg.room), msg.room.clone());
        let q = JoinMember {
            user: msg.user.clone(),
            since_seq: msg.since_seq,
            missed_limit: msg.missed_limit,
            missed_max_bytes: msg.missed_max_bytes,
            sessions: self.handles_of(&msg.user),
            members_limit: msg.members_limit,
        };
        let answer = self.inflight.answer(
            addr.send(q),
            move |res, act: &mut Self, _| {
                let joined = match res {
                    Ok(Ok(j)) => j,
                    Ok(Err(e)) => {
                        // A refused join must not leave a room actor behind.
                        if let Some(started) = started {
                            act.drop_unused_room(&msg.room, started);
                        }
                        return Err(e);
                    }
                    Err(e) => return Err(e.into()),
                };
                act.subscribe_user(&msg.user, &msg.room, false);
                act.announce_member(&msg.user, &msg.room, Some(MemberRole::Member));
                Ok(joined)
            },
            ctx,
        );
        Box::pin(within(deadline, room, async move {
            answer.await.unwrap_or_else(|| Err(supervisor_stopped()))
        }))
    }
}

/// Sent for a `leave`.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Leave {
    pub user: UserId,
    pub room: RoomId,
}

impl Handler<Leave> for RoomSupervisor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.room(&msg.room);
        let (deadline, room) = (self.load_deadline(&msg.room), msg.room.clone());
        let answer = self.inflight.answer(
            addr.send(LeaveMember {
                user: msg.user.clone(),
            }),
            move |res, act: &mut Self, _| {
                res??;
                act.unsubscribe_user(&msg.user, &msg.room);
                act.announce_member(&msg.user, &msg.room, None);
                Ok(())
            },
            ctx,
        );
        Box::pin(within(deadline, room, async move {
            answer.await.unwrap_or_else(|| Err(supervisor_stopped()))
        }))
    }
}

fn supervisor_stopped() -> EngineError {
    EngineError::Unavailable("the room supervisor is shutting down".into())
}

/// `answer`, or `unavailable` once `deadline` (see [`RoomSupervisor::load_deadline`]) has
/// passed. A request sent straight to the room is then withdrawn (actix skips a queued
/// request nobody waits for: a `send` stores nothing); one running through the in-flight set
/// (join, leave, history) may still be carried out once the room loads, as a write that timed
/// out may still commit. Retrying is safe either way.
pub(super) async fn within<T>(
    deadline: Option<Duration>,
    room: RoomId,
    answer: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    let Some(d) = deadline else {
        return answer.await;
    };
    actix::clock::timeout(d, answer).await.unwrap_or_else(|_| {
        Err(EngineError::Unavailable(format!(
            "room {room} is still loading: storage cannot be reached; retry"
        )))
    })
}

/// Sent for a `send` (to a room, or with `to` already turned into the direct room).
#[derive(Message)]
#[rtype(result = "Result<Published, EngineError>")]
pub struct RoutePublish {
    pub room: RoomId,
    pub publish: Publish,
}

impl Handler<RoutePublish> for RoomSupervisor {
    // A plain future, not an actor future: actix polls every actor future of a context on
    // each wake-up, and thousands of sends can be waiting for their commit at once.
    type Result = ResponseFuture<Result<Published, EngineError>>;
    fn handle(&mut self, msg: RoutePublish, ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.room(&msg.room);
        // Only the two users of a direct room may bring it into being; anyone else is
        // refused by the room as a non-member.
        let creates = msg.room.direct_users().is_some_and(|(a, b)| {
            msg.publish.message.sender == a || msg.publish.message.sender == b
        });
        let ready = self.rooms.get(&msg.room).is_some_and(|e| e.direct_ready);
        let deadline = self.load_deadline(&msg.room);
        if !creates || ready {
            return Box::pin(within(deadline, msg.room, async move {
                addr.send(msg.publish).await?
            }));
        }
        // Direct rooms come into being with their first message: make sure both users are
        // members and subscribed before the message can fan out.
        let me = ctx.address();
        let room = msg.room;
        let publish = msg.publish;
        let ensure = within(deadline, room.clone(), async move {
            addr.send(EnsureDirect).await?
        });
        Box::pin(async move {
            let added = ensure.await?;
            let addr = me.send(DirectReady { room, added }).await?;
            addr.send(publish).await?
        })
    }
}

/// Sent to itself once a direct room's memberships exist: subscribes the users that just
/// became members and answers the room's address.
#[derive(Message)]
#[rtype(result = "Addr<Room>")]
struct DirectReady {
    room: RoomId,
    added: Vec<UserId>,
}

impl Handler<DirectReady> for RoomSupervisor {
    type Result = MessageResult<DirectReady>;
    fn handle(&mut self, msg: DirectReady, _: &mut Context<Self>) -> Self::Result {
        for u in &msg.added {
            self.subscribe_user(u, &msg.room, true);
        }
        let addr = self.room(&msg.room);
        if let Some(e) = self.rooms.get_mut(&msg.room) {
            e.direct_ready = true;
        }
        MessageResult(addr)
    }
}

/// Sent for requests that only need the room: typing, receipts, history.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RouteTyping {
    pub room: RoomId,
    pub typing: Typing,
}

impl Handler<RouteTyping> for RoomSupervisor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: RouteTyping, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.refuse_stranger(&msg.typing.user, &msg.room) {
            return Box::pin(async move { Err(e) });
        }
        let addr = self.room(&msg.room);
        let deadline = self.load_deadline(&msg.room);
        Box::pin(within(deadline, msg.room, async move {
            addr.send(msg.typing).await?
        }))
    }
}

/// Sent for `edit`, `delete`, `react` (socket and REST): the room checks and writes it.
#[derive(Message)]
#[rtype(result = "Result<Option<StoredChange>, EngineError>")]
pub struct RouteChange {
    pub room: RoomId,
    pub change: ChangeMessage,
}

impl Handler<RouteChange> for RoomSupervisor {
    type Result = ResponseFuture<Result<Option<StoredChange>, EngineError>>;
    fn handle(&mut self, msg: RouteChange, _: &mut Context<Self>) -> Self::Result {
        if !msg.change.by.admin {
            if let Err(e) = self.refuse_stranger(&msg.change.by.user, &msg.room) {
                return Box::pin(async move { Err(e) });
            }
        }
        let addr = self.room(&msg.room);
        let deadline = self.load_deadline(&msg.room);
        Box::pin(within(deadline, msg.room, async move {
            addr.send(msg.change).await?
        }))
    }
}

/// Sent for `changes`: a page of the room's change log.
#[derive(Message)]
#[rtype(result = "Result<(Vec<StoredChange>, bool), EngineError>")]
pub struct RouteChanges {
    pub room: RoomId,
    pub query: RoomChanges,
}

impl Handler<RouteChanges> for RoomSupervisor {
    type Result = ResponseFuture<Result<(Vec<StoredChange>, bool), EngineError>>;
    fn handle(&mut self, msg: RouteChanges, _: &mut Context<Self>) -> Self::Result {
        if !msg.query.by.admin {
            if let Err(e) = self.refuse_stranger(&msg.query.by.user, &msg.room) {
                return Box::pin(async move { Err(e) });
            }
        }
        let addr = self.room(&msg.room);
        let deadline = self.load_deadline(&msg.room);
        Box::pin(within(deadline, msg.room, async move {
            addr.send(msg.query).await?
        }))
    }
}

/// Sent for a custom `event`: relayed by the room to its other members.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RouteEvent {
    pub room: RoomId,
    pub event: RelayEvent,
}

impl Handler<RouteEvent> for RoomSupervisor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: RouteEvent, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.refuse_stranger(&msg.event.user, &msg.room) {
            return Box::pin(async move { Err(e) });
        }
        let addr = self.room(&msg.room);
        let deadline = self.load_deadline(&msg.room);
        Box::pin(within(deadline, msg.room, async move {
            addr.send(msg.event).await?
        }))
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RouteReceipt {
    pub room: RoomId,
    pub receipt: Receipt,
}

impl Handler<RouteReceipt> for RoomSupervisor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: RouteReceipt, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.refuse_stranger(&msg.receipt.user, &msg.room) {
            return Box::pin(async move { Err(e) });
        }
        let addr = self.room(&msg.room);
        let deadline = self.load_deadline(&msg.room);
        Box::pin(within(deadline, msg.room, async move {
            addr.send(msg.receipt).await?
        }))
    }
}

/// A read of a room on behalf of a member (`history`, `members`; admins read `history` over
/// REST): strangers the supervisor knows of are refused without starting the room, and a
/// room started for a read that was refused does not stay behind.
pub struct RouteRead<M> {
    pub room: RoomId,
    pub read: M,
}

/// Who makes a [`RouteRead`]: `None` for an admin, who reads any room.
pub trait MemberRead {
    fn reader(&self) -> Option<&UserId>;
}

impl MemberRead for History {
    fn reader(&self) -> Option<&UserId> {
        (!self.admin).then_some(&self.user)
    }
}

impl MemberRead for OnlinePage {
    fn reader(&self) -> Option<&UserId> {
        Some(&self.user)
    }
}

impl<M, T> Message for RouteRead<M>
where
    M: Message<Result = Result<T, EngineError>>,
    T: 'static,
{
    type Result = Result<T, EngineError>;
}

impl<M, T> Handler<RouteRead<M>> for RoomSupervisor
where
    M: Message<Result = Result<T, EngineError>> + MemberRead + Send + 'static,
    T: Send + 'static,
    Room: Handler<M>,
{
    type Result = ResponseFuture<Result<T, EngineError>>;
    fn handle(&mut self, msg: RouteRead<M>, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(user) = msg.read.reader() {
            if let Err(e) = self.refuse_stranger(user, &msg.room) {
                return Box::pin(async move { Err(e) });
            }
        }
        let fresh = !self.rooms.contains_key(&msg.room);
        let addr = self.room(&msg.room);
        let deadline = self.load_deadline(&msg.room);
        let started = self
            .rooms
            .get(&msg.room)
            .map(|e| e.last_used)
            .filter(|_| fresh);
        let Some(started) = started else {
            return Box::pin(within(deadline, msg.room, async move {
                addr.send(msg.read).await?
            }));
        };
        // Started for this request alone (REST, or a session whose rooms are still
        // loading): a refusal must not leave the room actor behind for `room_idle`.
        let room = msg.room;
        let answer = self.inflight.answer(
            addr.send(msg.read),
            {
                let room = room.clone();
                move |res, act: &mut Self, _| {
                    let res = res?;
                    if res.is_err() {
                        act.drop_unused_room(&room, started);
                    }
                    res
                }
            },
            ctx,
        );
        Box::pin(within(deadline, room, async move {
            answer.await.unwrap_or_else(|| Err(supervisor_stopped()))
        }))
    }
}

/// Sent by `POST /v1/rooms`: create a private room owned by `owner`.
#[derive(Message)]
#[rtype(result = "Result<RoomId, EngineError>")]
pub struct CreateRoom {
    pub owner: UserId,
    pub name: String,
}

impl Handler<CreateRoom> for RoomSupervisor {
    type Result = ResponseActFuture<Self, Result<RoomId, EngineError>>;
    fn handle(&mut self, msg: CreateRoom, _: &mut Context<Self>) -> Self::Result {
        let id = RoomId::new_private();
        let addr = self.room(&id);
        let owner = msg.owner.clone();
        Box::pin(
            addr.send(CreatePrivate {
                owner: msg.owner,
                name: msg.name,
            })
            .into_actor(self)
            .map(move |res, act, _| {
                res??;
                act.subscribe_user(&owner, &id, true);
                Ok(id)
            }),
        )
    }
}

/// Sent by the members routes: add (`add: true`) or remove a member.
#[derive(Message)]
#[rtype(result = "Result<bool, EngineError>")]
pub struct ChangeMember {
    pub room: RoomId,
    pub user: UserId,
    pub by: Caller,
    pub add: bool,
}

impl Handler<ChangeMember> for RoomSupervisor {
    type Result = ResponseActFuture<Self, Result<bool, EngineError>>;
    fn handle(&mut self, msg: ChangeMember, _: &mut Context<Self>) -> Self::Result {
        let addr = self.room(&msg.room);
        let (room, user, add) = (msg.room.clone(), msg.user.clone(), msg.add);
        let fut = async move {
            if add {
                addr.send(AddMember {
                    user: msg.user,
                    by: msg.by,
                })
                .await?
            } else {
                addr.send(RemoveMember {
                    user: msg.user,
                    by: msg.by,
                })
                .await?
            }
        };
        Box::pin(fut.into_actor(self).map(move |res, act, _| {
            let changed = res?;
            if add {
                act.subscribe_user(&user, &room, true);
                act.announce_member(&user, &room, Some(MemberRole::Member));
            } else {
                act.unsubscribe_user(&user, &room);
                act.announce_member(&user, &room, None);
            }
            Ok(changed)
        }))
    }
}

/// Sent by the presence registry: `about` changed; tell the members of these rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PresenceChanged {
    pub about: UserId,
    pub rooms: Vec<RoomId>,
    pub joins: Arc<Vec<PresenceView>>,
    pub leaves: Arc<Vec<PresenceView>>,
}

impl Handler<PresenceChanged> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: PresenceChanged, _: &mut Context<Self>) {
        for room in &msg.rooms {
            // Only live rooms have subscribers to tell.
            if let Some(e) = self.rooms.get(room) {
                e.addr.do_send(BroadcastPresence {
                    about: msg.about.clone(),
                    joins: msg.joins.clone(),
                    leaves: msg.leaves.clone(),
                });
            }
        }
    }
}

/// Asked by the engine for requests that need only the room actor: its address (started if
/// needed).
#[derive(Message)]
#[rtype(result = "Addr<Room>")]
pub struct GetRoom {
    pub room: RoomId,
}

impl Handler<GetRoom> for RoomSupervisor {
    type Result = MessageResult<GetRoom>;
    fn handle(&mut self, msg: GetRoom, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.room(&msg.room))
    }
}
