//! The presence registry in cluster mode: this node publishes one entry per user it has
//! sessions for, and folds the other nodes' entries into its picture, so every node computes
//! the same transitions and tells its own sessions (docs/cluster.md, "Presence").
//!
//! - `publish_local` after every local change (a session opened or closed, rooms, idleness,
//!   the grace period's end): the entry is compared with the last one published (by a
//!   fingerprint, not a copy) and sent only when it differs.
//! - Deltas from other nodes (`RemoteClusterEvent`), their chosen-status changes, a node's
//!   `Hello` (its complete user list after a reconnect), and the live-node set of each
//!   heartbeat (`LiveNodes`: a node missing from it is dead, its users leave at once).
//! - `BackplaneResumed`: republish everything, then read the other nodes' hashes.
//!
//! A user known only from other nodes has no `UserPresence` here: only its compact
//! [`RemoteUser`](crate::cluster::presence::RemoteUser). The few paths that need a whole
//! presence for such a user (views, announcements, admin lists) build a transient one with
//! [`PresenceRegistry::remote_presence`].

use std::hash::{Hash, Hasher};

use super::*;
use crate::actors::room_supervisor::OnlineAmong;
use crate::actors::session::handle::SessionControl;
use crate::cluster::backplane::{
    BackplaneResumed, LiveNodes, PublishAllPresence, PublishPresence, ReadPresenceSnapshot,
    RemoteClusterEvent,
};
use crate::cluster::presence::{RemoteChange, RemoteSession, RemoteUser, SharedStatus};
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
            status: shared_status(e),
        })
    }

    /// Publishes this node's entry for `user` if it changed since the last time.
    pub(super) fn publish_local(&mut self, user: &UserId) {
        if !self.cluster.enabled() {
            return;
        }
        let entry = self.local_entry(user);
        let print = entry.as_ref().map_or(UNPUBLISHED, fingerprint);
        let Some(e) = self.users.get_mut(user) else {
            return;
        };
        if e.published == print {
            return;
        }
        e.published = print;
        self.publish_entry(user, entry);
    }

    /// Sends this node's entry for `user` (`None`: the user has no session here any more)
    /// with the next version.
    fn publish_entry(&mut self, user: &UserId, entry: Option<NodeEntry>) {
        let Some(backplane) = self.cluster.backplane() else {
            return;
        };
        self.version += 1;
        let v = self.version;
        backplane.do_send(PublishPresence {
            user: user.clone(),
            v,
            entry: entry.map(|e| NodeEntry { v, ..e }),
        });
    }

    /// The local presence of `user` ended: removes it, and withdraws its entry from the
    /// other nodes if one was published. Returns the removed presence.
    pub(super) fn remove_local(&mut self, user: &UserId) -> Option<UserPresence> {
        let e = self.users.remove(user)?;
        if e.published != UNPUBLISHED {
            self.publish_entry(user, None);
        }
        Some(e)
    }

    /// Tells the other nodes that `user` chose a new status here.
    pub(super) fn share_status(&mut self, user: &UserId) {
        if !self.cluster.enabled() {
            return;
        }
        if let Some(e) = self.users.get(user) {
            self.cluster.publish(ClusterEvent::Status {
                user: user.clone(),
                status: shared_status(e),
            });
        }
        self.publish_local(user);
    }

    /// What others see of a user known only from other nodes, as a transient presence
    /// (`None` when no node has the user).
    pub(super) fn remote_presence(&self, user: &UserId) -> Option<UserPresence> {
        let r = self.remote.get(user)?;
        let mut p = UserPresence::new(None, r.seen());
        fold_remote(&mut p, r);
        if let Some(s) = r.status() {
            set_status(&mut p, s.clone());
        }
        p.seen(r.seen());
        // Held while any node has an entry, sessions or not (a grace period there): the
        // offline is announced when the last entry goes, as on one node.
        p.announced = p.status != ChosenStatus::Invisible;
        Some(p)
    }

    /// Folds a change of the other nodes' entries for `user` into the user's presence and
    /// announces what others now see.
    fn apply_remote(&mut self, node: &str, user: &UserId, entry: Option<NodeEntry>, v: u64) {
        let now = self.now();
        let status = entry.as_ref().map(|e| e.status.clone());
        if self.users.contains_key(user) {
            if self.remote.apply(node, user, entry, v, now) != RemoteChange::None {
                self.refresh_local(user, status);
            }
            return;
        }
        let before = self.remote_presence(user);
        if self.remote.apply(node, user, entry, v, now) == RemoteChange::None {
            return;
        }
        let after = self.remote_presence(user);
        self.announce_remote(user, before, after);
    }

    /// A user only other nodes have chose `status` (told by another node, or set by an
    /// admin here): announced if it is the latest and changes what others see.
    pub(super) fn remote_status_changed(&mut self, user: &UserId, status: &SharedStatus) {
        let before = self.remote_presence(user);
        if self.remote.adopt_status(user, status) {
            let after = self.remote_presence(user);
            self.announce_remote(user, before, after);
        }
    }

    /// Announces the change of a user known only from other nodes, from its presence
    /// `before` to `after` (`None`: no node has it).
    fn announce_remote(
        &mut self,
        user: &UserId,
        mut before: Option<UserPresence>,
        after: Option<UserPresence>,
    ) {
        let was_announced = before.as_ref().is_some_and(|b| b.announced);
        let before_view = match before {
            Some(ref mut b) => announced_view(b, user),
            None => PresenceView::offline(user.as_str(), None),
        };
        let Some(after) = after else {
            // Gone from every node (its own grace period was applied there): announced in
            // the rooms it was in.
            if let (true, Some(b)) = (was_announced, before) {
                let view = PresenceView::offline(user.as_str(), b.visible_last_seen);
                self.announce_view(user, view, false, b.all_rooms());
            }
            return;
        };
        if !after.connected() && after.announced {
            // No session on any node, but an entry still (its node's grace period): held.
            return;
        }
        let view = after.view(user);
        let visible = after.visible();
        if visible != was_announced || !same_announcement(&view, &before_view) {
            self.announce_view(user, view, visible, after.all_rooms());
        } else if visible {
            let old = before.map(|b| b.all_rooms()).unwrap_or_default();
            self.announce_room_diff(user, view, &old, &after.all_rooms());
        }
    }

    /// Recomputes a local user's remote fields from `self.remote` (and adopts `status` if it
    /// is newer), then announces the difference.
    fn refresh_local(&mut self, user: &UserId, status: Option<SharedStatus>) {
        let now = self.now();
        let remote = self.remote.get(user);
        let has = remote.is_some();
        let Some(entry) = self.users.get_mut(user) else {
            return;
        };
        let before = announced_view(entry, user);
        let was_announced = entry.announced;
        let old_rooms = entry.all_rooms();
        let old_remote_rooms = std::mem::take(&mut entry.remote_rooms);
        match remote {
            Some(r) => fold_remote(entry, r),
            None => {
                entry.remote_devices = 0;
                entry.remote_idle = true;
            }
        }
        if let Some(s) = status {
            adopt_status(entry, s);
        }
        if has {
            entry.seen(now);
        }
        let visible = entry.visible();
        let view = entry.view(user);
        if !entry.connected() && (entry.offline_at.is_some() || has) {
            // No session anywhere, but a grace period here or an entry on another node:
            // held, as on one node (the offline comes when the last of them ends).
            return;
        }
        if !entry.connected() {
            // Gone from every node (its own grace period was applied there): announced in
            // the rooms it was in.
            if was_announced {
                entry.remote_rooms = old_remote_rooms;
                self.announce(user);
            }
            self.remove_local(user);
            return;
        }
        let new_rooms = entry.all_rooms();
        // As on one node, a device more or less is no announcement; status changes are.
        if visible != was_announced || !same_announcement(&view, &before) {
            self.announce(user);
        } else if visible {
            self.announce_room_diff(user, view, &old_rooms, &new_rooms);
        }
    }

    /// The user's view is unchanged but their rooms may differ: announce them joining the
    /// new rooms and leaving the old ones.
    fn announce_room_diff(
        &mut self,
        user: &UserId,
        view: PresenceView,
        old: &[RoomId],
        new: &[RoomId],
    ) {
        let (old_set, new_set): (HashSet<&RoomId>, HashSet<&RoomId>) =
            (old.iter().collect(), new.iter().collect());
        let added: Vec<RoomId> = new
            .iter()
            .filter(|r| !old_set.contains(r))
            .cloned()
            .collect();
        let removed: Vec<RoomId> = old
            .iter()
            .filter(|r| !new_set.contains(r))
            .cloned()
            .collect();
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

    /// The local part of `user` ended (the grace period after their last session here is
    /// over) while other nodes still have them: the local presence goes, and the compact
    /// remote entry carries on, with the status chosen here if it is the latest.
    pub(super) fn hand_over_to_remote(&mut self, user: &UserId) {
        if let Some(e) = self.remove_local(user) {
            self.remote.adopt_status(user, &shared_status(&e));
        }
    }

    fn republish_all(&mut self, ctx: &mut Context<Self>) {
        let Some(backplane) = self.cluster.backplane().cloned() else {
            return;
        };
        let users: Vec<UserId> = self.users.keys().cloned().collect();
        let mut entries = Vec::new();
        for user in users {
            let entry = self.local_entry(&user);
            if let Some(u) = self.users.get_mut(&user) {
                u.published = entry.as_ref().map_or(UNPUBLISHED, fingerprint);
            }
            if let Some(e) = entry {
                self.version += 1;
                let e = NodeEntry {
                    v: self.version,
                    ..e
                };
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

/// `UserPresence::published` when no entry of the user is published.
pub(super) const UNPUBLISHED: u64 = 0;

/// A 64-bit fingerprint of an entry without its version: what `publish_local` remembers of
/// the last entry it published, in the user's `UserPresence`, instead of a copy of it in a
/// map of its own (which cost about 0.4 KiB per local user). Two different entries with the
/// same fingerprint (odds of 2^-64) would only skip one publication, which the next change
/// or a reconnect's republication repairs.
fn fingerprint(e: &NodeEntry) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in &e.sessions {
        (&s.id, &s.device_id, s.connected_at, s.last_activity).hash(&mut h);
    }
    e.sessions.len().hash(&mut h);
    e.rooms.hash(&mut h);
    e.idle.hash(&mut h);
    let s = &e.status;
    let message = s.custom_message.as_ref().map(|m| m.as_str());
    (s.status as u8, message, s.custom_expires_at, s.at).hash(&mut h);
    s.metadata.as_ref().map(|m| m.to_string()).hash(&mut h);
    h.finish().max(1)
}

/// The chosen status of a local user, as shared with the other nodes.
fn shared_status(e: &UserPresence) -> SharedStatus {
    SharedStatus {
        status: e.status,
        custom_message: e.custom_message.clone(),
        custom_expires_at: e.custom_expires_at,
        metadata: e.metadata.clone(),
        at: e.status_at,
    }
}

/// Copies what the other nodes say into a user's remote fields.
pub(super) fn fold_remote(entry: &mut UserPresence, r: &RemoteUser) {
    entry.remote_devices = r.sessions();
    entry.remote_idle = r.all_idle();
    entry.remote_rooms = r.rooms().cloned().collect();
}

/// What others were last told of `p`: while it is held (no session anywhere, but a grace
/// period here or an entry on another node), the view it had while connected.
fn announced_view(p: &mut UserPresence, user: &UserId) -> PresenceView {
    if p.connected() || !p.announced {
        return p.view(user);
    }
    let devices = std::mem::replace(&mut p.remote_devices, 1);
    let view = p.view(user);
    p.remote_devices = devices;
    view
}

/// Whether two views announce the same thing (devices and last-seen aside).
fn same_announcement(a: &PresenceView, b: &PresenceView) -> bool {
    a.status == b.status && a.custom_message == b.custom_message && a.metadata == b.metadata
}

/// Takes `s` if it was chosen later than what the user has.
pub(super) fn adopt_status(entry: &mut UserPresence, s: SharedStatus) {
    if s.at > entry.status_at {
        set_status(entry, s);
    }
}

fn set_status(entry: &mut UserPresence, s: SharedStatus) {
    entry.status = s.status;
    entry.custom_message = s.custom_message;
    entry.custom_expires_at = s.custom_expires_at;
    entry.metadata = s.metadata;
    entry.status_at = s.at;
}

impl Handler<RemoteClusterEvent> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: RemoteClusterEvent, _: &mut Context<Self>) {
        let node = msg.0.node;
        match msg.0.event {
            ClusterEvent::Presence { user, v, entry } => self.apply_remote(&node, &user, entry, v),
            ClusterEvent::Status { user, status } => {
                let Some(entry) = self.users.get_mut(&user) else {
                    self.remote_status_changed(&user, &status);
                    return;
                };
                let before = entry.view(&user);
                adopt_status(entry, status.clone());
                self.remote.adopt_status(&user, &status);
                self.announce_if_changed(&user, &before);
                self.publish_local(&user);
            }
            ClusterEvent::Hello { users } => {
                let listed: HashSet<UserId> = users.into_iter().collect();
                for user in self.remote.users_on(&node) {
                    if !listed.contains(&user) {
                        self.apply_remote(&node, &user, None, u64::MAX);
                    }
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
            // A removal newer than anything the node sent: each user leaves once.
            for user in self.remote.users_on(&node) {
                self.apply_remote(&node, &user, None, u64::MAX);
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

/// A room asks which of its members are connected, here or on another node (the room only
/// knows its own node's sessions).
impl Handler<OnlineAmong> for PresenceRegistry {
    type Result = MessageResult<OnlineAmong>;
    fn handle(&mut self, msg: OnlineAmong, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.users
                .into_iter()
                .filter(|u| {
                    self.users.get(u).is_some_and(|e| e.connected())
                        || self.remote.get(u).is_some_and(|r| r.sessions() > 0)
                })
                .collect(),
        )
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
        MessageResult(
            self.remote
                .iter()
                .map(|(u, r)| (u, r.sessions_in(&msg.room)))
                .filter(|(_, n)| *n > 0)
                .filter_map(|(u, n)| Some((UserId::parse(u).ok()?, n)))
                .collect(),
        )
    }
}
