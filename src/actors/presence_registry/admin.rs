//! Admin and lifecycle messages of the registry: listings with every session, rooms with
//! their online members, forced disconnects, stats, and the shutdown flush. Sessions on
//! other nodes are not kept here: an admin view names the nodes that have them, and the
//! engine reads them from Redis (`Engine::admin_presence`).

use actix::prelude::*;

use super::{PresenceRegistry, UserPresence};
use crate::actors::session::handle::SessionControl;
use crate::cluster::wire::ClusterEvent;
use crate::db::models::WriteOp;
use crate::domain::{rfc3339, ChosenStatus, CustomMessage, RoomId, SessionId, UserId};

/// One online user as admins see it (invisible users included, with their real status).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminPresence {
    pub user: String,
    pub status: ChosenStatus,
    pub custom_message: Option<CustomMessage>,
    pub devices: usize,
    /// Last client activity on any device.
    pub last_activity: String,
    /// Set when the server turned the user away for inactivity.
    pub auto_away: bool,
    pub custom_expires_at: Option<String>,
    /// Session start or last activity.
    pub last_seen: Option<String>,
    pub rooms: Vec<RoomId>,
    pub sessions: Vec<AdminSession>,
    /// Cluster mode: the other nodes that have sessions of the user. The registry keeps
    /// only their count; the engine reads the sessions from those nodes' Redis hashes.
    #[serde(skip)]
    pub remote_nodes: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminSession {
    pub session_id: String,
    pub connected_at: String,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    /// The `device_id` the client named, if any.
    pub device_id: Option<crate::domain::DeviceId>,
    pub last_activity: String,
    /// Filled in from the room supervisor, which owns subscriptions.
    pub subscribed_rooms: Vec<RoomId>,
    /// Cluster mode: the node the session is on (its id is then `<node>:<n>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// This node's session (`None`: a session on another node).
    #[serde(skip)]
    pub id: Option<SessionId>,
}

impl PresenceRegistry {
    /// The admin view of `u`: its sessions here; in cluster mode the nodes that have its
    /// other sessions, which the engine reads from those nodes' Redis hashes.
    fn admin_view(&self, u: &UserId, e: &UserPresence) -> AdminPresence {
        let node = self.cluster.node_id();
        let mut sessions: Vec<AdminSession> = e
            .sessions
            .values()
            .map(|d| AdminSession {
                session_id: match node {
                    Some(n) => format!("{n}:{}", d.handle.id),
                    None => d.handle.id.to_string(),
                },
                connected_at: rfc3339(d.handle.connected_at),
                remote_addr: d.handle.remote_addr.clone(),
                user_agent: d.handle.user_agent.clone(),
                device_id: d.handle.device.clone(),
                last_activity: rfc3339(d.last_activity),
                subscribed_rooms: Vec::new(),
                node: node.map(str::to_owned),
                id: Some(d.handle.id),
            })
            .collect();
        sessions.sort_by_key(|s| s.id);
        let mut view = admin_view(u, e, sessions);
        view.remote_nodes = self.remote.nodes_of(u);
        view
    }

    /// The presence of `u` as the admin views need it: this node's, or a transient one for
    /// a user only other nodes have.
    fn admin_presence(&self, u: &UserId) -> Option<AdminPresence> {
        match self.users.get(u) {
            Some(e) => Some(e)
                .filter(|e| e.connected())
                .map(|e| self.admin_view(u, e)),
            None => self
                .remote_presence(u)
                .filter(|e| e.connected())
                .map(|e| self.admin_view(u, &e)),
        }
    }
}

fn admin_view(u: &UserId, e: &UserPresence, sessions: Vec<AdminSession>) -> AdminPresence {
    let mut rooms: Vec<RoomId> = e.rooms.union(&e.remote_rooms).cloned().collect();
    rooms.sort();
    AdminPresence {
        user: u.to_string(),
        status: e.status,
        custom_message: e.custom_message.clone(),
        devices: e.sessions.len() + e.remote_devices,
        last_activity: rfc3339(e.last_activity),
        auto_away: e.auto_away,
        custom_expires_at: e.custom_expires_at.map(rfc3339),
        last_seen: e.last_seen.map(rfc3339),
        rooms,
        sessions,
        remote_nodes: Vec::new(),
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
        // The filters read chosen status and rooms: a user only other nodes have is checked
        // on its compact entry, and gets a whole (transient) presence only if listed.
        let after_ok = |u: &str| msg.after.as_deref().is_none_or(|a| u > a);
        let mut users: Vec<UserId> = self
            .users
            .iter()
            .filter(|(u, e)| {
                e.connected()
                    && msg.status.is_none_or(|s| s == e.status)
                    && msg
                        .room
                        .as_ref()
                        .is_none_or(|r| e.rooms.contains(r) || e.remote_rooms.contains(r))
                    && after_ok(u.as_str())
            })
            .map(|(u, _)| u.clone())
            .collect();
        users.extend(
            self.remote
                .iter()
                .filter(|(u, r)| {
                    !self.users.contains_key(*u)
                        && r.sessions() > 0
                        && msg.status.is_none_or(|s| {
                            s == r.status().map_or(ChosenStatus::Online, |x| x.status)
                        })
                        && msg.room.as_ref().is_none_or(|room| r.in_room(room))
                        && after_ok(u)
                })
                .filter_map(|(u, _)| UserId::parse(u).ok()),
        );
        users.sort();
        users.truncate(msg.limit);
        MessageResult(
            users
                .into_iter()
                .filter_map(|u| self.admin_presence(&u))
                .collect(),
        )
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
        MessageResult(self.admin_presence(&msg.user))
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
        // Every node closes its own sessions of the user.
        self.cluster.publish(ClusterEvent::Disconnect {
            user: msg.user.clone(),
            code: msg.code,
            reason: msg.reason.clone(),
        });
        let Some(e) = self.users.get_mut(&msg.user) else {
            return self.remote.get(&msg.user).map_or(0, |r| r.sessions());
        };
        e.skip_grace = true;
        for d in e.sessions.values() {
            d.handle.send_control(SessionControl::Close {
                code: msg.code,
                reason: msg.reason.clone(),
            });
        }
        e.sessions.len() + e.remote_devices
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
    /// Connected users by chosen status (the same status `ListOnline` filters on).
    pub by_status: StatusCounts,
}

/// Connected users per chosen status.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatusCounts {
    pub online: usize,
    pub away: usize,
    pub busy: usize,
    pub invisible: usize,
}

impl Handler<GetPresenceStats> for PresenceRegistry {
    type Result = MessageResult<GetPresenceStats>;
    fn handle(&mut self, _: GetPresenceStats, _: &mut Context<Self>) -> Self::Result {
        let mut by_status = StatusCounts::default();
        let mut count = |status: ChosenStatus| {
            *match status {
                ChosenStatus::Online => &mut by_status.online,
                ChosenStatus::Away => &mut by_status.away,
                ChosenStatus::Busy => &mut by_status.busy,
                ChosenStatus::Invisible => &mut by_status.invisible,
            } += 1;
        };
        for e in self.users.values().filter(|e| e.connected()) {
            count(e.status);
        }
        // Users only other nodes have count from their compact entries.
        let mut visible = 0;
        for (_, r) in self
            .remote
            .iter()
            .filter(|(u, r)| r.sessions() > 0 && !self.users.contains_key(*u))
        {
            let status = r.status().map_or(ChosenStatus::Online, |s| s.status);
            count(status);
            if status != ChosenStatus::Invisible {
                visible += 1;
            }
        }
        MessageResult(PresenceStats {
            users_online: by_status.online + by_status.away + by_status.busy + by_status.invisible,
            users_visible: visible + self.users.values().filter(|e| e.visible()).count(),
            watchers: self.watching.len(),
            by_status,
        })
    }
}

/// Sent by the admin rooms route: the rooms that have connected members (on any node), the
/// busiest first, at most `limit` of them with at most `members_limit` members each.
#[derive(Message)]
#[rtype(result = "RoomsOnline")]
pub struct ListRoomsOnline {
    pub limit: usize,
    pub members_limit: usize,
}

/// The answer to [`ListRoomsOnline`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomsOnline {
    /// Rooms with at least one connected member, before `limit` cut the list.
    pub total: usize,
    pub rooms: Vec<RoomOnlineMembers>,
}

/// One room and who of its members is connected.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomOnlineMembers {
    pub room: RoomId,
    /// Connected members, before `members_limit` cut `members`.
    pub online: usize,
    /// By user id; admins see the chosen status, `invisible` included.
    pub members: Vec<OnlineMember>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OnlineMember {
    pub user: String,
    pub status: ChosenStatus,
    pub devices: usize,
}

impl Handler<ListRoomsOnline> for PresenceRegistry {
    type Result = MessageResult<ListRoomsOnline>;
    fn handle(&mut self, msg: ListRoomsOnline, _: &mut Context<Self>) -> Self::Result {
        // The registry keeps each connected user's rooms (here and on other nodes), so one
        // pass over the connected users, and over the compact entries of users only other
        // nodes have, groups them by room; no room actor is asked.
        let mut by_room: std::collections::HashMap<&RoomId, Vec<OnlineMember>> =
            std::collections::HashMap::new();
        for (u, e) in self.users.iter().filter(|(_, e)| e.connected()) {
            for r in e.rooms.union(&e.remote_rooms) {
                by_room.entry(r).or_default().push(OnlineMember {
                    user: u.to_string(),
                    status: e.status,
                    devices: e.sessions.len() + e.remote_devices,
                });
            }
        }
        for (u, r) in self.remote.iter() {
            if r.sessions() == 0 || self.users.contains_key(u) {
                continue;
            }
            let status = r.status().map_or(ChosenStatus::Online, |s| s.status);
            // A room the user has on several nodes counts once.
            let rooms: std::collections::HashSet<&RoomId> = r.rooms().collect();
            for room in rooms {
                by_room.entry(room).or_default().push(OnlineMember {
                    user: u.to_owned(),
                    status,
                    devices: r.sessions(),
                });
            }
        }
        let total = by_room.len();
        let mut rooms: Vec<_> = by_room.into_iter().collect();
        rooms.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(b.0)));
        rooms.truncate(msg.limit);
        let rooms = rooms
            .into_iter()
            .map(|(room, mut members)| {
                members.sort_by(|a, b| a.user.cmp(&b.user));
                let online = members.len();
                members.truncate(msg.members_limit);
                RoomOnlineMembers {
                    room: room.clone(),
                    online,
                    members,
                }
            })
            .collect();
        MessageResult(RoomsOnline { total, rooms })
    }
}

/// Sent at shutdown: record last-seen for everyone still online. Answers when queued.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct FlushLastSeen;

impl Handler<FlushLastSeen> for PresenceRegistry {
    type Result = usize;
    fn handle(&mut self, _: FlushLastSeen, _: &mut Context<Self>) -> usize {
        let now = self.now();
        let users: Vec<UserId> = self
            .users
            .iter()
            .filter(|(_, e)| !e.sessions.is_empty() && e.status != ChosenStatus::Invisible)
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
            for d in e.sessions.values() {
                d.handle.send_control(SessionControl::Close {
                    code: msg.code,
                    reason: msg.reason.clone(),
                });
                n += 1;
            }
        }
        n
    }
}

/// Sent at shutdown, after `CloseAllSessions`: answers once no session is registered any
/// more, that is once the `SessionClosed` of every closed session (and the last-seen write it
/// queues) has been handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AwaitSessionsClosed;

impl Handler<AwaitSessionsClosed> for PresenceRegistry {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: AwaitSessionsClosed, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.closed_waiters.push(tx);
        self.wake_closed_waiters();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl PresenceRegistry {
    /// Answers the `AwaitSessionsClosed` waiters once no session is registered (checked
    /// after every `SessionClosed`, and only while someone waits).
    pub(super) fn wake_closed_waiters(&mut self) {
        if self.closed_waiters.is_empty() || self.users.values().any(|e| !e.sessions.is_empty()) {
            return;
        }
        for tx in self.closed_waiters.drain(..) {
            let _ = tx.send(());
        }
    }
}

impl AdminPresence {
    /// Adds the user's sessions on `node`, from the entry that node keeps in Redis.
    pub fn add_remote_sessions(&mut self, node: &str, entry: &crate::cluster::presence::NodeEntry) {
        for r in &entry.sessions {
            self.sessions.push(AdminSession {
                session_id: r.id.clone(),
                connected_at: rfc3339(r.connected_at),
                remote_addr: None,
                user_agent: None,
                device_id: r
                    .device_id
                    .as_deref()
                    .and_then(|d| crate::domain::DeviceId::parse(d).ok()),
                last_activity: rfc3339(r.last_activity),
                subscribed_rooms: entry.rooms.clone(),
                node: Some(node.to_owned()),
                id: None,
            });
        }
        self.sessions
            .sort_by(|a, b| (&a.node, a.id, &a.session_id).cmp(&(&b.node, b.id, &b.session_id)));
    }
}
