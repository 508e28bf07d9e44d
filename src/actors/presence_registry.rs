//! `PresenceRegistry`: every online user's sessions (devices), chosen status, custom status,
//! metadata, last-seen and rooms, and who watches whom.
//!
//! It emits changes only on real transitions (first session → online, last session gone and
//! the grace period over → offline, a status change), as `room_presence` diffs to the members
//! of the user's rooms (through the room supervisor) and as `presence` frames to watchers.
//! `invisible` users look offline to everyone else. Last-seen is written when a user's last
//! session closes, and for everyone still online at shutdown.
//!
//! Sends to: the room supervisor (`PresenceChanged`), watcher sessions (`Deliver`), the
//! commit queue (last-seen and status) and the database readers (offline users' last-seen).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use serde_json::Value;

use super::commit_queue::Commit;
use super::database::LoadUsers;
use super::room_supervisor::{PresenceChanged, RoomSupervisor};
use super::session::{SessionControl, SessionHandle};
use crate::db::models::{UserRecord, WriteOp};
use crate::domain::{
    now_millis, rfc3339, ChosenStatus, Millis, RoomId, SessionId, UserId, VisibleStatus,
};
use crate::engine::Store;
use crate::error::{EngineError, PersistError};
use crate::protocol::{self, PresenceView};

struct UserPresence {
    sessions: HashMap<SessionId, SessionHandle>,
    status: ChosenStatus,
    custom_message: Option<String>,
    metadata: Option<Value>,
    /// Last time the user was seen: session start, or when their last session ended.
    last_seen: Option<Millis>,
    /// What others last saw of the user's last_seen (it does not advance while invisible).
    visible_last_seen: Option<Millis>,
    rooms: HashSet<RoomId>,
    /// Pending offline transition after the last session closed.
    offline_timer: Option<SpawnHandle>,
    /// Whether others currently see this user online.
    announced: bool,
    /// Set by an admin disconnect: go offline at once when the last session closes.
    skip_grace: bool,
}

impl UserPresence {
    fn visible(&self) -> bool {
        !self.sessions.is_empty() && self.status != ChosenStatus::Invisible
    }

    fn view(&self, user: &UserId) -> PresenceView {
        if !self.visible() {
            return PresenceView::offline(user.as_str(), self.visible_last_seen);
        }
        PresenceView {
            user: user.to_string(),
            status: match self.status {
                ChosenStatus::Away => VisibleStatus::Away,
                ChosenStatus::Busy => VisibleStatus::Busy,
                _ => VisibleStatus::Online,
            },
            custom_message: self.custom_message.clone(),
            metadata: self.metadata.clone(),
            last_seen: self.visible_last_seen.map(rfc3339),
            devices: self.sessions.len(),
        }
    }
}

pub struct PresenceRegistry {
    store: Store,
    rooms: Addr<RoomSupervisor>,
    grace: Duration,
    users: HashMap<UserId, UserPresence>,
    /// watched user → watching sessions
    watchers: HashMap<UserId, HashMap<SessionId, SessionHandle>>,
    /// watching session → watched users, for cleanup
    watching: HashMap<SessionId, HashSet<UserId>>,
}

impl PresenceRegistry {
    pub fn new(store: Store, rooms: Addr<RoomSupervisor>, grace: Duration) -> Self {
        PresenceRegistry {
            store,
            rooms,
            grace,
            users: HashMap::new(),
            watchers: HashMap::new(),
            watching: HashMap::new(),
        }
    }

    /// Tells rooms and watchers what others now see of `user`.
    fn announce(&mut self, user: &UserId, rooms: Vec<RoomId>) {
        let Some(entry) = self.users.get_mut(user) else {
            return;
        };
        let view = entry.view(user);
        let online = entry.visible();
        entry.announced = online;
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

    fn notify_watchers(&mut self, user: &UserId, view: &PresenceView) {
        if let Some(ws) = self.watchers.get(user) {
            let frame: ByteString = protocol::event("presence", view).into();
            for h in ws.values() {
                if h.deliver(&frame, None) == super::session::DeliverOutcome::Queued {
                    crate::metrics::METRICS.frames_out.inc();
                }
            }
        }
    }

    fn persist(&self, op: WriteOp) {
        // do_send keeps writes in order behind earlier ones (the shutdown drain relies on it);
        // a failed batch is logged and counted by the commit queue.
        self.store.commits.do_send(Commit { ops: vec![op] });
    }

    fn go_offline(&mut self, user: &UserId) {
        let Some(entry) = self.users.get(user) else {
            return;
        };
        if !entry.sessions.is_empty() {
            return;
        }
        let was_announced = entry.announced;
        let rooms: Vec<RoomId> = entry.rooms.iter().cloned().collect();
        if was_announced {
            self.announce(user, rooms);
        }
        self.users.remove(user);
    }
}

impl Actor for PresenceRegistry {
    type Context = Context<Self>;
}

/// Sent when a session has registered with the room supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionOpened {
    pub handle: SessionHandle,
    pub rooms: Vec<RoomId>,
    /// What is stored about the user, used when the user was not online yet.
    pub stored: Option<UserRecord>,
}

impl Handler<SessionOpened> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: SessionOpened, ctx: &mut Context<Self>) {
        let user = msg.handle.user.clone();
        let now = now_millis();
        let entry = self.users.entry(user.clone()).or_insert_with(|| {
            let (status, custom_message, last_seen) = match &msg.stored {
                Some(r) => (
                    ChosenStatus::parse(&r.status).unwrap_or_default(),
                    r.custom_message.clone(),
                    r.last_seen,
                ),
                None => (ChosenStatus::Online, None, None),
            };
            UserPresence {
                sessions: HashMap::new(),
                status,
                custom_message,
                metadata: None,
                last_seen,
                visible_last_seen: last_seen,
                rooms: HashSet::new(),
                offline_timer: None,
                announced: false,
                skip_grace: false,
            }
        });
        if let Some(t) = entry.offline_timer.take() {
            ctx.cancel_future(t);
        }
        entry.sessions.insert(msg.handle.id, msg.handle);
        entry.rooms.extend(msg.rooms);
        entry.last_seen = Some(now);
        if entry.status != ChosenStatus::Invisible {
            entry.visible_last_seen = Some(now);
        }
        if !entry.announced && entry.visible() {
            let rooms = entry.rooms.iter().cloned().collect();
            self.announce(&user, rooms);
        }
    }
}

/// Sent when a session closes (idempotent).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub session: SessionId,
    pub user: UserId,
}

impl Handler<SessionClosed> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: SessionClosed, ctx: &mut Context<Self>) {
        for watched in self.watching.remove(&msg.session).unwrap_or_default() {
            if let Some(w) = self.watchers.get_mut(&watched) {
                w.remove(&msg.session);
                if w.is_empty() {
                    self.watchers.remove(&watched);
                }
            }
        }
        let Some(entry) = self.users.get_mut(&msg.user) else {
            return;
        };
        if entry.sessions.remove(&msg.session).is_none() || !entry.sessions.is_empty() {
            return;
        }
        let now = now_millis();
        entry.last_seen = Some(now);
        if entry.status != ChosenStatus::Invisible {
            entry.visible_last_seen = Some(now);
        }
        let skip_grace = std::mem::take(&mut entry.skip_grace);
        self.persist(WriteOp::SaveLastSeen {
            user: msg.user.clone(),
            at: now,
        });
        if self.grace.is_zero() || skip_grace {
            self.go_offline(&msg.user);
        } else {
            let user = msg.user.clone();
            let h = ctx.run_later(self.grace, move |act, _| act.go_offline(&user));
            if let Some(entry) = self.users.get_mut(&msg.user) {
                entry.offline_timer = Some(h);
            }
        }
    }
}

/// Sent by a session when it was subscribed to or unsubscribed from rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomsChanged {
    pub user: UserId,
    pub added: Vec<RoomId>,
    pub removed: Vec<RoomId>,
}

impl Handler<RoomsChanged> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: RoomsChanged, _: &mut Context<Self>) {
        let Some(entry) = self.users.get_mut(&msg.user) else {
            return;
        };
        let added: Vec<RoomId> = msg
            .added
            .into_iter()
            .filter(|r| entry.rooms.insert(r.clone()))
            .collect();
        let removed: Vec<RoomId> = msg
            .removed
            .into_iter()
            .filter(|r| entry.rooms.remove(r))
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
            let mut offline = (*view).clone();
            for v in &mut offline {
                v.status = VisibleStatus::Offline;
                v.devices = 0;
            }
            self.rooms.do_send(PresenceChanged {
                about: msg.user,
                rooms: removed,
                joins: none,
                leaves: Arc::new(offline),
            });
        }
    }
}

/// Sent for a `presence` frame: the user's chosen status on all devices.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetStatus {
    pub user: UserId,
    pub status: ChosenStatus,
    pub custom_message: Option<String>,
    pub metadata: Option<Value>,
}

impl Handler<SetStatus> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: SetStatus, _: &mut Context<Self>) {
        let Some(entry) = self.users.get_mut(&msg.user) else {
            return;
        };
        let before = (entry.announced, entry.view(&msg.user));
        entry.status = msg.status;
        entry.custom_message = msg.custom_message.clone();
        entry.metadata = msg.metadata;
        let after = entry.view(&msg.user);
        let rooms: Vec<RoomId> = entry.rooms.iter().cloned().collect();
        self.persist(WriteOp::SaveStatus {
            user: msg.user.clone(),
            status: msg.status,
            custom_message: msg.custom_message,
            at: now_millis(),
        });
        // Invisible → invisible, or no visible change at all: nothing to tell.
        if (before.0 || after.status != VisibleStatus::Offline) && before.1 != after {
            self.announce(&msg.user, rooms);
        }
    }
}

/// Sent for a `watch`: `handle` receives `presence` frames about `users` from now on. Answers
/// their current presence.
#[derive(Message)]
#[rtype(result = "Result<Vec<PresenceView>, EngineError>")]
pub struct Watch {
    pub handle: SessionHandle,
    pub users: Vec<UserId>,
}

impl Handler<Watch> for PresenceRegistry {
    type Result = ResponseActFuture<Self, Result<Vec<PresenceView>, EngineError>>;
    fn handle(&mut self, msg: Watch, ctx: &mut Context<Self>) -> Self::Result {
        let set = self.watching.entry(msg.handle.id).or_default();
        for u in &msg.users {
            set.insert(u.clone());
            self.watchers
                .entry(u.clone())
                .or_default()
                .insert(msg.handle.id, msg.handle.clone());
        }
        self.handle(GetPresence { users: msg.users }, ctx)
    }
}

/// Sent for an `unwatch`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    pub session: SessionId,
    pub users: Vec<UserId>,
}

impl Handler<Unwatch> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: Unwatch, _: &mut Context<Self>) {
        for u in &msg.users {
            if let Some(set) = self.watching.get_mut(&msg.session) {
                set.remove(u);
            }
            if let Some(w) = self.watchers.get_mut(u) {
                w.remove(&msg.session);
                if w.is_empty() {
                    self.watchers.remove(u);
                }
            }
        }
    }
}

/// Asked by sessions (join snapshot, watch) and REST: the presence others see of these users.
#[derive(Message)]
#[rtype(result = "Result<Vec<PresenceView>, EngineError>")]
pub struct GetPresence {
    pub users: Vec<UserId>,
}

impl Handler<GetPresence> for PresenceRegistry {
    type Result = ResponseActFuture<Self, Result<Vec<PresenceView>, EngineError>>;
    fn handle(&mut self, msg: GetPresence, _: &mut Context<Self>) -> Self::Result {
        let unknown: Vec<UserId> = msg
            .users
            .iter()
            .filter(|u| !self.users.contains_key(u))
            .cloned()
            .collect();
        let reader = self.store.reader.clone();
        Box::pin(
            async move {
                if unknown.is_empty() {
                    return Ok(Vec::new());
                }
                reader
                    .send(LoadUsers { users: unknown })
                    .await
                    .map_err(PersistError::from)
                    .and_then(|r| r)
            }
            .into_actor(self)
            .map(move |stored, act, _| {
                // Offline users' last-seen comes from the database; if it is down, presence
                // still answers (with last_seen unknown) rather than fail.
                let stored: HashMap<String, Option<Millis>> = match stored {
                    Ok(rows) => rows.into_iter().map(|r| (r.id, r.last_seen)).collect(),
                    Err(e) => {
                        log::warn!("presence: last_seen lookup failed: {e}");
                        HashMap::new()
                    }
                };
                Ok(msg
                    .users
                    .iter()
                    .map(|u| match act.users.get(u) {
                        Some(e) => e.view(u),
                        None => PresenceView::offline(
                            u.as_str(),
                            stored.get(u.as_str()).copied().flatten(),
                        ),
                    })
                    .collect())
            }),
        )
    }
}

/// One online user as admins see it (invisible users included, with their real status).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminPresence {
    pub user: String,
    pub status: ChosenStatus,
    pub custom_message: Option<String>,
    pub devices: usize,
    /// Session start or last activity.
    pub last_seen: Option<String>,
    pub rooms: Vec<RoomId>,
    pub sessions: Vec<AdminSession>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminSession {
    pub session_id: String,
    pub connected_at: String,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    /// Filled in from the room supervisor, which owns subscriptions.
    pub subscribed_rooms: Vec<RoomId>,
    #[serde(skip)]
    pub id: SessionId,
}

fn admin_view(u: &UserId, e: &UserPresence) -> AdminPresence {
    let mut sessions: Vec<AdminSession> = e
        .sessions
        .values()
        .map(|h| AdminSession {
            session_id: h.id.to_string(),
            connected_at: rfc3339(h.connected_at),
            remote_addr: h.remote_addr.clone(),
            user_agent: h.user_agent.clone(),
            subscribed_rooms: Vec::new(),
            id: h.id,
        })
        .collect();
    sessions.sort_by_key(|s| s.id);
    let mut rooms: Vec<RoomId> = e.rooms.iter().cloned().collect();
    rooms.sort();
    AdminPresence {
        user: u.to_string(),
        status: e.status,
        custom_message: e.custom_message.clone(),
        devices: e.sessions.len(),
        last_seen: e.last_seen.map(rfc3339),
        rooms,
        sessions,
    }
}

/// Sent by the admin presence route: users with at least one session, by user id, filtered
/// by chosen status and room, after the `after` cursor, at most `limit`.
#[derive(Message)]
#[rtype(result = "Vec<AdminPresence>")]
pub struct ListOnline {
    pub status: Option<ChosenStatus>,
    pub room: Option<RoomId>,
    pub after: Option<String>,
    pub limit: usize,
}

impl Handler<ListOnline> for PresenceRegistry {
    type Result = MessageResult<ListOnline>;
    fn handle(&mut self, msg: ListOnline, _: &mut Context<Self>) -> Self::Result {
        let mut users: Vec<(&UserId, &UserPresence)> = self
            .users
            .iter()
            .filter(|(_, e)| !e.sessions.is_empty())
            .filter(|(_, e)| msg.status.is_none_or(|s| s == e.status))
            .filter(|(_, e)| msg.room.as_ref().is_none_or(|r| e.rooms.contains(r)))
            .filter(|(u, _)| msg.after.as_deref().is_none_or(|a| u.as_str() > a))
            .collect();
        users.sort_by(|a, b| a.0.cmp(b.0));
        users.truncate(msg.limit);
        MessageResult(users.into_iter().map(|(u, e)| admin_view(u, e)).collect())
    }
}

/// Sent by the admin route for one user: their presence with every session, if online.
#[derive(Message)]
#[rtype(result = "Option<AdminPresence>")]
pub struct GetAdminPresence {
    pub user: UserId,
}

impl Handler<GetAdminPresence> for PresenceRegistry {
    type Result = MessageResult<GetAdminPresence>;
    fn handle(&mut self, msg: GetAdminPresence, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.users
                .get(&msg.user)
                .filter(|e| !e.sessions.is_empty())
                .map(|e| admin_view(&msg.user, e)),
        )
    }
}

/// Sent by the admin disconnect route: close every session of the user; the user goes
/// offline without a grace period.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DisconnectUser {
    pub user: UserId,
    pub code: u16,
    pub reason: String,
}

impl Handler<DisconnectUser> for PresenceRegistry {
    type Result = usize;
    fn handle(&mut self, msg: DisconnectUser, _: &mut Context<Self>) -> usize {
        let Some(e) = self.users.get_mut(&msg.user) else {
            return 0;
        };
        e.skip_grace = true;
        for h in e.sessions.values() {
            h.send_control(SessionControl::Close {
                code: msg.code,
                reason: msg.reason.clone(),
            });
        }
        e.sessions.len()
    }
}

/// Counts for `/v1/admin/stats`.
#[derive(Message)]
#[rtype(result = "PresenceStats")]
pub struct GetPresenceStats;

#[derive(Debug, Clone, serde::Serialize)]
pub struct PresenceStats {
    pub users_online: usize,
    pub users_visible: usize,
    pub watchers: usize,
}

impl Handler<GetPresenceStats> for PresenceRegistry {
    type Result = MessageResult<GetPresenceStats>;
    fn handle(&mut self, _: GetPresenceStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(PresenceStats {
            users_online: self
                .users
                .values()
                .filter(|e| !e.sessions.is_empty())
                .count(),
            users_visible: self.users.values().filter(|e| e.visible()).count(),
            watchers: self.watching.len(),
        })
    }
}

/// Sent at shutdown: record last-seen for everyone still online. Answers when queued.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct FlushLastSeen;

impl Handler<FlushLastSeen> for PresenceRegistry {
    type Result = usize;
    fn handle(&mut self, _: FlushLastSeen, _: &mut Context<Self>) -> usize {
        let now = now_millis();
        let users: Vec<UserId> = self
            .users
            .iter()
            .filter(|(_, e)| !e.sessions.is_empty())
            .map(|(u, _)| u.clone())
            .collect();
        for u in &users {
            self.persist(WriteOp::SaveLastSeen {
                user: u.clone(),
                at: now,
            });
        }
        users.len()
    }
}

/// Sent at shutdown: close every session with this code (1001 "going away"). Answers how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAllSessions {
    pub code: u16,
    pub reason: String,
}

impl Handler<CloseAllSessions> for PresenceRegistry {
    type Result = usize;
    fn handle(&mut self, msg: CloseAllSessions, _: &mut Context<Self>) -> usize {
        let mut n = 0;
        for e in self.users.values() {
            for h in e.sessions.values() {
                h.send_control(SessionControl::Close {
                    code: msg.code,
                    reason: msg.reason.clone(),
                });
                n += 1;
            }
        }
        n
    }
}
