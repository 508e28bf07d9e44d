//! Room events besides messages: typing indicators (rate-limited, expiring), read and
//! delivered receipts, history pages, coalesced `room_presence` diffs, who is online, and
//! per-recipient message status.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::database::{FetchHistory, FetchMessageStatus};
use crate::actors::session::handle::FrameMeta;
use crate::db::models::{StoredMessage, WriteOp, WriteOutcome};
use crate::domain::{now_millis, rfc3339, ReceiptStatus, RoomId, SessionId, UserId};
use crate::error::{EngineError, PersistError};
use crate::protocol::{
    CustomEvent, EventName, PresenceView, Receipt as ReceiptFrame, RoomPresence, ServerFrame,
    TypingState,
};

use super::{Room, TypingEntry};

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
                let now = std::time::Instant::now();
                let min_gap = std::time::Duration::from_secs(1) / self.policy.typing_rate.max(1);
                // Repeated starts within the rate only extend the indicator; they are not
                // broadcast again (excess dropped silently).
                let announce = self
                    .typing
                    .get(&msg.user)
                    .is_none_or(|t| t.announced_at.elapsed() >= min_gap);
                let announced_at = match self.typing.get(&msg.user) {
                    Some(t) if !announce => t.announced_at,
                    _ => now,
                };
                // Re-arming replaces the user's deadline; the room's single sweep timer
                // notices the later deadline when it fires.
                self.typing.insert(
                    msg.user.clone(),
                    TypingEntry {
                        deadline: now + self.policy.typing_timeout,
                        announced_at,
                    },
                );
                if announce {
                    self.broadcast_typing(&msg.user, TypingState::Start);
                }
                self.arm_typing_sweep(ctx);
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

impl Room {
    /// Arms the room's one typing timer for the earliest deadline, unless it is armed.
    fn arm_typing_sweep(&mut self, ctx: &mut Context<Self>) {
        if self.typing_sweep.is_some() {
            return;
        }
        let Some(next) = self.typing.values().map(|t| t.deadline).min() else {
            return;
        };
        let wait = next.saturating_duration_since(std::time::Instant::now());
        self.typing_sweep = Some(ctx.run_later(wait, |act, ctx| {
            act.typing_sweep = None;
            let now = std::time::Instant::now();
            let expired: Vec<UserId> = act
                .typing
                .iter()
                .filter(|(_, t)| t.deadline <= now)
                .map(|(u, _)| u.clone())
                .collect();
            for u in expired {
                act.end_typing(&u);
            }
            act.arm_typing_sweep(ctx);
        }));
    }
}

/// Sent by the supervisor for a custom `event`: relayed to the room's other members as it
/// came, never stored (docs/protocol.md, "event").
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RelayEvent {
    pub user: UserId,
    pub name: EventName,
    pub data: serde_json::Value,
}

impl Handler<RelayEvent> for Room {
    type Result = Result<(), EngineError>;
    fn handle(&mut self, msg: RelayEvent, _: &mut Context<Self>) -> Self::Result {
        self.require_member(&msg.user)?;
        let frame = ServerFrame::Event(CustomEvent {
            data: &msg.data,
            from: &msg.user,
            name: msg.name.as_str(),
            room: &self.id,
        })
        .encode();
        self.broadcast(&frame, |s| s.user != msg.user);
        self.publish_frame(&frame, Some(&msg.user), None);
        Ok(())
    }
}

/// The room's typing bookkeeping, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypingStats {
    /// Users with a live typing indicator (one deadline each).
    pub deadlines: usize,
    /// Typing timers pending in the room's context (0 or 1).
    pub timers: usize,
}

/// Sent by tests (through the testkit) to see how much typing state a room holds.
#[derive(Message)]
#[rtype(result = "TypingStats")]
pub struct GetTypingStats;

impl Handler<GetTypingStats> for Room {
    type Result = MessageResult<GetTypingStats>;
    fn handle(&mut self, _: GetTypingStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(TypingStats {
            deadlines: self.typing.len(),
            timers: usize::from(self.typing_sweep.is_some()),
        })
    }
}

/// Sent by the supervisor for a `receipt`: move the member's watermark and tell the room.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Receipt {
    pub user: UserId,
    pub origin: Option<SessionId>,
    /// The device that sent it, whose position in the room moves too.
    pub device: Option<crate::domain::DeviceId>,
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
        let mut ops = vec![WriteOp::AdvanceWatermark {
            room: self.id.clone(),
            user: msg.user.clone(),
            status: msg.status,
            seq: msg.seq,
        }];
        if let Some(device) = &msg.device {
            ops.push(WriteOp::AdvanceDevicePosition {
                user: msg.user.clone(),
                device: device.clone(),
                room: self.id.clone(),
                seq: msg.seq,
                at: now_millis(),
                max_devices: self.policy.max_devices_per_user,
            });
        }
        Box::pin(self.commit(ops).into_actor(self).map(move |res, act, _| {
            let advanced = matches!(
                res?.first(),
                Some(WriteOutcome::Watermark { advanced: true, .. })
            );
            if advanced {
                let frame = ServerFrame::Receipt(ReceiptFrame {
                    at: rfc3339(now_millis()),
                    room: &act.id,
                    seq: msg.seq,
                    status: msg.status.as_str(),
                    user: &msg.user,
                })
                .encode();
                let meta = Arc::new(FrameMeta::Receipt {
                    room: act.id.clone(),
                    user: msg.user.clone(),
                    seq: msg.seq,
                    status: msg.status,
                });
                act.broadcast_with(&frame, Some(meta), |s| Some(s.id) != msg.origin);
                act.publish_frame(&frame, None, Some((msg.user.clone(), msg.seq, msg.status)));
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
    /// Most bytes of bodies in the page.
    pub max_bytes: usize,
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
            max_bytes: msg.max_bytes,
            reactions_for: Some(msg.user.clone()),
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
        if self.online_lookup.is_some() && self.is_member(&msg.about) {
            // Cluster mode: who is connected on any node, for join acks and `members`.
            if !msg.leaves.is_empty() {
                self.online_anywhere.remove(&msg.about);
            } else if !msg.joins.is_empty() {
                self.online_anywhere.insert(msg.about.clone());
            }
        }
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
            // Leading edge: the first change after a quiet window goes out at once; the
            // changes during the window that follows are coalesced into one diff at its end.
            self.flush_presence();
            self.open_presence_window(ctx);
        }
    }
}

impl Room {
    /// Collects presence changes for one coalescing window, then sends them and keeps
    /// throttling while changes keep coming.
    fn open_presence_window(&mut self, ctx: &mut Context<Self>) {
        self.presence_flush_scheduled = true;
        ctx.run_later(self.policy.presence_coalesce, |act, ctx| {
            if act.presence_pending.is_empty() {
                act.presence_flush_scheduled = false;
            } else {
                act.flush_presence();
                act.open_presence_window(ctx);
            }
        });
    }

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
        let frame = ServerFrame::RoomPresence(RoomPresence {
            joins: &joins,
            leaves: &leaves,
            room: &self.id,
        })
        .encode();
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

/// Sent by the supervisor for `members`: a page of the users connected to the room, in
/// user-id order after `after` (members only).
#[derive(Message)]
#[rtype(result = "Result<OnlineUsers, EngineError>")]
pub struct OnlinePage {
    pub user: UserId,
    pub after: Option<UserId>,
    pub limit: usize,
}

/// A page of connected users: at most the page's limit, and the cursor of the next page
/// (the page's last user) when more follow.
#[derive(Debug, Clone, Default)]
pub struct OnlineUsers {
    pub users: Vec<UserId>,
    pub next: Option<UserId>,
}

impl Handler<OnlinePage> for Room {
    type Result = Result<OnlineUsers, EngineError>;
    fn handle(&mut self, msg: OnlinePage, _: &mut Context<Self>) -> Self::Result {
        self.require_member(&msg.user)?;
        Ok(self.online_page(msg.after.as_ref(), msg.limit, None))
    }
}

/// One recipient's state of a message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecipientStatus {
    pub user: UserId,
    /// `sent`, `delivered` or `read`.
    pub status: &'static str,
}

/// A message's delivery state per recipient.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageStatus {
    pub message_id: String,
    pub room: RoomId,
    pub seq: i64,
    pub from: UserId,
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
