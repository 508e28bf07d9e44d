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
//! Files: `mod.rs` (state, the helpers the other files share, subscriptions), `publish.rs`
//! (the publish pipeline: pending queue, batch commit, fan-out, notification redo),
//! `lifecycle.rs` (loading with retry, giving up, idle shutdown), `membership.rs` (join,
//! leave, invitations, creation), `events.rs` (typing, receipts, history, presence diffs,
//! message status), `notifier.rs` (notifications caused by messages).
//!
//! Loading: the room reads itself (`LoadRoom`) before it handles anything. A failed read is
//! retried with backoff while the mailbox waits, so subscriptions and requests queued during
//! a database outage are served once it answers; after `load_retry` the room gives up, tells
//! the supervisor ([`RoomFailed`], which unsubscribes and tells the sessions) and stops.
//!
//! Sends to: sessions (`Deliver`, via `try_send`), the commit queue and the database readers;
//! the supervisor only once, when it gives up loading (a weak recipient, see
//! docs/architecture.md).

mod changes;
mod events;
mod lifecycle;
mod membership;
mod notifier;
mod publish;
mod remote;
mod subscribers;

pub use changes::{ChangeMessage, RoomChanges};
pub use events::*;
pub use lifecycle::{Shutdown, LOAD_RETRY_FIRST_DELAY, LOAD_RETRY_MAX_DELAY};
pub use membership::*;
pub use notifier::{Followup, MessageNotifier};
pub use publish::{Publish, Published, RedoNotifications};
pub use remote::{MemberChanged, Resync};
use subscribers::Subscribers;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::commit_queue::Commit;
use super::inflight::InFlight;
use super::room_supervisor::{OnlineAmong, RoomFailed};
use super::session::handle::{Admitted, DeliverOutcome, FrameMeta, SessionHandle};
use super::session::inbox::{Batch, SlotId, WorkerInbox};
use crate::actors::store::Store;
use crate::cluster::reorder::Reorder;
use crate::cluster::Cluster;
use crate::db::models::{MemberRole, NewMessage, WriteOp, WriteOutcome};
use crate::domain::{RoomId, SessionId, UserId};
use crate::error::{EngineError, PersistError};
use crate::metrics::METRICS;
use crate::protocol::{EncodedFrame, PresenceView, ServerFrame, TypingState};

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
    /// How long a room keeps retrying to load from the database before it gives up.
    pub load_retry: std::time::Duration,
    /// Most devices whose positions are kept per user (the least recently moved go first).
    pub max_devices_per_user: i64,
    /// How long after sending a sender may edit or delete a message.
    pub edit_window: std::time::Duration,
    /// Most distinct emoji on one message.
    pub max_reactions_per_message: usize,
}

struct TypingEntry {
    /// When the indicator ends unless another `start` extends it.
    deadline: std::time::Instant,
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
    subscribers: Subscribers,
    /// Set once the room is loaded; shared with the supervisor, which gives requests to a
    /// room still loading a deadline and never sweeps such a room as idle.
    loaded: Arc<AtomicBool>,
    /// Where the room reports that it gave up loading ([`RoomFailed`]). Weak: the
    /// supervisor owns the rooms, a room never keeps the supervisor alive.
    supervisor: Option<actix::WeakRecipient<RoomFailed>>,
    pending: Vec<PendingPublish>,
    writing: bool,
    /// When the last batch of messages was sent to commit, and the timer that sends the next
    /// once the commit interval has passed (see `publish.rs`).
    last_flush: Option<std::time::Instant>,
    flush_timer: Option<SpawnHandle>,
    /// Typing users and their deadlines: one per user however many `start`s they send.
    typing: HashMap<UserId, TypingEntry>,
    /// The one timer that ends expired indicators (armed while anyone is typing): a timer
    /// per `start` would let one client pile up thousands of them in the room's context.
    typing_sweep: Option<SpawnHandle>,
    /// Presence changes waiting for the coalescing window: user → (view, is_join).
    presence_pending: HashMap<UserId, (PresenceView, bool)>,
    presence_flush_scheduled: bool,
    stopping: bool,
    /// Joins waiting for their checks and writes.
    inflight: InFlight<Self>,
    /// Users whose membership is being written (count of in-flight adds per user): they hold
    /// a member slot from the capacity check until the write answers, so parallel joins
    /// cannot all pass the check before any of them is recorded.
    joining: HashMap<UserId, usize>,
    /// Cluster mode: the backplane this room publishes to and receives from.
    cluster: Cluster,
    /// Messages go out in seq order through it (see `remote.rs`).
    reorder: Reorder<remote::Outgoing>,
    /// The pending check of a hole in the seqs.
    gap_check: Option<SpawnHandle>,
    /// Cluster mode: a read of the room's tail a while after the last release, which finds
    /// a last message whose backplane event was lost (no later seq reveals that hole).
    tail_check: Option<SpawnHandle>,
    /// A read of missing seqs is in flight.
    filling: bool,
    /// This actor's number, for its backplane subscription.
    instance: u64,
    /// Cluster mode: members connected anywhere in the cluster, as the presence registry
    /// said when the room started and as presence changes said since (`subscribers` only
    /// knows this node's sessions). Listed by `online_page`; the caller filters what went
    /// offline meanwhile.
    online_anywhere: HashSet<UserId>,
    online_lookup: Option<Recipient<OnlineAmong>>,
}

/// What a room shares with the one who started it (the supervisor) and with other nodes.
pub struct RoomLinks {
    pub subscriber_count: Arc<AtomicUsize>,
    pub loaded: Arc<AtomicBool>,
    pub supervisor: Option<actix::WeakRecipient<RoomFailed>>,
    pub cluster: Cluster,
    /// Cluster mode: the presence registry, asked which members are connected on any node.
    pub online_lookup: Option<Recipient<OnlineAmong>>,
}

impl Room {
    pub fn new(
        id: RoomId,
        store: Store,
        policy: RoomPolicy,
        notifier: MessageNotifier,
        links: RoomLinks,
    ) -> Self {
        let RoomLinks {
            subscriber_count,
            loaded,
            supervisor,
            cluster,
            online_lookup,
        } = links;
        Room {
            id,
            store,
            policy,
            notifier,
            exists: false,
            name: None,
            last_seq: 0,
            members: HashMap::new(),
            subscribers: Subscribers::new(subscriber_count),
            loaded,
            supervisor,
            pending: Vec::new(),
            writing: false,
            last_flush: None,
            flush_timer: None,
            typing: HashMap::new(),
            typing_sweep: None,
            presence_pending: HashMap::new(),
            presence_flush_scheduled: false,
            inflight: InFlight::default(),
            stopping: false,
            joining: HashMap::new(),
            cluster,
            reorder: Reorder::new(0, remote::MAX_HELD),
            gap_check: None,
            tail_check: None,
            filling: false,
            instance: remote::next_instance(),
            online_anywhere: HashSet::new(),
            online_lookup,
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
    fn broadcast(&mut self, frame: &EncodedFrame, to: impl Fn(&SessionHandle) -> bool) {
        self.broadcast_with(frame, None, to)
    }

    fn broadcast_with(
        &mut self,
        frame: &EncodedFrame,
        meta: Option<Arc<FrameMeta>>,
        to: impl Fn(&SessionHandle) -> bool,
    ) {
        let mut dropped = Vec::new();
        let mut queued = 0;
        // One batch per worker thread: the sessions there are reached by one message.
        let mut slots: Vec<Vec<SlotId>> = Vec::new();
        let mut workers: Vec<&Arc<WorkerInbox>> = Vec::new();
        for (i, (id, s)) in self.subscribers.iter().enumerate() {
            if !to(s) {
                continue;
            }
            let outcome = match s.admit(frame, meta.as_ref()) {
                Admitted::Inbox(route) => {
                    match workers.iter().position(|w| Arc::ptr_eq(w, &route.worker)) {
                        Some(i) => slots[i].push(route.slot),
                        None => {
                            workers.push(&route.worker);
                            // At most the subscribers not yet seen go to this worker.
                            let mut to = Vec::with_capacity(self.subscribers.len() - i);
                            to.push(route.slot);
                            slots.push(to);
                        }
                    }
                    DeliverOutcome::Queued
                }
                Admitted::Mailbox => s.to_mailbox(frame, meta.as_ref()),
                Admitted::Not(outcome) => outcome,
            };
            match outcome {
                DeliverOutcome::Queued => queued += 1,
                // The session catches the message up from the database; it stays.
                DeliverOutcome::Dropped => METRICS.slow_consumers.inc(),
                DeliverOutcome::Gone => dropped.push(*id),
            }
        }
        for (worker, to) in workers.into_iter().zip(slots) {
            worker.send(Batch {
                frame: frame.clone(),
                meta: meta.clone(),
                to: to.into(),
                except: None,
            });
        }
        // One shared counter update per broadcast, not per recipient.
        METRICS.frames_out.inc_by(queued);
        for id in dropped {
            self.subscribers.remove(&id);
        }
    }

    /// Sends a frame every subscriber gets (a message) to all of them: one batch per worker
    /// naming the room's shared slot list there. The sending session (`origin`) gets the meta
    /// alone, so its stream moves past the seq without the frame.
    fn fan_out_to_all(
        &mut self,
        frame: &EncodedFrame,
        meta: Arc<FrameMeta>,
        origin: Option<SessionId>,
    ) {
        let sender: Option<SessionHandle> = origin.and_then(|o| self.subscribers.get(&o).cloned());
        let plan = self.subscribers.plan();
        if plan.workers.iter().any(|(w, _)| w.is_full()) {
            // A worker past its bound: recipient by recipient, so that each of its sessions
            // records what it lost and catches it up.
            self.broadcast_with(frame, Some(meta.clone()), |s| Some(s.id) != origin);
            if let Some(s) = sender {
                s.deliver(&EncodedFrame::default(), Some(&meta));
            }
            return;
        }
        let sender_route = sender.as_ref().and_then(|s| s.inbox.as_ref());
        let mut queued = 0;
        for (worker, slots) in &plan.workers {
            let except = sender_route
                .filter(|r| Arc::ptr_eq(&r.worker, worker))
                .map(|r| r.slot);
            queued += slots.len() - usize::from(except.is_some());
            worker.send(Batch {
                frame: frame.clone(),
                meta: Some(meta.clone()),
                to: slots.clone(),
                except,
            });
        }
        let mut gone = Vec::new();
        for s in &plan.direct {
            let outcome = if Some(s.id) == origin {
                s.deliver(&EncodedFrame::default(), Some(&meta))
            } else {
                queued += 1;
                s.deliver(frame, Some(&meta))
            };
            if outcome == DeliverOutcome::Gone {
                gone.push(s.id);
            }
        }
        METRICS.frames_out.inc_by(queued as u64);
        for id in gone {
            self.subscribers.remove(&id);
        }
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

    /// Refuses a new member when the room is full, counting the members still being written.
    fn check_room_capacity(&self) -> Result<(), EngineError> {
        if self.members.len() + self.joining.len() >= self.policy.max_room_members {
            return Err(EngineError::LimitExceeded(format!(
                "room {} has reached its limit of {} members",
                self.id, self.policy.max_room_members
            )));
        }
        Ok(())
    }

    /// Holds a member slot for `user` while their membership is written.
    fn reserve_slot(&mut self, user: &UserId) {
        *self.joining.entry(user.clone()).or_default() += 1;
    }

    /// Gives back a slot held by [`reserve_slot`](Self::reserve_slot), once the write answered.
    fn release_slot(&mut self, user: &UserId) {
        if let Some(n) = self.joining.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.joining.remove(user);
            }
        }
    }

    /// The op that claims one more room for `user`; first in the group adding the membership,
    /// so the writer counts and records in one step (see [`WriteOp::ClaimRoomSlot`]).
    fn claim_room_slot(&self, user: &UserId) -> WriteOp {
        WriteOp::ClaimRoomSlot {
            room: self.id.clone(),
            user: user.clone(),
            max: self.policy.max_rooms_per_user as i64,
        }
    }

    /// The connected users (and `also`, if given) after `after` in user-id order, at most
    /// `limit` of them. Linear in the room's sessions and sorting only the page, so filling a
    /// room of n costs O(n) per join, not O(n log n) plus a presence object per member.
    fn online_page(
        &self,
        after: Option<&UserId>,
        limit: usize,
        also: Option<&UserId>,
    ) -> events::OnlineUsers {
        let users = self
            .subscribers
            .values()
            .map(|s| &s.user)
            .chain(&self.online_anywhere)
            .chain(also)
            .filter(|u| after.is_none_or(|a| *u > a));
        let mut page = smallest_unique(users.collect(), limit.saturating_add(1));
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().map(|u| (*u).clone())
        });
        events::OnlineUsers {
            users: page.into_iter().cloned().collect(),
            next: next.flatten(),
        }
    }

    fn end_typing(&mut self, user: &UserId) {
        if self.typing.remove(user).is_some() {
            self.broadcast_typing(user, TypingState::Stop);
        }
    }

    /// The `typing` frame of `user` to the room's other users (start, stop, and the stop of
    /// the expiry sweep).
    fn broadcast_typing(&mut self, user: &UserId, state: TypingState) {
        let frame = ServerFrame::typing(&self.id, user, state);
        self.broadcast(&frame, |s| &s.user != user);
        self.publish_frame(&frame, Some(user), None);
    }
}

/// The `want` smallest distinct users of `users`, sorted. A user with several sessions is
/// there several times: the smallest `2 × want` are selected without sorting the rest, and
/// everything is sorted only when duplicates left fewer than `want` distinct among them.
fn smallest_unique(mut users: Vec<&UserId>, want: usize) -> Vec<&UserId> {
    let take = want.saturating_mul(2);
    if users.len() > take {
        users.select_nth_unstable(take);
        let mut head = users[..take].to_vec();
        head.sort_unstable();
        head.dedup();
        if head.len() >= want {
            head.truncate(want);
            return head;
        }
    }
    users.sort_unstable();
    users.dedup();
    users.truncate(want);
    users
}

/// `limit_exceeded` when a room-slot claim among `outcomes` was refused.
fn room_slot_refusal(outcomes: &[WriteOutcome], max: usize) -> Result<(), EngineError> {
    for o in outcomes {
        if let WriteOutcome::RoomSlot {
            user,
            admitted: false,
        } = o
        {
            return Err(EngineError::LimitExceeded(format!(
                "{user} is a member of {max} rooms, the limit"
            )));
        }
    }
    Ok(())
}

fn write_timed_out() -> EngineError {
    EngineError::Unavailable(
        "storage did not confirm the write in time; retry (with the same client_msg_id for messages)".into(),
    )
}

/// Sent by the supervisor: route this session's traffic of the room to it. Answers the
/// room's seq at that moment (`None` when the user is not a member): every later message
/// reaches the session live, every earlier one is committed and can be read.
#[derive(Message)]
#[rtype(result = "Option<i64>")]
pub struct Subscribe {
    pub handle: SessionHandle,
}

impl Handler<Subscribe> for Room {
    type Result = Option<i64>;
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Option<i64> {
        if !self.is_member(&msg.handle.user) {
            return None;
        }
        self.subscribers.insert(msg.handle);
        Some(self.last_seq)
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
            if !self.subscribers.values().any(|s| s.user == h.user) {
                self.end_typing(&h.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<UserId> {
        names.iter().filter_map(|n| UserId::parse(n).ok()).collect()
    }

    #[test]
    fn smallest_unique_takes_the_first_distinct_users_whatever_the_duplicates() {
        // Few duplicates (the selection), and a user online many times (the full sort).
        let few = ids(&["e", "a", "c", "a", "g", "b", "f", "d", "h", "i"]);
        let many = ids(&["z", "y", "y", "y", "y", "y", "y", "y", "x", "w", "v"]);
        let crowd = ids(&["a", "a", "c", "a", "a", "a", "a", "b", "a"]);
        let cases = [
            (&few, 3, vec!["a", "b", "c"]),
            (&many, 3, vec!["v", "w", "x"]),
            (&crowd, 3, vec!["a", "b", "c"]),
        ];
        for (users, want, expected) in cases {
            let got = smallest_unique(users.iter().collect(), want);
            let got: Vec<&str> = got.iter().map(|u| u.as_str()).collect();
            assert_eq!(got, expected);
        }
        let all = smallest_unique(many.iter().collect(), 10);
        assert_eq!(all.len(), 5, "every distinct user once");
    }
}
