//! `RoomSupervisor`: starts, finds and stops the [`Room`] actors, and knows which sessions each
//! user has so that every session of a user is subscribed to all of the user's rooms.
//!
//! Sessions, REST handlers and the presence registry talk to rooms through it. It starts a
//! room on first use (the room loads itself from the database), subscribes sessions at
//! connect time and on join, invitation or first direct message, and stops rooms that have
//! had no subscribers and no traffic for `room_idle`.
//!
//! It also refuses, without starting a room, requests it can already tell are forbidden: once
//! a session's full room set is loaded, the supervisor knows every room its user is a member
//! of, so `typing`, `receipt` and `history` for any other room — and a `join` of a private or
//! direct room — are answered here. A live room actor reads the database and stays for
//! `room_idle`; a stranger naming thousands of rooms must not get one each.
//!
//! It also runs the notification outbox sweep: at start and every `outbox_sweep`, messages
//! whose mention or offline-DM notifications were never settled (a crash between the
//! message commit and the notification commit) are read in bounded batches and sent back to
//! their rooms ([`RedoNotifications`]), which know members and live subscribers.
//!
//! A room that cannot load (database down) retries with its mailbox waiting; requests routed
//! to it meanwhile are answered `unavailable` after `db_write_timeout`, while subscriptions
//! stay queued and take effect once it loads. A room that gives up tells the supervisor ([`RoomFailed`]),
//! which forgets it and unsubscribes, and tells, the sessions counted as subscribed.
//!
//! It owns which rooms each session is subscribed to (`session_rooms`), so it alone knows
//! when the rooms of a *user* (the union over the user's sessions) gain or lose a room: a
//! join, leave, invitation, removal, first direct message, a session's subscription at
//! connect, or a room that gave up loading. It tells the presence registry once per user and
//! change ([`UserRoomsChanged`]), whatever the number of the user's sessions. A session
//! closing is not such a change: the presence registry keeps the rooms of a user who went
//! away until it announces them offline after the grace period.
//!
//! [`UserRoomsChanged`] and [`AttachPresence`] are defined here, in the sender's file, not
//! in the receiver's as our other messages are: the presence registry already depends on
//! this module (it sends [`PresenceChanged`] to an `Addr<RoomSupervisor>`), and defining
//! them here keeps the module dependency one-way (presence registry → supervisor). At run
//! time the supervisor holds only a `Recipient<UserRoomsChanged>`, given after both actors
//! started (`Engine::start` sends [`AttachPresence`]), so neither actor needs the other's
//! address at construction.
//!
//! Sends to: rooms, sessions (`SessionControl`), the presence registry
//! ([`UserRoomsChanged`]), the database readers.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::database::LoadPendingOutbox;
use super::inflight::InFlight;
use super::room::*;
use super::session::{SessionControl, SessionHandle};
use crate::domain::{RoomId, RoomKind, SessionId, UserId};
use crate::engine::Store;
use crate::error::{EngineError, PersistError};
use crate::metrics::METRICS;
use crate::protocol::PresenceView;

struct RoomEntry {
    addr: Addr<Room>,
    subscribers: Arc<AtomicUsize>,
    /// Set by the room once it has read itself from the database.
    loaded: Arc<AtomicBool>,
    last_used: Instant,
    /// A direct room whose two memberships are known to exist.
    direct_ready: bool,
}

pub struct RoomSupervisor {
    store: Store,
    policy: RoomPolicy,
    notifier: MessageNotifier,
    room_idle: Duration,
    rooms: HashMap<RoomId, RoomEntry>,
    /// Every live session by user, for subscribing all of a user's devices at once.
    sessions: HashMap<UserId, HashMap<SessionId, SessionHandle>>,
    /// The rooms each session is subscribed to, for unsubscribing on disconnect.
    session_rooms: HashMap<SessionId, HashSet<RoomId>>,
    /// Admitted sessions per user and per client address (held by their tickets).
    admitted: HashMap<UserId, usize>,
    admitted_ips: HashMap<IpAddr, usize>,
    /// Sessions whose `session_rooms` hold all of their user's rooms (loaded at connect and
    /// kept up to date since): membership questions about their user are answered here.
    complete: HashSet<SessionId>,
    /// Connects, joins and leaves waiting for a read or a room.
    inflight: InFlight<Self>,
    /// Interval of the outbox sweep (`HERALD_OUTBOX_SWEEP_MS`).
    outbox_sweep: Duration,
    /// A sweep is reading or waiting for its rooms: the next one skips its turn rather than
    /// hand out the same rows twice.
    outbox_sweeping: bool,
    /// When this process started (Unix ms): outbox rows written before it belong to a
    /// previous process, so nothing here is processing them and the sweep takes them at once.
    started_ms: i64,
    /// Given to every room, to report that it gave up loading ([`RoomFailed`]); set in
    /// `started`.
    me: Option<actix::WeakRecipient<RoomFailed>>,
    /// Where changes of a user's rooms are reported (the presence registry); set by
    /// [`AttachPresence`]. Changes before that are not reported (nobody is online yet).
    presence: Option<Recipient<UserRoomsChanged>>,
}

/// Most outbox rows one sweep takes (oldest first); the rest wait for the next sweep.
pub const OUTBOX_BATCH: i64 = 500;

/// Rows younger than this (or the sweep interval, if longer) are left to the room that is
/// processing them right now.
pub const OUTBOX_MIN_AGE: Duration = Duration::from_secs(1);

impl RoomSupervisor {
    pub fn new(
        store: Store,
        policy: RoomPolicy,
        room_idle: Duration,
        notifier: MessageNotifier,
        outbox_sweep: Duration,
    ) -> Self {
        RoomSupervisor {
            outbox_sweep,
            outbox_sweeping: false,
            started_ms: crate::domain::now_millis(),
            store,
            policy,
            notifier,
            room_idle,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            session_rooms: HashMap::new(),
            admitted: HashMap::new(),
            admitted_ips: HashMap::new(),
            complete: HashSet::new(),
            inflight: InFlight::default(),
            me: None,
            presence: None,
        }
    }

    fn room(&mut self, id: &RoomId) -> Addr<Room> {
        if let Some(e) = self.rooms.get_mut(id) {
            if e.addr.connected() {
                e.last_used = Instant::now();
                return e.addr.clone();
            }
        }
        let subscribers = Arc::new(AtomicUsize::new(0));
        let loaded = Arc::new(AtomicBool::new(false));
        let addr = Room::new(
            id.clone(),
            self.store.clone(),
            self.policy,
            self.notifier.clone(),
            subscribers.clone(),
            loaded.clone(),
            self.me.clone(),
        )
        .start();
        let replaced = self.rooms.insert(
            id.clone(),
            RoomEntry {
                addr: addr.clone(),
                subscribers,
                loaded,
                last_used: Instant::now(),
                direct_ready: false,
            },
        );
        if replaced.is_none() {
            METRICS.rooms_active.inc();
        }
        addr
    }

    /// Whether `user` is a member of `room`, as far as the subscriptions of the user's live
    /// sessions tell: `None` when no session of the user has its full room set yet (a REST
    /// caller without a session, or a session still loading), and the room must decide.
    fn knows_member(&self, user: &UserId, room: &RoomId) -> Option<bool> {
        let sessions = self.sessions.get(user)?;
        let mut known = false;
        for h in sessions.values() {
            if self.complete.contains(&h.id) {
                known = true;
                if self
                    .session_rooms
                    .get(&h.id)
                    .is_some_and(|s| s.contains(room))
                {
                    return Some(true);
                }
            }
        }
        known.then_some(false)
    }

    /// Refuses a request of `user` about `room` when the user is known not to be a member;
    /// the room actor checks again, so only refusals are decided here.
    fn refuse_stranger(&self, user: &UserId, room: &RoomId) -> Result<(), EngineError> {
        match self.knows_member(user, room) {
            Some(false) => Err(EngineError::no_access(room)),
            _ => Ok(()),
        }
    }

    /// Stops a room that was started (at `started`) for a request that was then refused,
    /// unless anything has used it since: another request may be waiting on it.
    fn drop_unused_room(&mut self, id: &RoomId, started: Instant) {
        let unused = self
            .rooms
            .get(id)
            .is_some_and(|e| e.last_used == started && e.subscribers.load(Ordering::Relaxed) == 0);
        if unused {
            if let Some(e) = self.rooms.remove(id) {
                METRICS.rooms_active.dec();
                e.addr.do_send(Shutdown);
            }
        }
    }

    /// How long a request may wait for `room` before it is answered `unavailable`: the write
    /// timeout while the room is still loading (its mailbox waits for the database, up to
    /// `room_load_retry`), no bound of ours once it is loaded (its handlers bound their waits).
    fn load_deadline(&self, room: &RoomId) -> Option<Duration> {
        self.rooms
            .get(room)
            .filter(|e| !e.loaded.load(Ordering::Relaxed))
            .map(|_| self.store.write_timeout)
    }

    /// The live sessions of `user`, for a room to subscribe in the same turn that makes
    /// the user a member (so no message can slip between membership and subscription).
    fn handles_of(&self, user: &UserId) -> Vec<SessionHandle> {
        self.sessions
            .get(user)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any live session of `user` is subscribed to `room`: the user's rooms are the
    /// union of their sessions' rooms.
    fn user_has_room(&self, user: &UserId, room: &RoomId) -> bool {
        self.sessions.get(user).is_some_and(|sessions| {
            sessions.keys().any(|id| {
                self.session_rooms
                    .get(id)
                    .is_some_and(|set| set.contains(room))
            })
        })
    }

    /// Tells the presence registry that `user`'s rooms gained `added` and lost `removed`
    /// (once per user, not per session). `do_send`: the registry's mailbox is unbounded and
    /// a lost change would leave presence announced in the wrong rooms.
    fn report_rooms(&self, user: &UserId, added: Vec<RoomId>, removed: Vec<RoomId>) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        if let Some(presence) = &self.presence {
            presence.do_send(UserRoomsChanged {
                user: user.clone(),
                added,
                removed,
            });
        }
    }

    /// Records that every session of `user` is subscribed to `room`; tells the presence
    /// registry if the room is new to the user. With `notify_room`, also subscribes them at
    /// the room (when the room did not already).
    fn subscribe_user(&mut self, user: &UserId, room: &RoomId, notify_room: bool) {
        let handles = self.handles_of(user);
        if handles.is_empty() {
            return;
        }
        let had = self.user_has_room(user, room);
        let addr = self.room(room);
        for h in handles {
            if self
                .session_rooms
                .entry(h.id)
                .or_default()
                .insert(room.clone())
                && notify_room
            {
                addr.do_send(Subscribe { handle: h.clone() });
            }
        }
        if !had {
            self.report_rooms(user, vec![room.clone()], vec![]);
        }
    }

    /// Unsubscribes every session of `user` from `room` and tells each session (for its
    /// local state), and the presence registry once if the user had the room.
    fn unsubscribe_user(&mut self, user: &UserId, room: &RoomId) {
        let Some(sessions) = self.sessions.get(user) else {
            return;
        };
        let mut had = false;
        for h in sessions.values() {
            if let Some(set) = self.session_rooms.get_mut(&h.id) {
                if set.remove(room) {
                    had = true;
                    if let Some(e) = self.rooms.get(room) {
                        e.addr.do_send(Unsubscribe { session: h.id });
                    }
                    h.send_control(SessionControl::Unsubscribed { room: room.clone() });
                }
            }
        }
        if had {
            self.report_rooms(user, vec![], vec![room.clone()]);
        }
    }

    fn sweep_idle_rooms(&mut self) {
        let idle = self.room_idle;
        let stale: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, e)| {
                // A room still loading is not idle: the subscriptions queued in its mailbox
                // are not counted yet, and it reports itself if it gives up.
                !e.addr.connected()
                    || (e.loaded.load(Ordering::Relaxed)
                        && e.subscribers.load(Ordering::Relaxed) == 0
                        && e.last_used.elapsed() >= idle)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(e) = self.rooms.remove(&id) {
                METRICS.rooms_active.dec();
                // Messages the supervisor already forwarded are ahead of Shutdown in the
                // room's mailbox; the room finishes in-flight writes before stopping.
                e.addr.do_send(Shutdown);
            }
        }
    }
}

impl Actor for RoomSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address().downgrade().recipient());
        let every = (self.room_idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(30));
        ctx.run_interval(every, |act, _| act.sweep_idle_rooms());
        let min_age = self.outbox_sweep.max(OUTBOX_MIN_AGE);
        ctx.run_interval(self.outbox_sweep, move |act, ctx| {
            act.sweep_outbox(min_age).map(|_, _, _| ()).spawn(ctx);
        });
    }
}

impl RoomSupervisor {
    /// Sends every outbox row older than `min_age` (and every row of a previous process),
    /// at most [`OUTBOX_BATCH`], back to its room; answers how many messages were sent.
    /// Completes once the rooms answered, so the rows are either settled or left for the
    /// next sweep; a sweep while one is running does nothing.
    fn sweep_outbox(
        &mut self,
        min_age: Duration,
    ) -> ResponseActFuture<Self, Result<usize, EngineError>> {
        if self.outbox_sweeping {
            return Box::pin(fut::ready(Ok(0)));
        }
        self.outbox_sweeping = true;
        let created_before =
            (crate::domain::now_millis() - min_age.as_millis() as i64).max(self.started_ms);
        let reader = self.store.reader.clone();
        Box::pin(
            async move {
                reader
                    .send(LoadPendingOutbox {
                        created_before,
                        limit: OUTBOX_BATCH,
                    })
                    .await
                    .map_err(PersistError::from)
                    .and_then(|r| r)
            }
            .into_actor(self)
            .then(|res, act, _| {
                let mut by_room: HashMap<RoomId, Vec<crate::db::models::StoredMessage>> =
                    HashMap::new();
                let found = res.map(|messages| {
                    let n = messages.len();
                    for m in messages {
                        by_room.entry(m.room.clone()).or_default().push(m);
                    }
                    n
                });
                if let Ok(n) = &found {
                    if *n > 0 {
                        log::info!("outbox sweep: re-processing {n} messages");
                        METRICS.outbox_redone.inc_by(*n as u64);
                    }
                }
                let sends: Vec<_> = by_room
                    .into_iter()
                    .map(|(room, messages)| act.room(&room).send(RedoNotifications { messages }))
                    .collect();
                async move {
                    // A room that stopped meanwhile leaves its rows for the next sweep.
                    futures_util::future::join_all(sends).await;
                    found.map_err(EngineError::from)
                }
                .into_actor(act)
            })
            .map(|res, act, _| {
                act.outbox_sweeping = false;
                if let Err(e) = &res {
                    log::warn!("outbox sweep failed: {e}");
                }
                res
            }),
        )
    }
}

/// Sent at start (once migrations are applied) and by tests: run the notification outbox
/// sweep now, taking rows at least `min_age` old. Answers how many messages were sent back
/// to their rooms (0 when a sweep was already running).
#[derive(Message)]
#[rtype(result = "Result<usize, EngineError>")]
pub struct SweepOutbox {
    pub min_age: Duration,
}

impl Handler<SweepOutbox> for RoomSupervisor {
    type Result = ResponseActFuture<Self, Result<usize, EngineError>>;
    fn handle(&mut self, msg: SweepOutbox, _: &mut Context<Self>) -> Self::Result {
        self.sweep_outbox(msg.min_age)
    }
}

/// Sent when a session opens, before its user's rooms are read: from now on membership
/// changes of the user reach this session too, so none can slip between that read and the
/// [`SubscribeSession`] that follows it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub handle: SessionHandle,
}

impl Handler<Connect> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        let handle = msg.handle;
        self.session_rooms.entry(handle.id).or_default();
        self.sessions
            .entry(handle.user.clone())
            .or_default()
            .insert(handle.id, handle);
    }
}

/// Sent once the user's rooms are read: subscribe the session to all of them. Answers each
/// room's seq at the moment the session was subscribed there (see [`Subscribe`]); a room
/// that does not answer within `wait` (it is still loading from an unreachable database) is
/// left out of the answer but stays subscribed.
#[derive(Message)]
#[rtype(result = "HashMap<RoomId, i64>")]
pub struct SubscribeSession {
    pub handle: SessionHandle,
    pub rooms: Vec<RoomId>,
    /// `rooms` is every room of the user (the read was not cut short by its limit).
    pub complete: bool,
    pub wait: Duration,
}

impl Handler<SubscribeSession> for RoomSupervisor {
    type Result = ResponseFuture<HashMap<RoomId, i64>>;
    fn handle(&mut self, msg: SubscribeSession, ctx: &mut Context<Self>) -> Self::Result {
        // The session may have closed while the rooms were loading.
        if !self.session_rooms.contains_key(&msg.handle.id) {
            return Box::pin(async { HashMap::new() });
        }
        let mut answers = Vec::with_capacity(msg.rooms.len());
        for id in msg.rooms {
            let addr = self.room(&id);
            // Through the in-flight set, so that the request outlives the wait below: actix
            // skips a queued request whose asker stopped waiting, and a room still loading
            // must subscribe the session once it loads.
            let answer = self.inflight.answer(
                addr.send(Subscribe {
                    handle: msg.handle.clone(),
                }),
                |res, _: &mut Self, _| res,
                ctx,
            );
            let wait = msg.wait;
            let room = id.clone();
            answers.push(async move {
                match actix::clock::timeout(wait, answer).await {
                    Ok(Some(Ok(Some(seq)))) => Some((room, seq)),
                    _ => None,
                }
            });
            if let Some(set) = self.session_rooms.get_mut(&msg.handle.id) {
                set.insert(id);
            }
        }
        if msg.complete {
            self.complete.insert(msg.handle.id);
        }
        // Every room of this session that no other session of the user has. A room already
        // added by a join between `Connect` and now is reported again: the registry may not
        // have known the user then (it learns of the session just before this message), and
        // it ignores rooms it already has.
        let user = &msg.handle.user;
        let added: Vec<RoomId> = self
            .session_rooms
            .get(&msg.handle.id)
            .map(|set| {
                set.iter()
                    .filter(|room| {
                        !self.sessions.get(user).is_some_and(|sessions| {
                            sessions.keys().any(|id| {
                                *id != msg.handle.id
                                    && self
                                        .session_rooms
                                        .get(id)
                                        .is_some_and(|s| s.contains(*room))
                            })
                        })
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.report_rooms(user, added, vec![]);
        Box::pin(async move {
            futures_util::future::join_all(answers)
                .await
                .into_iter()
                .flatten()
                .collect()
        })
    }
}

/// Sent when a session closes (idempotent).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
    pub user: UserId,
}

impl Handler<Disconnect> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        if let Some(map) = self.sessions.get_mut(&msg.user) {
            map.remove(&msg.session);
            if map.is_empty() {
                self.sessions.remove(&msg.user);
            }
        }
        self.complete.remove(&msg.session);
        for room in self.session_rooms.remove(&msg.session).unwrap_or_default() {
            if let Some(e) = self.rooms.get(&room) {
                e.addr.do_send(Unsubscribe {
                    session: msg.session,
                });
            }
        }
    }
}

/// Sent by a room that gave up loading (after `room_load_retry`), just before it stops:
/// forget the room, so that its next use starts a fresh one, and unsubscribe every session
/// counted as subscribed to it, telling each ([`SessionControl::RoomUnavailable`]). The room
/// waits for this to be handled, so no session can have been subscribed to a newer room of
/// the same id meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomFailed {
    pub room: RoomId,
    /// The room that failed, so a newer room of the same id is never forgotten by mistake.
    pub addr: Addr<Room>,
    /// What the sessions are told.
    pub reason: String,
}

impl Handler<RoomFailed> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: RoomFailed, _: &mut Context<Self>) {
        match self.rooms.get(&msg.room) {
            Some(e) if e.addr != msg.addr => {
                log::warn!("room {}: a stale room actor gave up loading", msg.room);
                return;
            }
            Some(_) => {
                self.rooms.remove(&msg.room);
                METRICS.rooms_active.dec();
            }
            None => {}
        }
        let mut told = 0;
        let mut users = HashSet::new();
        for h in self.sessions.values().flat_map(|m| m.values()) {
            if let Some(set) = self.session_rooms.get_mut(&h.id) {
                if set.remove(&msg.room) {
                    users.insert(h.user.clone());
                    // Its room set is no longer the user's full set: membership questions
                    // go to the rooms again.
                    self.complete.remove(&h.id);
                    h.send_control(SessionControl::RoomUnavailable {
                        room: msg.room.clone(),
                        reason: msg.reason.clone(),
                    });
                    told += 1;
                }
            }
        }
        for user in &users {
            self.report_rooms(user, vec![], vec![msg.room.clone()]);
        }
        log::warn!(
            "room {} gave up loading; {told} sessions unsubscribed",
            msg.room
        );
    }
}

/// Sent for a `join`.
#[derive(Message)]
#[rtype(result = "Result<Joined, EngineError>")]
pub struct Join {
    pub user: UserId,
    pub room: RoomId,
    pub since_seq: Option<i64>,
    pub missed_limit: i64,
    pub missed_max_bytes: usize,
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
async fn within<T>(
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

#[derive(Message)]
#[rtype(result = "Result<(Vec<crate::db::models::StoredMessage>, bool), EngineError>")]
pub struct RouteHistory {
    pub room: RoomId,
    pub history: History,
}

impl Handler<RouteHistory> for RoomSupervisor {
    type Result =
        ResponseFuture<Result<(Vec<crate::db::models::StoredMessage>, bool), EngineError>>;
    fn handle(&mut self, msg: RouteHistory, ctx: &mut Context<Self>) -> Self::Result {
        if !msg.history.admin {
            if let Err(e) = self.refuse_stranger(&msg.history.user, &msg.room) {
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
                addr.send(msg.history).await?
            }));
        };
        // Started for this request alone (REST, or a session whose rooms are still
        // loading): a refusal must not leave the room actor behind for `room_idle`.
        let room = msg.room;
        let answer = self.inflight.answer(
            addr.send(msg.history),
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
            } else {
                act.unsubscribe_user(&user, &room);
            }
            Ok(changed)
        }))
    }
}

/// Sent by the room supervisor to the presence registry when the rooms of `user` (the union
/// over the user's live sessions) gained or lost rooms: once per user and change, however
/// many sessions the user has. Defined here rather than in the registry's file to keep the
/// module dependency one-way (see the module doc).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct UserRoomsChanged {
    pub user: UserId,
    pub added: Vec<RoomId>,
    pub removed: Vec<RoomId>,
}

/// Sent by `Engine::start` to the room supervisor once the presence registry runs: where to
/// report [`UserRoomsChanged`]. A later one replaces the earlier (tests use this to observe
/// the reports).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachPresence {
    pub presence: Recipient<UserRoomsChanged>,
}

impl Handler<AttachPresence> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: AttachPresence, _: &mut Context<Self>) {
        self.presence = Some(msg.presence);
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

/// Sent by the admin room presence route.
#[derive(Message)]
#[rtype(result = "Result<RoomOnline, EngineError>")]
pub struct GetRoomPresence {
    pub room: RoomId,
}

impl Handler<GetRoomPresence> for RoomSupervisor {
    type Result = ResponseFuture<Result<RoomOnline, EngineError>>;
    fn handle(&mut self, msg: GetRoomPresence, _: &mut Context<Self>) -> Self::Result {
        let addr = self.room(&msg.room);
        let deadline = self.load_deadline(&msg.room);
        Box::pin(within(deadline, msg.room, async move {
            Ok(addr.send(GetRoomOnline).await?)
        }))
    }
}

/// Counts for `/v1/admin/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomStats {
    pub active_rooms: usize,
    pub connected_users: usize,
    pub sessions: usize,
}

#[derive(Message)]
#[rtype(result = "RoomStats")]
pub struct GetRoomStats;

impl Handler<GetRoomStats> for RoomSupervisor {
    type Result = MessageResult<GetRoomStats>;
    fn handle(&mut self, _: GetRoomStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RoomStats {
            active_rooms: self.rooms.len(),
            connected_users: self.sessions.len(),
            sessions: self.session_rooms.len(),
        })
    }
}

/// Sent by the admin presence route: the rooms each of these sessions is subscribed to.
#[derive(Message)]
#[rtype(result = "HashMap<SessionId, Vec<RoomId>>")]
pub struct GetSessionRooms {
    pub sessions: Vec<SessionId>,
}

impl Handler<GetSessionRooms> for RoomSupervisor {
    type Result = MessageResult<GetSessionRooms>;
    fn handle(&mut self, msg: GetSessionRooms, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.sessions
                .into_iter()
                .map(|s| {
                    let mut rooms: Vec<RoomId> = self
                        .session_rooms
                        .get(&s)
                        .map(|r| r.iter().cloned().collect())
                        .unwrap_or_default();
                    rooms.sort();
                    (s, rooms)
                })
                .collect(),
        )
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

/// Asked before a session starts: admits it, or refuses it when its user already has
/// `max_sessions` sessions or its client address `max_per_ip` (0: unlimited). The check and
/// the count are one step, so parallel connects cannot overshoot a cap; the returned ticket
/// holds the place until the session drops it.
#[derive(Message)]
#[rtype(result = "Result<AdmissionTicket, EngineError>")]
pub struct AdmitSession {
    pub user: UserId,
    pub ip: Option<IpAddr>,
    pub max_sessions: usize,
    pub max_per_ip: usize,
}

/// A session's place under the per-user and per-address caps; dropping it gives it back.
pub struct AdmissionTicket {
    user: UserId,
    ip: Option<IpAddr>,
    supervisor: Addr<RoomSupervisor>,
}

impl Drop for AdmissionTicket {
    fn drop(&mut self) {
        self.supervisor.do_send(ReleaseAdmission {
            user: self.user.clone(),
            ip: self.ip,
        });
    }
}

impl std::fmt::Debug for AdmissionTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdmissionTicket({}, {:?})", self.user, self.ip)
    }
}

impl Handler<AdmitSession> for RoomSupervisor {
    type Result = Result<AdmissionTicket, EngineError>;
    fn handle(&mut self, msg: AdmitSession, ctx: &mut Context<Self>) -> Self::Result {
        let sessions = self.admitted.get(&msg.user).copied().unwrap_or(0);
        if sessions >= msg.max_sessions {
            return Err(EngineError::LimitExceeded(format!(
                "{} already has {sessions} sessions, the limit",
                msg.user
            )));
        }
        let ip = msg.ip.map(crate::admission::ip_key);
        if let (true, Some(ip)) = (msg.max_per_ip > 0, ip) {
            if self.admitted_ips.get(&ip).copied().unwrap_or(0) >= msg.max_per_ip {
                return Err(EngineError::LimitExceeded(format!(
                    "too many connections from {ip} (limit {})",
                    msg.max_per_ip
                )));
            }
        }
        *self.admitted.entry(msg.user.clone()).or_default() += 1;
        if let Some(ip) = ip {
            *self.admitted_ips.entry(ip).or_default() += 1;
        }
        Ok(AdmissionTicket {
            user: msg.user,
            ip,
            supervisor: ctx.address(),
        })
    }
}

/// Sent by a dropped [`AdmissionTicket`].
#[derive(Message)]
#[rtype(result = "()")]
struct ReleaseAdmission {
    user: UserId,
    ip: Option<IpAddr>,
}

impl Handler<ReleaseAdmission> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: ReleaseAdmission, _: &mut Context<Self>) {
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        release(&mut self.admitted, &msg.user);
        if let Some(ip) = msg.ip {
            release(&mut self.admitted_ips, &ip);
        }
    }
}
