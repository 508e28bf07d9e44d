//! The presence registry in cluster mode: this node publishes one entry per user it has
//! sessions for, and folds the other nodes' entries into its users, so every node computes
//! the same transitions and tells its own sessions (docs/cluster.md, "Presence").
//!
//! - `publish_local` after every local change (a session opened or closed, rooms, idleness,
//!   the grace period's end): the entry is compared with the last one published and sent
//!   only when it differs.
//! - Deltas from other nodes (`RemoteClusterEvent`), their chosen-status changes, a node's
//!   `Hello` (its complete user list after a reconnect), and the live-node set of each
//!   heartbeat (`LiveNodes`: a node missing from it is dead, its users leave at once).
//! - `BackplaneResumed`: republish everything, then read the other nodes' hashes.

use super::*;
use crate::actors::session::handle::SessionControl;
use crate::cluster::backplane::{
    BackplaneResumed, LiveNodes, PublishAllPresence, PublishPresence, ReadPresenceSnapshot,
    RemoteClusterEvent,
};
use crate::cluster::presence::{RemoteChange, RemoteSession, SharedStatus};
use crate::cluster::wire::ClusterEvent;

impl PresenceRegistry {
    /// This node's entry for `user`: `None` when it has no session of the user (or the
    /// grace period after the last one has ended).
    fn local_entry(&self, user: &UserId) -> Option<NodeEntry> {
        let e = self.users.get(user)?;
        if e.sessions.is_empty() && e.offline_at.is_none() {
            return None;
        }
        let node = self.cluster.node_id().unwrap_or_default();
        let mut sessions: Vec<RemoteSession> = e
            .sessions
            .values()
            .map(|d| RemoteSession {
                id: format!("{node}:{}", d.handle.id.0),
                device_id: d.handle.device.as_ref().map(|x| x.as_str().to_owned()),
                connected_at: d.handle.connected_at,
                last_activity: d.last_activity,
            })
            .collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        let mut rooms: Vec<RoomId> = e.rooms.iter().cloned().collect();
        rooms.sort();
        Some(NodeEntry {
            v: 0,
            sessions,
            rooms,
            idle: e.auto_away,
            status: SharedStatus {
                status: e.status,
                custom_message: e.custom_message.clone(),
                custom_expires_at: e.custom_expires_at,
                metadata: e.metadata.clone(),
                at: e.status_at,
            },
        })
    }

    /// Publishes this node's entry for `user` if it changed since the last time.
    pub(super) fn publish_local(&mut self, user: &UserId) {
        let Some(backplane) = self.cluster.backplane().cloned() else {
            return;
        };
        let entry = self.local_entry(user);
        let last = self.published.get(user);
        let same = match (&entry, last) {
            (Some(a), Some(b)) => {
                NodeEntry {
                    v: b.v,
                    ..a.clone()
                } == *b
            }
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.version += 1;
        let v = self.version;
        let entry = entry.map(|e| NodeEntry { v, ..e });
        match &entry {
            Some(e) => self.published.insert(user.clone(), e.clone()),
            None => self.published.remove(user),
        };
        backplane.do_send(PublishPresence {
            user: user.clone(),
            v,
            entry,
        });
    }

    /// Tells the other nodes that `user` chose a new status here.
    pub(super) fn share_status(&mut self, user: &UserId) {
        if !self.cluster.enabled() {
            return;
        }
        if let Some(entry) = self.local_entry(user) {
            self.cluster.publish(ClusterEvent::Status {
                user: user.clone(),
                status: entry.status,
            });
        } else if let Some(e) = self.users.get(user) {
            self.cluster.publish(ClusterEvent::Status {
                user: user.clone(),
                status: SharedStatus {
                    status: e.status,
                    custom_message: e.custom_message.clone(),
                    custom_expires_at: e.custom_expires_at,
                    metadata: e.metadata.clone(),
                    at: e.status_at,
                },
            });
        }
        self.publish_local(user);
    }

    /// Folds a change of the other nodes' entries for `user` into the user's presence and
    /// announces what others now see.
    fn apply_remote(&mut self, node: &str, user: &UserId, entry: Option<NodeEntry>, v: u64) {
        let status = entry.as_ref().map(|e| e.status.clone());
        if self.remote.apply(node, user, entry, v) == RemoteChange::None {
            return;
        }
        self.refresh_remote(user, status);
    }

    /// Recomputes `user`'s remote fields from `self.remote` (and adopts `status` if it is
    /// newer), then announces the difference.
    fn refresh_remote(&mut self, user: &UserId, status: Option<SharedStatus>) {
        let now = self.now();
        let has = self.remote.has(user);
        if !has && !self.users.contains_key(user) {
            return;
        }
        let devices = self.remote.session_count(user);
        let idle = self.remote.all_idle(user);
        let rooms = self.remote.rooms(user);
        let entry = self
            .users
            .entry(user.clone())
            .or_insert_with(|| UserPresence::new(None, now));
        let before = entry.view(user);
        let was_announced = entry.announced;
        let old_rooms: HashSet<RoomId> = entry.rooms.union(&entry.remote_rooms).cloned().collect();
        entry.remote_devices = devices;
        entry.remote_idle = idle;
        let old_remote_rooms = std::mem::replace(&mut entry.remote_rooms, rooms);
        if let Some(s) = status {
            adopt_status(entry, s);
        }
        if has {
            entry.seen(now);
        }
        let new_rooms: HashSet<RoomId> = entry.rooms.union(&entry.remote_rooms).cloned().collect();
        let visible = entry.visible();
        let view = entry.view(user);
        if !entry.connected() && entry.offline_at.is_none() {
            // Gone from every node (its own grace period was applied there): announced in
            // the rooms it was in.
            if was_announced {
                entry.remote_rooms = old_remote_rooms;
                self.announce(user);
            }
            self.users.remove(user);
            return;
        }
        // As on one node, a device more or less is no announcement; status changes are.
        if visible != was_announced || !same_announcement(&view, &before) {
            self.announce(user);
        } else if visible {
            // Same view, but rooms may differ: announce in the rooms that are new.
            let added: Vec<RoomId> = new_rooms.difference(&old_rooms).cloned().collect();
            let removed: Vec<RoomId> = old_rooms.difference(&new_rooms).cloned().collect();
            let none = Arc::new(Vec::new());
            if !added.is_empty() {
                self.rooms.do_send(PresenceChanged {
                    about: user.clone(),
                    rooms: added,
                    joins: Arc::new(vec![view.clone()]),
                    leaves: none.clone(),
                });
            }
            if !removed.is_empty() {
                let mut gone = view;
                gone.status = VisibleStatus::Offline;
                gone.devices = 0;
                self.rooms.do_send(PresenceChanged {
                    about: user.clone(),
                    rooms: removed,
                    joins: none,
                    leaves: Arc::new(vec![gone]),
                });
            }
        }
    }

    fn republish_all(&mut self, ctx: &mut Context<Self>) {
        let Some(backplane) = self.cluster.backplane().cloned() else {
            return;
        };
        let users: Vec<UserId> = self.users.keys().cloned().collect();
        let mut entries = Vec::new();
        self.published.clear();
        for user in users {
            if let Some(e) = self.local_entry(&user) {
                self.version += 1;
                let e = NodeEntry {
                    v: self.version,
                    ..e
                };
                self.published.insert(user.clone(), e.clone());
                entries.push((user, self.version, e));
            }
        }
        // Republish first (a Hello listing this node's users), then read the others.
        backplane
            .send(PublishAllPresence { entries })
            .into_actor(self)
            .then(move |_, act, _| backplane.send(ReadPresenceSnapshot).into_actor(act))
            .map(|res, act, _| match res {
                Ok(Ok(triples)) => {
                    for (node, user, entry) in triples {
                        let v = entry.v;
                        act.apply_remote(&node, &user, Some(entry), v);
                    }
                }
                Ok(Err(e)) => log::warn!("presence: reading the other nodes failed: {e}"),
                Err(_) => {}
            })
            .spawn(ctx);
    }
}

/// Whether two views announce the same thing (devices and last-seen aside).
fn same_announcement(a: &PresenceView, b: &PresenceView) -> bool {
    a.status == b.status && a.custom_message == b.custom_message && a.metadata == b.metadata
}

/// Takes `s` if it was chosen later than what the user has.
fn adopt_status(entry: &mut UserPresence, s: SharedStatus) {
    if s.at > entry.status_at {
        entry.status = s.status;
        entry.custom_message = s.custom_message;
        entry.custom_expires_at = s.custom_expires_at;
        entry.metadata = s.metadata;
        entry.status_at = s.at;
    }
}

impl Handler<RemoteClusterEvent> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: RemoteClusterEvent, _: &mut Context<Self>) {
        let node = msg.0.node;
        match msg.0.event {
            ClusterEvent::Presence { user, v, entry } => self.apply_remote(&node, &user, entry, v),
            ClusterEvent::Status { user, status } => {
                let Some(entry) = self.users.get_mut(&user) else {
                    return;
                };
                let before = entry.view(&user);
                adopt_status(entry, status);
                self.announce_if_changed(&user, &before);
                self.publish_local(&user);
            }
            ClusterEvent::Hello { users } => {
                let listed: HashSet<UserId> = users.into_iter().collect();
                let stale: Vec<UserId> = self
                    .remote
                    .users()
                    .filter(|u| {
                        !listed.contains(*u) && self.remote.entries(u).any(|(n, _)| *n == node)
                    })
                    .cloned()
                    .collect();
                for user in stale {
                    self.apply_remote(&node, &user, None, u64::MAX);
                }
            }
            // Routed to the notification center by the backplane.
            ClusterEvent::UserFrame { .. } => {}
            ClusterEvent::Block {
                blocker,
                blocked,
                on,
            } => self.apply_block(&blocker, &blocked, on),
            ClusterEvent::ClientFrame { user, frame } => {
                if let Some(frame) = frame.to_encoded() {
                    self.deliver_here(&user, &frame);
                }
            }
            ClusterEvent::Disconnect { user, code, reason } => {
                if let Some(e) = self.users.get_mut(&user) {
                    e.skip_grace = true;
                    for d in e.sessions.values() {
                        d.handle.send_control(SessionControl::Close {
                            code,
                            reason: reason.clone(),
                        });
                    }
                }
            }
            ClusterEvent::UserRoom { .. } => {}
        }
    }
}

impl Handler<LiveNodes> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: LiveNodes, _: &mut Context<Self>) {
        let dead: Vec<String> = self
            .remote
            .nodes()
            .filter(|n| !msg.nodes.contains_key(*n))
            .cloned()
            .collect();
        for node in dead {
            log::warn!("presence: node {node} is gone; its users leave");
            for (user, _) in self.remote.node_down(&node) {
                self.refresh_remote(&user, None);
            }
        }
    }
}

impl Handler<BackplaneResumed> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, _: BackplaneResumed, ctx: &mut Context<Self>) {
        self.republish_all(ctx);
    }
}

/// The users other nodes report in `room`, with their session counts there (cluster mode's
/// part of the admin room presence).
#[derive(Message)]
#[rtype(result = "Vec<(UserId, usize)>")]
pub struct RemoteRoomSessions {
    pub room: RoomId,
}

impl Handler<RemoteRoomSessions> for PresenceRegistry {
    type Result = MessageResult<RemoteRoomSessions>;
    fn handle(&mut self, msg: RemoteRoomSessions, _: &mut Context<Self>) -> Self::Result {
        let mut out = Vec::new();
        for user in self.remote.users() {
            let n: usize = self
                .remote
                .entries(user)
                .filter(|(_, e)| e.rooms.contains(&msg.room))
                .map(|(_, e)| e.sessions.len())
                .sum();
            if n > 0 {
                out.push((user.clone(), n));
            }
        }
        MessageResult(out)
    }
}
