//! `Room`: one actor per active room, started and stopped by the
//! [`RoomSupervisor`](super::room_supervisor::RoomSupervisor).
//!
//! It owns the room's membership (loaded from the database when it starts), the sessions
//! subscribed to it, its typing indicators and its write pipeline: messages are appended
//! through the [`CommitQueue`](super::commit_queue::CommitQueue) one batch at a time, seqs are
//! assigned inside that transaction, and the room fans a message out only after the commit
//! that also releases the sender's ack — so no client ever sees a seq that could be reused.
//! Every broadcast frame is encoded once and shared by all recipients.
//!
//! Sends to: sessions (`Deliver`, via `try_send`), the commit queue and the database readers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;
use serde_json::json;
use tokio::sync::oneshot;

use super::commit_queue::Commit;
use super::database::{CountUserRooms, FetchHistory, FetchMessageStatus, LoadRoom};
use super::notification_center::Notify;
use super::session::{DeliverOutcome, FrameMeta, SessionHandle};
use crate::db::models::{MemberRole, NewMessage, StoredMessage, WriteOp, WriteOutcome};
use crate::domain::{now_millis, rfc3339, ReceiptStatus, RoomId, RoomKind, SessionId, UserId};
use crate::engine::Store;
use crate::error::{EngineError, PersistError};
use crate::metrics::METRICS;
use crate::notification::{NotificationSource, NotificationSpec};
use crate::protocol::{self, MessageObject, PresenceView, TypingState};

/// Who asks for a membership change, for authorization.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub admin: bool,
}

/// Per-room policy, from `Settings`.
#[derive(Debug, Clone, Copy)]
pub struct RoomPolicy {
    /// A `start` without `stop` ends after this long.
    pub typing_timeout: std::time::Duration,
    /// Most `start` broadcasts per user per second.
    pub typing_rate: u32,
    /// Window in which presence changes are merged into one `room_presence` diff.
    pub presence_coalesce: std::time::Duration,
    /// Most members of one room.
    pub max_room_members: usize,
    /// Most rooms one user may be a member of.
    pub max_rooms_per_user: usize,
}

/// Notifications a stored message may cause (mentions, direct messages to offline users).
#[derive(Clone)]
pub struct MessageNotifier {
    pub center: Recipient<Notify>,
    pub mentions: bool,
    pub offline_direct: bool,
}

impl MessageNotifier {
    /// Sends the notifications `m` causes, given the room's members and live subscribers.
    fn after_message(
        &self,
        room: &RoomId,
        m: &StoredMessage,
        members: &HashMap<UserId, MemberRole>,
        subscribers: &HashMap<SessionId, SessionHandle>,
    ) {
        let Ok(from) = UserId::parse(&m.from) else {
            return;
        };
        let text = if m.kind == "text" {
            serde_json::from_str::<serde_json::Value>(&m.body)
                .ok()
                .and_then(|b| b["text"].as_str().map(str::to_owned))
        } else {
            None
        };
        let preview = text
            .clone()
            .unwrap_or_else(|| format!("[{}]", m.kind))
            .chars()
            .take(200)
            .collect::<String>();
        let priority = crate::domain::Priority::parse(&m.priority).unwrap_or_default();
        let data = json!({"room": room, "message_id": m.id, "seq": m.seq, "from": m.from});
        let source = NotificationSource {
            user: Some(from.clone()),
            room: Some(room.clone()),
        };
        let mut mentioned: Vec<UserId> = Vec::new();
        if self.mentions {
            if let Some(t) = &text {
                mentioned = crate::notification::mentions(t)
                    .into_iter()
                    .filter(|u| *u != from && members.contains_key(u))
                    .collect();
            }
        }
        if !mentioned.is_empty() {
            self.center.do_send(Notify {
                users: mentioned.clone(),
                spec: NotificationSpec {
                    notification_type: "mention".into(),
                    title: format!("{from} mentioned you in {room}"),
                    message: preview.clone(),
                    image_url: None,
                    actions: Vec::new(),
                    data: data.clone(),
                    priority,
                    expires_at: None,
                },
                idempotency_key: Some(format!("mention:{}", m.id)),
                source: source.clone(),
            });
        }
        if self.offline_direct {
            if let Some((a, b)) = room.direct_users() {
                let to = if a == from { b } else { a };
                let online = subscribers.values().any(|s| s.user == to);
                if !online && !mentioned.contains(&to) {
                    self.center.do_send(Notify {
                        users: vec![to],
                        spec: NotificationSpec {
                            notification_type: "message".into(),
                            title: format!("New message from {from}"),
                            message: preview,
                            image_url: None,
                            actions: Vec::new(),
                            data,
                            priority,
                            expires_at: None,
                        },
                        idempotency_key: Some(format!("message:{}", m.id)),
                        source,
                    });
                }
            }
        }
    }
}

struct TypingEntry {
    generation: u64,
    announced_at: std::time::Instant,
}

struct PendingPublish {
    message: NewMessage,
    origin: Option<SessionId>,
    reply: oneshot::Sender<Result<Published, EngineError>>,
}

pub struct Room {
    id: RoomId,
    store: Store,
    policy: RoomPolicy,
    notifier: MessageNotifier,
    /// False until the room row exists in the database.
    exists: bool,
    name: Option<String>,
    last_seq: i64,
    members: HashMap<UserId, MemberRole>,
    subscribers: HashMap<SessionId, SessionHandle>,
    /// Shared with the supervisor so its idle sweep can read it without a round trip.
    subscriber_count: Arc<AtomicUsize>,
    pending: Vec<PendingPublish>,
    writing: bool,
    /// Typing users and the generation of their last `start` (a newer start resets the timer).
    typing: HashMap<UserId, TypingEntry>,
    typing_generation: u64,
    /// Presence changes waiting for the coalescing window: user → (view, is_join).
    presence_pending: HashMap<UserId, (PresenceView, bool)>,
    presence_flush_scheduled: bool,
    stopping: bool,
}

impl Room {
    pub fn new(
        id: RoomId,
        store: Store,
        policy: RoomPolicy,
        notifier: MessageNotifier,
        subscriber_count: Arc<AtomicUsize>,
    ) -> Self {
        Room {
            id,
            store,
            policy,
            notifier,
            exists: false,
            name: None,
            last_seq: 0,
            members: HashMap::new(),
            subscribers: HashMap::new(),
            subscriber_count,
            pending: Vec::new(),
            writing: false,
            typing: HashMap::new(),
            typing_generation: 0,
            presence_pending: HashMap::new(),
            presence_flush_scheduled: false,
            stopping: false,
        }
    }

    fn is_member(&self, user: &UserId) -> bool {
        self.members.contains_key(user)
    }

    fn require_member(&self, user: &UserId) -> Result<(), EngineError> {
        if self.is_member(user) {
            Ok(())
        } else {
            Err(EngineError::no_access(&self.id))
        }
    }

    /// Sends one encoded frame to every subscriber accepted by `to`, dropping the ones that
    /// are gone or too slow.
    fn broadcast(&mut self, frame: &ByteString, to: impl Fn(&SessionHandle) -> bool) {
        self.broadcast_with(frame, None, to)
    }

    fn broadcast_with(
        &mut self,
        frame: &ByteString,
        meta: Option<Arc<FrameMeta>>,
        to: impl Fn(&SessionHandle) -> bool,
    ) {
        let mut dropped = Vec::new();
        for (id, s) in &self.subscribers {
            if !to(s) {
                continue;
            }
            match s.deliver(frame, meta.as_ref()) {
                DeliverOutcome::Queued => METRICS.frames_out.inc(),
                DeliverOutcome::SlowConsumer => {
                    METRICS.slow_consumers.inc();
                    log::info!(
                        "room {}: session {} of {} is a slow consumer, dropped",
                        self.id,
                        id,
                        s.user
                    );
                    dropped.push(*id);
                }
                DeliverOutcome::Gone => dropped.push(*id),
            }
        }
        for id in dropped {
            self.subscribers.remove(&id);
        }
        self.subscriber_count
            .store(self.subscribers.len(), Ordering::Relaxed);
    }

    fn fan_out_message(&mut self, m: &StoredMessage, origin: Option<SessionId>) {
        let frame: ByteString = protocol::event("message", &MessageObject::new(m)).into();
        let meta = UserId::parse(&m.from).ok().map(|from| {
            Arc::new(FrameMeta::Message {
                room: self.id.clone(),
                seq: m.seq,
                from,
            })
        });
        self.broadcast_with(&frame, meta, |s| Some(s.id) != origin);
    }

    fn flush_pending(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let mut messages = Vec::with_capacity(batch.len());
        let mut waiters = Vec::with_capacity(batch.len());
        for p in batch {
            messages.push(p.message);
            waiters.push((p.origin, p.reply));
        }
        self.writing = true;
        let ops = vec![WriteOp::AppendMessages {
            room: self.id.clone(),
            messages,
        }];
        self.store
            .commits
            .send(Commit { ops })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.writing = false;
                let appended = match res.map_err(PersistError::from).and_then(|r| r) {
                    Ok(mut outcomes) => match outcomes.pop() {
                        Some(WriteOutcome::Appended(list)) if list.len() == waiters.len() => {
                            Ok(list)
                        }
                        other => Err(EngineError::Internal(format!(
                            "unexpected append outcome {other:?}"
                        ))),
                    },
                    Err(e) => Err(EngineError::from(e)),
                };
                match appended {
                    Ok(list) => {
                        for ((origin, reply), a) in waiters.into_iter().zip(list) {
                            if !a.duplicate {
                                METRICS.messages_in.inc();
                                act.notifier.after_message(
                                    &act.id,
                                    &a.message,
                                    &act.members,
                                    &act.subscribers,
                                );
                                act.last_seq = act.last_seq.max(a.message.seq);
                                act.fan_out_message(&a.message, origin);
                            }
                            let _ = reply.send(Ok(Published {
                                message: a.message,
                                duplicate: a.duplicate,
                            }));
                        }
                    }
                    Err(e) => {
                        for (_, reply) in waiters {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
                act.flush_pending(ctx);
                if act.stopping && !act.writing {
                    ctx.stop();
                }
            })
            .spawn(ctx);
    }

    fn commit(
        &self,
        ops: Vec<WriteOp>,
    ) -> impl std::future::Future<Output = Result<Vec<WriteOutcome>, EngineError>> {
        let commits = self.store.commits.clone();
        let timeout = self.store.write_timeout;
        async move {
            match actix::clock::timeout(timeout, commits.send(Commit { ops })).await {
                Ok(r) => r
                    .map_err(PersistError::from)
                    .and_then(|r| r)
                    .map_err(EngineError::from),
                Err(_) => Err(write_timed_out()),
            }
        }
    }

    /// Refuses a new member when the room is full.
    fn check_room_capacity(&self) -> Result<(), EngineError> {
        if self.members.len() >= self.policy.max_room_members {
            return Err(EngineError::LimitExceeded(format!(
                "room {} has reached its limit of {} members",
                self.id, self.policy.max_room_members
            )));
        }
        Ok(())
    }

    /// Refuses when `user` is a member of as many rooms as allowed.
    fn user_room_capacity(
        &self,
        user: &UserId,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> {
        let reader = self.store.reader.clone();
        let user = user.clone();
        let max = self.policy.max_rooms_per_user as i64;
        async move {
            let n = reader
                .send(CountUserRooms { user })
                .await
                .map_err(PersistError::from)
                .and_then(|r| r)?;
            if n >= max {
                return Err(EngineError::LimitExceeded(format!(
                    "you are a member of {max} rooms, the limit"
                )));
            }
            Ok(())
        }
    }

    fn online_users(&self) -> Vec<UserId> {
        let mut users: Vec<UserId> = self.subscribers.values().map(|s| s.user.clone()).collect();
        users.sort();
        users.dedup();
        users
    }

    fn end_typing(&mut self, user: &UserId) {
        if self.typing.remove(user).is_some() {
            let frame: ByteString = protocol::event(
                "typing",
                &json!({"room": self.id, "user": user, "state": "stop"}),
            )
            .into();
            self.broadcast(&frame, |s| &s.user != user);
        }
    }
}

fn write_timed_out() -> EngineError {
    EngineError::Unavailable(
        "storage did not confirm the write in time; retry (with the same client_msg_id for messages)".into(),
    )
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Nothing may be handled before membership and last_seq are known.
        self.store
            .reader
            .send(LoadRoom {
                room: self.id.clone(),
            })
            .into_actor(self)
            .map(
                |res, act, ctx| match res.map_err(PersistError::from).and_then(|r| r) {
                    Ok(Some(record)) => {
                        act.exists = true;
                        act.name = record.name;
                        act.last_seq = record.last_seq;
                        act.members = record.members.into_iter().collect();
                    }
                    Ok(None) => act.exists = false,
                    Err(e) => {
                        log::warn!("room {} could not load: {e}", act.id);
                        ctx.stop();
                    }
                },
            )
            .wait(ctx);
    }
}

/// Sent by the supervisor: route this session's traffic of the room to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub handle: SessionHandle,
}

impl Handler<Subscribe> for Room {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        if self.is_member(&msg.handle.user) {
            self.subscribers.insert(msg.handle.id, msg.handle);
            self.subscriber_count
                .store(self.subscribers.len(), Ordering::Relaxed);
        }
    }
}

/// Sent by the supervisor when a session closes or its user leaves the room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session: SessionId,
}

impl Handler<Unsubscribe> for Room {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        if let Some(h) = self.subscribers.remove(&msg.session) {
            self.subscriber_count
                .store(self.subscribers.len(), Ordering::Relaxed);
            if !self.subscribers.values().any(|s| s.user == h.user) {
                self.end_typing(&h.user);
            }
        }
    }
}

/// What a successful `join` returns.
#[derive(Debug, Clone)]
pub struct Joined {
    pub seq: i64,
    pub online: Vec<UserId>,
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
    /// The user's live sessions, subscribed in the same turn as the membership takes effect.
    pub sessions: Vec<SessionHandle>,
}

impl Handler<JoinMember> for Room {
    type Result = ResponseActFuture<Self, Result<Joined, EngineError>>;
    fn handle(&mut self, msg: JoinMember, _: &mut Context<Self>) -> Self::Result {
        let already = self.is_member(&msg.user);
        if !already {
            if let Err(e) = self.check_room_capacity() {
                return Box::pin(fut::ready(Err(e)));
            }
        }
        let write = if already {
            None
        } else if self.id.kind() == RoomKind::Public {
            let at = now_millis();
            let mut ops = Vec::new();
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
            return Box::pin(fut::ready(Err(EngineError::Forbidden(why))));
        };
        let reader = self.store.reader.clone();
        let room = self.id.clone();
        let user = msg.user.clone();
        let room_count = (!already).then(|| self.user_room_capacity(&msg.user));
        Box::pin(
            async move {
                if let Some(check) = room_count {
                    check.await?;
                }
                if let Some(w) = write {
                    w.await?;
                }
                Ok::<_, EngineError>(())
            }
            .into_actor(self)
            .then(move |res, act, _| {
                if res.is_ok() {
                    act.exists = true;
                    act.members.entry(user).or_insert(MemberRole::Member);
                    for h in msg.sessions {
                        act.subscribers.insert(h.id, h);
                    }
                    act.subscriber_count
                        .store(act.subscribers.len(), Ordering::Relaxed);
                }
                let seq = act.last_seq;
                let mut online = act.online_users();
                if !online.contains(&msg.user) {
                    online.push(msg.user.clone());
                }
                async move {
                    res?;
                    let (missed, has_more) = match msg.since_seq {
                        Some(since) if since < seq && msg.missed_limit > 0 => reader
                            .send(FetchHistory {
                                room,
                                before_seq: None,
                                after_seq: Some(since),
                                limit: msg.missed_limit,
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
                }
                .into_actor(act)
            }),
        )
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
            act.end_typing(&msg.user);
            act.subscribers.retain(|_, s| s.user != msg.user);
            act.subscriber_count
                .store(act.subscribers.len(), Ordering::Relaxed);
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
        if let Err(e) = self.check_room_capacity() {
            return Box::pin(fut::ready(Err(e)));
        }
        let capacity = self.user_room_capacity(&msg.user);
        let write = self.commit(vec![op]);
        Box::pin(
            async move {
                capacity.await?;
                write.await
            }
            .into_actor(self)
            .map(move |res, act, _| {
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
                    act.end_typing(&msg.user);
                    act.subscribers.retain(|_, s| s.user != msg.user);
                    act.subscriber_count
                        .store(act.subscribers.len(), Ordering::Relaxed);
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
        Box::pin(self.commit(ops).into_actor(self).map(move |res, act, _| {
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
        let mut ops = Vec::new();
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
        Box::pin(self.commit(ops).into_actor(self).map(move |res, act, _| {
            res?;
            act.exists = true;
            for u in &missing {
                act.members.insert(u.clone(), MemberRole::Member);
            }
            Ok(missing)
        }))
    }
}

/// A stored message and whether it was stored earlier (an idempotent retry).
#[derive(Debug, Clone)]
pub struct Published {
    pub message: StoredMessage,
    pub duplicate: bool,
}

/// Sent by the supervisor for a `send`: store and, once committed, fan out.
#[derive(Message)]
#[rtype(result = "Result<Published, EngineError>")]
pub struct Publish {
    pub message: NewMessage,
    /// The sending session, which gets the ack instead of the `message` frame.
    pub origin: Option<SessionId>,
}

impl Handler<Publish> for Room {
    type Result = ResponseFuture<Result<Published, EngineError>>;
    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.require_member(&msg.message.sender) {
            return Box::pin(async move { Err(e) });
        }
        // A message ends the sender's typing indicator, as in every chat client.
        self.typing.remove(&msg.message.sender);
        let (tx, rx) = oneshot::channel();
        self.pending.push(PendingPublish {
            message: msg.message,
            origin: msg.origin,
            reply: tx,
        });
        self.flush_pending(ctx);
        let timeout = self.store.write_timeout;
        Box::pin(async move {
            match actix::clock::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(EngineError::Unavailable(
                    "room stopped before the message was stored".into(),
                )),
                // The batch stays in flight: if it commits later it is fanned out then, and
                // a retry with the same client_msg_id gets the original ack.
                Err(_) => Err(write_timed_out()),
            }
        })
    }
}

/// Sent by the supervisor for a `typing` frame.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Typing {
    pub user: UserId,
    pub state: TypingState,
}

impl Handler<Typing> for Room {
    type Result = Result<(), EngineError>;
    fn handle(&mut self, msg: Typing, ctx: &mut Context<Self>) -> Self::Result {
        self.require_member(&msg.user)?;
        match msg.state {
            TypingState::Start => {
                self.typing_generation += 1;
                let generation = self.typing_generation;
                let min_gap = std::time::Duration::from_secs(1) / self.policy.typing_rate.max(1);
                // Repeated starts within the rate only extend the indicator; they are not
                // broadcast again (excess dropped silently).
                let announce = self
                    .typing
                    .get(&msg.user)
                    .is_none_or(|t| t.announced_at.elapsed() >= min_gap);
                let announced_at = match self.typing.get(&msg.user) {
                    Some(t) if !announce => t.announced_at,
                    _ => std::time::Instant::now(),
                };
                self.typing.insert(
                    msg.user.clone(),
                    TypingEntry {
                        generation,
                        announced_at,
                    },
                );
                if announce {
                    let frame: ByteString = protocol::event(
                        "typing",
                        &json!({"room": self.id, "user": msg.user, "state": "start"}),
                    )
                    .into();
                    let user = msg.user.clone();
                    self.broadcast(&frame, |s| s.user != user);
                }
                let user = msg.user;
                ctx.run_later(self.policy.typing_timeout, move |act, _| {
                    if act
                        .typing
                        .get(&user)
                        .is_some_and(|t| t.generation == generation)
                    {
                        act.end_typing(&user);
                    }
                });
            }
            TypingState::Stop => {
                if self.typing.contains_key(&msg.user) {
                    self.end_typing(&msg.user);
                }
            }
        }
        Ok(())
    }
}

/// Sent by the supervisor for a `receipt`: move the member's watermark and tell the room.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Receipt {
    pub user: UserId,
    pub origin: Option<SessionId>,
    pub seq: i64,
    pub status: ReceiptStatus,
}

impl Handler<Receipt> for Room {
    type Result = ResponseActFuture<Self, Result<(), EngineError>>;
    fn handle(&mut self, msg: Receipt, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.require_member(&msg.user) {
            return Box::pin(fut::ready(Err(e)));
        }
        if msg.seq > self.last_seq {
            return Box::pin(fut::ready(Err(EngineError::Invalid(format!(
                "seq {} is beyond the latest message ({}) of {}",
                msg.seq, self.last_seq, self.id
            )))));
        }
        let op = WriteOp::AdvanceWatermark {
            room: self.id.clone(),
            user: msg.user.clone(),
            status: msg.status,
            seq: msg.seq,
        };
        Box::pin(self.commit(vec![op]).into_actor(self).map(move |res, act, _| {
            let advanced = matches!(res?.first(), Some(WriteOutcome::Watermark { advanced: true, .. }));
            if advanced {
                let frame: ByteString = protocol::event(
                    "receipt",
                    &json!({"room": act.id, "user": msg.user, "seq": msg.seq, "status": msg.status.as_str(), "at": rfc3339(now_millis())}),
                )
                .into();
                let meta = Arc::new(FrameMeta::Receipt {
                    room: act.id.clone(),
                    user: msg.user.clone(),
                    seq: msg.seq,
                    status: msg.status,
                });
                act.broadcast_with(&frame, Some(meta), |s| Some(s.id) != msg.origin);
            }
            Ok(())
        }))
    }
}

/// Sent by the supervisor for `history` and the REST history route.
#[derive(Message)]
#[rtype(result = "Result<(Vec<StoredMessage>, bool), EngineError>")]
pub struct History {
    pub user: UserId,
    pub admin: bool,
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: i64,
}

impl Handler<History> for Room {
    type Result = ResponseFuture<Result<(Vec<StoredMessage>, bool), EngineError>>;
    fn handle(&mut self, msg: History, _: &mut Context<Self>) -> Self::Result {
        if !msg.admin {
            if let Err(e) = self.require_member(&msg.user) {
                return Box::pin(async move { Err(e) });
            }
        } else if !self.exists {
            let room = self.id.clone();
            return Box::pin(async move {
                Err(EngineError::NotFound(format!("room {room} does not exist")))
            });
        }
        let reader = self.store.reader.clone();
        let q = FetchHistory {
            room: self.id.clone(),
            before_seq: msg.before_seq,
            after_seq: msg.after_seq,
            limit: msg.limit,
        };
        Box::pin(async move {
            Ok(reader
                .send(q)
                .await
                .map_err(PersistError::from)
                .and_then(|r| r)?)
        })
    }
}

/// Sent by the supervisor on behalf of the presence registry: `about` changed; members see it
/// as a `room_presence` diff (the user's own sessions do not).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BroadcastPresence {
    pub about: UserId,
    pub joins: Arc<Vec<PresenceView>>,
    pub leaves: Arc<Vec<PresenceView>>,
}

impl Handler<BroadcastPresence> for Room {
    type Result = ();
    fn handle(&mut self, msg: BroadcastPresence, ctx: &mut Context<Self>) {
        for v in msg.joins.iter() {
            self.presence_pending
                .insert(msg.about.clone(), (v.clone(), true));
        }
        for v in msg.leaves.iter() {
            self.presence_pending
                .insert(msg.about.clone(), (v.clone(), false));
        }
        if self.policy.presence_coalesce.is_zero() {
            self.flush_presence();
        } else if !self.presence_flush_scheduled {
            self.presence_flush_scheduled = true;
            ctx.run_later(self.policy.presence_coalesce, |act, _| {
                act.presence_flush_scheduled = false;
                act.flush_presence();
            });
        }
    }
}

impl Room {
    /// Sends the collected presence changes as one `room_presence` diff (latest state per
    /// user). A diff about a single user is not sent to that user's own sessions.
    fn flush_presence(&mut self) {
        if self.presence_pending.is_empty() {
            return;
        }
        let mut joins = Vec::new();
        let mut leaves = Vec::new();
        let mut users = Vec::new();
        for (user, (view, join)) in self.presence_pending.drain() {
            users.push(user);
            if join {
                joins.push(view);
            } else {
                leaves.push(view);
            }
        }
        joins.sort_by(|a, b| a.user.cmp(&b.user));
        leaves.sort_by(|a, b| a.user.cmp(&b.user));
        let frame: ByteString = protocol::event(
            "room_presence",
            &json!({"room": self.id, "joins": joins, "leaves": leaves}),
        )
        .into();
        let only = if users.len() == 1 { users.pop() } else { None };
        self.broadcast(&frame, |s| Some(&s.user) != only.as_ref());
    }
}

/// Who is in the room now.
#[derive(Debug, Clone)]
pub struct RoomOnline {
    pub exists: bool,
    pub members: usize,
    /// (user, session count)
    pub online: Vec<(UserId, usize)>,
    pub last_seq: i64,
}

/// Sent by the supervisor for the admin room presence route and membership checks.
#[derive(Message)]
#[rtype(result = "RoomOnline")]
pub struct GetRoomOnline;

impl Handler<GetRoomOnline> for Room {
    type Result = MessageResult<GetRoomOnline>;
    fn handle(&mut self, _: GetRoomOnline, _: &mut Context<Self>) -> Self::Result {
        let mut counts: HashMap<UserId, usize> = HashMap::new();
        for s in self.subscribers.values() {
            *counts.entry(s.user.clone()).or_default() += 1;
        }
        let mut online: Vec<(UserId, usize)> = counts.into_iter().collect();
        online.sort();
        MessageResult(RoomOnline {
            exists: self.exists,
            members: self.members.len(),
            online,
            last_seq: self.last_seq,
        })
    }
}

/// Sent by the supervisor's idle sweep: stop once nothing is in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Room {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.stopping = true;
        if !self.writing && self.pending.is_empty() {
            ctx.stop();
        }
    }
}

/// One recipient's state of a message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecipientStatus {
    pub user: String,
    /// `sent`, `delivered` or `read`.
    pub status: &'static str,
}

/// A message's delivery state per recipient.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageStatus {
    pub message_id: String,
    pub room: RoomId,
    pub seq: i64,
    pub from: String,
    pub recipients: Vec<RecipientStatus>,
}

/// Sent by the message status route (members and admins).
#[derive(Message)]
#[rtype(result = "Result<MessageStatus, EngineError>")]
pub struct GetMessageStatus {
    pub user: UserId,
    pub admin: bool,
    pub message_id: String,
}

impl Handler<GetMessageStatus> for Room {
    type Result = ResponseFuture<Result<MessageStatus, EngineError>>;
    fn handle(&mut self, msg: GetMessageStatus, _: &mut Context<Self>) -> Self::Result {
        if !msg.admin {
            if let Err(e) = self.require_member(&msg.user) {
                return Box::pin(async move { Err(e) });
            }
        }
        let reader = self.store.reader.clone();
        let room = self.id.clone();
        Box::pin(async move {
            let q = FetchMessageStatus {
                room: room.clone(),
                message_id: msg.message_id.clone(),
            };
            let record = reader
                .send(q)
                .await
                .map_err(PersistError::from)
                .and_then(|r| r)?
                .ok_or_else(|| {
                    EngineError::NotFound(format!("no message {} in {room}", msg.message_id))
                })?;
            let recipients = record
                .recipients
                .into_iter()
                .map(|(user, delivered, read)| RecipientStatus {
                    user,
                    status: if read >= record.seq {
                        "read"
                    } else if delivered >= record.seq {
                        "delivered"
                    } else {
                        "sent"
                    },
                })
                .collect();
            Ok(MessageStatus {
                message_id: msg.message_id,
                room,
                seq: record.seq,
                from: record.sender,
                recipients,
            })
        })
    }
}
