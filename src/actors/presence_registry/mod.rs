//! `PresenceRegistry`: every online user's sessions (devices), chosen status, custom status
//! (with optional expiry), metadata, activity, last-seen and rooms, and who watches whom.
//!
//! It emits changes only on real transitions — first session → online, last session gone and
//! the grace period over → offline, a status change, auto-away after idling and back — as
//! `room_presence` diffs to the members of the user's rooms (through the room supervisor) and
//! as `presence` frames to watchers. `invisible` users look offline to everyone else, and
//! their last-seen does not advance for others. Deadlines (grace, idle, expiry) are checked
//! by a periodic sweep against the configured [`Clock`], so tests can move time by hand.
//!
//! Files: `mod.rs` (state, transitions, the sweep, rooms and status), `sessions.rs` (session
//! lifecycle and activity: `SessionOpened`, `SessionClosed`, `Touch`), `queries.rs` (presence
//! lookups and watching), `admin.rs` (admin and shutdown messages).
//!
//! Sent to by: sessions through their `SessionPort` and the `Engine` operations behind it
//! (session lifecycle, activity, status, watching), REST handlers, and the room supervisor (`UserRoomsChanged`, once per user when
//! the user's rooms change; the supervisor owns subscriptions, the registry keeps a copy of
//! each online user's rooms to announce presence there and for the admin views).
//!
//! Sends to: the room supervisor (`PresenceChanged`), watcher sessions (`Deliver`), the
//! commit queue (last-seen and status) and the database readers (offline users' last-seen).

mod admin;
mod cluster;
mod consent;
mod queries;
mod sessions;

pub use admin::*;
pub use cluster::RemoteRoomSessions;
pub use consent::{BlockChanged, DeliverToUser};
pub use queries::*;
pub use sessions::{SessionClosed, SessionOpened, Touch};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use super::commit_queue::Commit;
use super::room_supervisor::{PresenceChanged, RoomSupervisor, UserRoomsChanged};
use super::session::handle::{DeliverOutcome, SessionHandle};
use crate::actors::store::Store;
use crate::clock::Clock;
use crate::cluster::presence::{NodeEntry, RemotePresence, SharedStatus};
use crate::cluster::Cluster;
use crate::db::models::{UserRecord, WriteOp};
use crate::domain::{
    rfc3339, ChosenStatus, CustomMessage, Millis, RoomId, SessionId, UserId, VisibleStatus,
};
use crate::metrics::METRICS;
use crate::protocol::{PresenceView, ServerFrame};

/// Policy of the registry, from `Settings`.
#[derive(Debug, Clone)]
pub struct PresencePolicy {
    pub grace: Duration,
    pub sweep: Duration,
    pub auto_away: Option<Duration>,
    /// Most users one session may watch.
    pub max_watch: usize,
    pub clock: Arc<dyn Clock>,
}

struct DevicePresence {
    handle: SessionHandle,
    last_activity: Millis,
}

/// A user's sessions on this node. Almost every user has one or two, so a vector: 24 bytes
/// plus one small allocation, where a `HashMap` took 48 bytes plus a table of 128 (one
/// online user per connection: docs/benchmarks.md, "What one connection costs"). At most
/// `HERALD_MAX_SESSIONS_PER_USER` entries, so the linear searches stay short.
#[derive(Default)]
struct Sessions(Vec<(SessionId, DevicePresence)>);

impl Sessions {
    fn insert(&mut self, id: SessionId, d: DevicePresence) {
        match self.get_mut(&id) {
            Some(old) => *old = d,
            None => self.0.push((id, d)),
        }
    }

    fn remove(&mut self, id: &SessionId) -> Option<DevicePresence> {
        let i = self.0.iter().position(|(s, _)| s == id)?;
        let (_, d) = self.0.swap_remove(i);
        if self.0.is_empty() {
            // Give the allocation back while the user waits out the grace period.
            self.0 = Vec::new();
        }
        Some(d)
    }

    fn get_mut(&mut self, id: &SessionId) -> Option<&mut DevicePresence> {
        self.0.iter_mut().find(|(s, _)| s == id).map(|(_, d)| d)
    }

    fn values(&self) -> impl Iterator<Item = &DevicePresence> {
        self.0.iter().map(|(_, d)| d)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct UserPresence {
    sessions: Sessions,
    status: ChosenStatus,
    /// Set by the server after `auto_away` of inactivity; shows `online` as `away`.
    auto_away: bool,
    custom_message: Option<CustomMessage>,
    custom_expires_at: Option<Millis>,
    metadata: Option<Value>,
    /// Last time the user was seen: activity while online, or when the last session ended.
    last_seen: Option<Millis>,
    /// What others see of last_seen (it does not advance while invisible).
    visible_last_seen: Option<Millis>,
    last_activity: Millis,
    /// The user's rooms, a copy kept by the supervisor's [`UserRoomsChanged`] reports (the
    /// supervisor owns subscriptions). Kept after the last session closes, to announce the
    /// user offline there once the grace period ends.
    rooms: HashSet<RoomId>,
    /// When the grace period after the last session ends.
    offline_at: Option<Millis>,
    /// Whether others currently see this user online.
    announced: bool,
    /// Set by an admin disconnect: go offline at once when the last session closes.
    skip_grace: bool,
    /// When the chosen status was last set (Unix ms), on whichever node: the latest wins.
    status_at: Millis,
    /// Cluster mode: the user's sessions on other nodes, and whether all of them are idle
    /// (a copy of what [`RemotePresence`] holds, kept for users with sessions here; a user
    /// only other nodes have has no `UserPresence`, see `cluster.rs`).
    remote_devices: usize,
    remote_idle: bool,
    /// The user's rooms on other nodes (where their presence is announced too).
    remote_rooms: HashSet<RoomId>,
    /// Cluster mode: a fingerprint of the entry this node last published for the user
    /// (`cluster::UNPUBLISHED`: none).
    published: u64,
}

impl UserPresence {
    fn new(stored: Option<&UserRecord>, now: Millis) -> Self {
        let (status, custom_message, custom_expires_at, last_seen) = match stored {
            Some(r) => (
                r.status,
                r.custom_message.clone(),
                r.custom_expires_at,
                r.last_seen,
            ),
            None => (ChosenStatus::Online, None, None, None),
        };
        UserPresence {
            sessions: Sessions::default(),
            status,
            auto_away: false,
            custom_message,
            custom_expires_at,
            metadata: None,
            last_seen,
            visible_last_seen: last_seen,
            last_activity: now,
            rooms: HashSet::new(),
            offline_at: None,
            announced: false,
            skip_grace: false,
            status_at: 0,
            remote_devices: 0,
            remote_idle: true,
            remote_rooms: HashSet::new(),
            published: cluster::UNPUBLISHED,
        }
    }

    /// Whether the user has a session anywhere (this node or another).
    fn connected(&self) -> bool {
        !self.sessions.is_empty() || self.remote_devices > 0
    }

    fn visible(&self) -> bool {
        self.connected() && self.status != ChosenStatus::Invisible
    }

    /// Auto-away: every device, here and on other nodes, idle.
    fn away(&self) -> bool {
        (self.sessions.is_empty() || self.auto_away)
            && (self.remote_devices == 0 || self.remote_idle)
    }

    /// Rooms where the user's presence is announced.
    fn all_rooms(&self) -> Vec<RoomId> {
        let mut rooms: Vec<RoomId> = self.rooms.union(&self.remote_rooms).cloned().collect();
        rooms.sort();
        rooms
    }

    fn seen(&mut self, now: Millis) {
        self.last_seen = Some(now);
        if self.status != ChosenStatus::Invisible {
            self.visible_last_seen = Some(now);
        }
    }

    /// The presence object others see.
    fn view(&self, user: &UserId) -> PresenceView {
        if !self.visible() {
            return PresenceView::offline(user.as_str(), self.visible_last_seen);
        }
        PresenceView {
            user: user.to_string(),
            status: match self.status {
                ChosenStatus::Away => VisibleStatus::Away,
                ChosenStatus::Busy => VisibleStatus::Busy,
                _ if self.away() => VisibleStatus::Away,
                _ => VisibleStatus::Online,
            },
            custom_message: self.custom_message.clone(),
            metadata: self.metadata.clone(),
            last_seen: self.visible_last_seen.map(rfc3339),
            devices: self.sessions.len() + self.remote_devices,
        }
    }
}

pub struct PresenceRegistry {
    store: Store,
    rooms: Addr<RoomSupervisor>,
    policy: PresencePolicy,
    /// Looked up by every join (the members it lists), presence change and sweep: foldhash,
    /// not SipHash (the keys are user ids the app's tokens name, not the client's choice).
    users: foldhash::HashMap<UserId, UserPresence>,
    /// watched user → watching sessions
    watchers: HashMap<UserId, HashMap<SessionId, SessionHandle>>,
    /// watching session → watched users, for cleanup
    watching: HashMap<SessionId, HashSet<UserId>>,
    /// Replies owed to `AwaitSessionsClosed` (shutdown): sent once no session is registered.
    closed_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Cluster mode: the backplane, and what the other nodes say about their users.
    cluster: Cluster,
    remote: RemotePresence,
    /// This node's presence version counter (see `cluster.rs`).
    version: u64,
}

impl PresenceRegistry {
    pub fn new(
        store: Store,
        rooms: Addr<RoomSupervisor>,
        cluster: Cluster,
        policy: PresencePolicy,
    ) -> Self {
        PresenceRegistry {
            cluster,
            remote: RemotePresence::default(),
            // Above anything an earlier run of this node published (versions order deltas).
            version: crate::domain::now_millis().max(0) as u64 * 1000,
            store,
            rooms,
            policy,
            users: foldhash::HashMap::default(),
            watchers: HashMap::new(),
            watching: HashMap::new(),
            closed_waiters: Vec::new(),
        }
    }

    fn now(&self) -> Millis {
        self.policy.clock.now()
    }

    /// Tells the user's rooms and watchers what others now see of them.
    fn announce(&mut self, user: &UserId) {
        let Some(entry) = self.users.get_mut(user) else {
            return;
        };
        let view = entry.view(user);
        let online = entry.visible();
        let changed = entry.announced != online;
        entry.announced = online;
        let rooms = entry.all_rooms();
        self.announce_view(user, view, online, rooms);
        // Webhooks for users with a session here; users only other nodes have are reported
        // by their nodes.
        if changed {
            self.webhook_presence(user, online);
        }
    }

    /// Tells `rooms` and the user's watchers that others now see `view` (`online`: as a
    /// join, else as a leave).
    fn announce_view(
        &mut self,
        user: &UserId,
        view: PresenceView,
        online: bool,
        rooms: Vec<RoomId>,
    ) {
        let (joins, leaves) = if online {
            (vec![view.clone()], vec![])
        } else {
            (vec![], vec![view.clone()])
        };
        if !rooms.is_empty() {
            self.rooms.do_send(PresenceChanged {
                about: user.clone(),
                rooms,
                joins: Arc::new(joins),
                leaves: Arc::new(leaves),
            });
        }
        self.notify_watchers(user, &view);
    }

    /// Writes `user.online` / `user.offline` to the webhook outbox when an endpoint wants it:
    /// a write of its own (at least once; nothing else is in that transaction).
    fn webhook_presence(&self, user: &UserId, online: bool) {
        let t = if online {
            crate::webhook::EventType::UserOnline
        } else {
            crate::webhook::EventType::UserOffline
        };
        if self.store.webhooks.wants(t) {
            let event = crate::webhook::presence(user, online, self.now());
            self.persist(WriteOp::Webhooks(
                crate::db::models::WebhookWrite::Enqueue {
                    events: vec![(event, None)],
                },
            ));
        }
    }

    /// Announces only if what others see changed.
    fn announce_if_changed(&mut self, user: &UserId, before: &PresenceView) {
        let Some(entry) = self.users.get(user) else {
            return;
        };
        if entry.view(user) != *before {
            self.announce(user);
        }
    }

    fn notify_watchers(&mut self, user: &UserId, view: &PresenceView) {
        if let Some(ws) = self.watchers.get(user) {
            let frame = ServerFrame::Presence(view).encode();
            for h in ws.values() {
                if h.deliver(&frame, None) == DeliverOutcome::Queued {
                    METRICS.frames_out.inc();
                }
            }
        }
    }

    fn persist(&self, op: WriteOp) {
        // do_send keeps writes in order behind earlier ones (the shutdown drain relies on it);
        // a failed batch is logged and counted by the commit queue.
        self.store.commits.do_send(Commit { ops: vec![op] });
    }

    fn persist_status(&self, user: &UserId) {
        if let Some(e) = self.users.get(user) {
            self.persist(WriteOp::SaveStatus {
                user: user.clone(),
                status: e.status,
                custom_message: e.custom_message.clone(),
                custom_expires_at: e.custom_expires_at,
                at: self.now(),
            });
        }
    }

    fn go_offline(&mut self, user: &UserId) {
        let Some(entry) = self.users.get(user) else {
            return;
        };
        if !entry.sessions.is_empty() {
            return;
        }
        // Still on another node (connected, or in its grace period): this node just has no
        // session left, and keeps only the compact remote entry, which announces the
        // offline when its last node drops the user.
        if self.remote.has(user) {
            self.hand_over_to_remote(user);
            return;
        }
        if entry.announced {
            self.announce(user);
        }
        self.remove_local(user);
    }

    /// Applies every deadline that has passed: grace periods, idleness, status expiry.
    fn sweep(&mut self) {
        let now = self.now();
        let mut offline = Vec::new();
        let mut changed = Vec::new();
        for (user, e) in self.users.iter_mut() {
            if e.sessions.is_empty() {
                // Remote-only users have no offline_at: their nodes keep their deadlines.
                if e.offline_at.is_some_and(|t| t <= now) {
                    offline.push(user.clone());
                }
                continue;
            }
            // Runs every few tens of milliseconds over every user: build views only for the
            // users whose state changes.
            let expires = e.custom_expires_at.is_some_and(|t| t <= now);
            let goes_away = self.policy.auto_away.is_some_and(|idle| {
                !e.auto_away
                    && e.status == ChosenStatus::Online
                    && now - e.last_activity >= idle.as_millis() as i64
            });
            if !expires && !goes_away {
                continue;
            }
            let before = e.view(user);
            if expires {
                e.custom_message = None;
                e.custom_expires_at = None;
            }
            if goes_away {
                e.auto_away = true;
            }
            changed.push((user.clone(), before, expires));
        }
        for u in offline {
            self.go_offline(&u);
        }
        for (u, before, persist) in changed {
            if persist {
                self.persist_status(&u);
            }
            self.announce_if_changed(&u, &before);
            self.publish_local(&u);
        }
    }
}

impl Actor for PresenceRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.policy.sweep, |act, _| act.sweep());
    }
}

/// Sent by tests (and the sweep timer's equivalent): apply every deadline that has passed
/// according to the clock.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sweep;

impl Handler<Sweep> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, _: Sweep, _: &mut Context<Self>) {
        self.sweep();
    }
}

/// The supervisor's report of a user's rooms (defined in `room_supervisor/sessions.rs`): the derived
/// copy in `rooms` follows it, and the user, if visible, is announced as joining the added
/// rooms and leaving the removed ones. Rooms already known are ignored, so a repeated report
/// announces nothing twice.
impl Handler<UserRoomsChanged> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: UserRoomsChanged, _: &mut Context<Self>) {
        let user = msg.user.clone();
        self.rooms_changed(msg);
        self.publish_local(&user);
    }
}

impl PresenceRegistry {
    fn rooms_changed(&mut self, msg: UserRoomsChanged) {
        let Some(entry) = self.users.get_mut(&msg.user) else {
            return;
        };
        // A room the user also has on another node was announced already (and stays).
        let added: Vec<RoomId> = msg
            .added
            .into_iter()
            .filter(|r| entry.rooms.insert(r.clone()) && !entry.remote_rooms.contains(r))
            .collect();
        let removed: Vec<RoomId> = msg
            .removed
            .into_iter()
            .filter(|r| entry.rooms.remove(r) && !entry.remote_rooms.contains(r))
            .collect();
        if !entry.visible() {
            return;
        }
        let view = Arc::new(vec![entry.view(&msg.user)]);
        let none = Arc::new(Vec::new());
        if !added.is_empty() {
            self.rooms.do_send(PresenceChanged {
                about: msg.user.clone(),
                rooms: added,
                joins: view.clone(),
                leaves: none.clone(),
            });
        }
        if !removed.is_empty() {
            let mut gone = (*view).clone();
            for v in &mut gone {
                v.status = VisibleStatus::Offline;
                v.devices = 0;
            }
            self.rooms.do_send(PresenceChanged {
                about: msg.user,
                rooms: removed,
                joins: none,
                leaves: Arc::new(gone),
            });
        }
    }
}

/// Sent for a `presence` frame (and by admins): the user's chosen status on all devices.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetStatus {
    pub user: UserId,
    pub status: ChosenStatus,
    pub custom_message: Option<CustomMessage>,
    /// When the custom message is cleared by the server.
    pub custom_expires_at: Option<Millis>,
    pub metadata: Option<Value>,
}

impl Handler<SetStatus> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: SetStatus, _: &mut Context<Self>) {
        let now = self.now();
        if !self.users.contains_key(&msg.user) && self.remote.has(&msg.user) {
            // Online on other nodes only (an admin on this node): stored here, and shared.
            let status = SharedStatus {
                status: msg.status,
                custom_expires_at: msg
                    .custom_expires_at
                    .filter(|_| msg.custom_message.is_some()),
                custom_message: msg.custom_message,
                metadata: msg.metadata,
                at: now,
            };
            self.persist(WriteOp::SaveStatus {
                user: msg.user.clone(),
                status: status.status,
                custom_message: status.custom_message.clone(),
                custom_expires_at: status.custom_expires_at,
                at: now,
            });
            self.cluster
                .publish(crate::cluster::wire::ClusterEvent::Status {
                    user: msg.user.clone(),
                    status: status.clone(),
                });
            self.remote_status_changed(&msg.user, &status);
            return;
        }
        let Some(entry) = self.users.get_mut(&msg.user) else {
            // Not online: keep it for the next connection.
            self.persist(WriteOp::SaveStatus {
                user: msg.user,
                status: msg.status,
                custom_expires_at: msg
                    .custom_expires_at
                    .filter(|_| msg.custom_message.is_some()),
                custom_message: msg.custom_message,
                at: now,
            });
            return;
        };
        let before = entry.view(&msg.user);
        let was_announced = entry.announced;
        entry.status = msg.status;
        entry.auto_away = false;
        entry.custom_message = msg.custom_message;
        entry.custom_expires_at = msg
            .custom_expires_at
            .filter(|_| entry.custom_message.is_some());
        entry.metadata = msg.metadata;
        entry.last_activity = now;
        entry.status_at = now;
        self.persist_status(&msg.user);
        self.share_status(&msg.user);
        if was_announced || self.users.get(&msg.user).is_some_and(|e| e.visible()) {
            self.announce_if_changed(&msg.user, &before);
        }
    }
}
