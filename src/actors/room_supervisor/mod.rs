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

//! The supervisor's messages live by concern: `admission` (session caps), `sessions`
//! (connect, subscribe, disconnect, subscription bookkeeping and the rooms-changed report),
//! `routing` (requests routed to a room), `outbox_sweep` (the notification outbox sweep) and
//! `queries` (stats and presence read by the admin routes). This file holds the actor, its
//! state and its lifecycle.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::database::LoadPendingOutbox;
use super::inflight::InFlight;
use super::room::{MessageNotifier, Room, RoomLinks, RoomPolicy, Shutdown};
use super::session::handle::{SessionControl, SessionHandle};
use crate::actors::store::Store;
use crate::cluster::Cluster;
use crate::domain::{RoomId, RoomKind, SessionId, UserId};
use crate::error::{EngineError, PersistError};
use crate::metrics::METRICS;
use crate::protocol::PresenceView;

mod admission;
mod cluster;
mod consent;
mod outbox_sweep;
mod queries;
mod routing;
mod sessions;

pub use admission::{AdmissionTicket, AdmitSession};
pub use consent::EnsureDirectRoom;
pub use outbox_sweep::{SweepOutbox, OUTBOX_BATCH, OUTBOX_MIN_AGE};
pub use queries::{GetRoomPresence, GetRoomStats, GetSessionRooms, RoomStats};
pub use routing::{
    ChangeMember, CreateRoom, GetRoom, Join, Leave, PresenceChanged, RouteChange, RouteChanges,
    RouteEvent, RoutePublish, RouteRead, RouteReceipt, RouteTyping,
};
pub use sessions::{
    AttachOnlineLookup, AttachPresence, Connect, Disconnect, OnlineAmong, RoomFailed,
    SubscribeSession, UserRoomsChanged,
};

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
    /// Cluster mode: where new rooms ask which members are connected on any node; set by
    /// [`AttachOnlineLookup`].
    online_lookup: Option<Recipient<OnlineAmong>>,
    /// Cluster mode: rooms publish through it; membership changes are announced on it.
    cluster: Cluster,
}

impl RoomSupervisor {
    pub fn new(
        store: Store,
        policy: RoomPolicy,
        room_idle: Duration,
        notifier: MessageNotifier,
        outbox_sweep: Duration,
        cluster: Cluster,
    ) -> Self {
        RoomSupervisor {
            cluster,
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
            online_lookup: None,
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
            RoomLinks {
                subscriber_count: subscribers.clone(),
                loaded: loaded.clone(),
                supervisor: self.me.clone(),
                cluster: self.cluster.clone(),
                online_lookup: self.online_lookup.clone(),
            },
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
