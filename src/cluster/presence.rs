//! `RemotePresence`: what the other nodes say about their users, kept by each node's
//! `PresenceRegistry` beside its own sessions.
//!
//! Every node owns the presence of its own sessions and publishes, per user, one
//! [`NodeEntry`] (the user's sessions on that node, their rooms, whether they are idle) into
//! its own Redis hash and as a delta on the cluster channel. A user is online while any node
//! has an entry with a session; each node computes the transitions itself and tells only its
//! own sessions, so an observer hears each change once. An entry leaves when its node's grace
//! period ends, or when the node stops heartbeating (a killed node): then every node drops
//! all of that node's entries at once.
//!
//! Every node holds an entry here for every user online elsewhere in the cluster, so this is
//! the part of a node's memory that grows with the cluster rather than with the node's own
//! connections. It is therefore kept compact (docs/benchmarks.md, "Memory per remote user"):
//! - one map entry per user ([`RemoteUser`], 48 bytes beside a 24-byte key that holds ids
//!   of up to 22 bytes inline, so most users cost no allocation at all), with the first
//!   node's slot inline and no inner map;
//! - node ids interned as small integers (no node-name `String` per entry, no reverse index
//!   of users per node: a dead node's users are found by one scan, once per dead node);
//! - per node only what the transitions need: the version, the session *count*, idleness and
//!   the rooms (a boxed slice, no allocation when empty). The sessions themselves (ids,
//!   devices, times) are only read by the admin views, which fetch them on demand from the
//!   owning node's Redis hash, where every node keeps its full entries;
//! - the chosen status only when it is not the default (boxed, one pointer otherwise).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{ChosenStatus, CustomMessage, Millis, RoomId, UserId};

/// One session of a user on another node, for the admin views (read from that node's Redis
/// hash when an admin asks; not kept in memory).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteSession {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub connected_at: Millis,
    pub last_activity: Millis,
}

/// A node's view of one of its users, as published (the wire and Redis format).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeEntry {
    /// The node's version counter when it wrote the entry: later wins, so a delta that
    /// overtakes a snapshot (or the other way round) cannot roll the entry back.
    pub v: u64,
    pub sessions: Vec<RemoteSession>,
    /// The user's rooms on that node (where their presence is announced).
    pub rooms: Vec<RoomId>,
    /// Every session there has been inactive for the auto-away time.
    pub idle: bool,
    /// The user's chosen status as that node knows it (the latest `at` wins everywhere).
    pub status: SharedStatus,
}

/// The status a user chose, shared by all their devices on every node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharedStatus {
    pub status: ChosenStatus,
    pub custom_message: Option<CustomMessage>,
    pub custom_expires_at: Option<Millis>,
    pub metadata: Option<Value>,
    /// When it was chosen (Unix ms; 0: never, the stored default).
    pub at: Millis,
}

impl SharedStatus {
    /// Online, no message, never chosen: what a user has who never set a status.
    fn is_default(&self) -> bool {
        self.status == ChosenStatus::Online
            && self.custom_message.is_none()
            && self.custom_expires_at.is_none()
            && self.metadata.is_none()
            && self.at == 0
    }
}

/// How a user's presence on the other nodes changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteChange {
    /// No other node had the user; now one does.
    Arrived,
    /// The last other node dropped the user.
    Left,
    /// Still on other nodes; the entries changed (sessions, rooms, idleness or status).
    Changed,
    /// Nothing new (an older version, or the same entry again).
    None,
}

/// An interned node id: its index in [`RemotePresence::names`].
type NodeIx = u32;

/// What one other node says about one user: what the presence transitions need.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeSlot {
    v: u64,
    /// Empty (no allocation) for a user in no room.
    rooms: Box<[RoomId]>,
    node: NodeIx,
    /// The user's sessions on that node (saturating; the session cap is far lower).
    sessions: u16,
    idle: bool,
}

/// The slots of one user: almost every user is on one node, kept inline; a user on several
/// nodes at once takes one allocation. (32 bytes: the enum fits in the niche of the boxes.)
#[derive(Debug, Clone)]
enum Slots {
    One(NodeSlot),
    Many(Box<[NodeSlot]>),
}

impl Slots {
    fn as_slice(&self) -> &[NodeSlot] {
        match self {
            Slots::One(s) => std::slice::from_ref(s),
            Slots::Many(v) => v,
        }
    }
}

/// A user id as the key of [`RemotePresence`]: inline up to 22 bytes (most ids), boxed
/// beyond, so that most users online elsewhere need no allocation of their own. Hashes and
/// compares as the `str` it holds, so the map is searched with `UserId::as_str`.
#[derive(Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Boxed(Box<str>),
}

/// The longest user id a [`Key`] holds without an allocation.
const INLINE_KEY: usize = 22;

impl Key {
    fn new(s: &str) -> Key {
        if s.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Key::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Key::Boxed(s.into())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Always valid: the bytes were copied from a `str` whole.
            Key::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default()
            }
            Key::Boxed(s) => s,
        }
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything this node keeps about a user who is online on other nodes.
#[derive(Debug, Clone)]
pub struct RemoteUser {
    slots: Slots,
    /// The latest chosen status any node reported; `None` for the default (never chosen).
    status: Option<Box<SharedStatus>>,
    /// When this node last saw the user change on another node (their last-seen here).
    seen: Millis,
}

impl RemoteUser {
    /// Sessions of the user on other nodes.
    pub fn sessions(&self) -> usize {
        self.slots
            .as_slice()
            .iter()
            .map(|s| s.sessions as usize)
            .sum()
    }

    /// Whether every other node says the user is idle.
    pub fn all_idle(&self) -> bool {
        self.slots.as_slice().iter().all(|s| s.idle)
    }

    /// The user's rooms on the other nodes (a room may repeat, once per node).
    pub fn rooms(&self) -> impl Iterator<Item = &RoomId> {
        self.slots.as_slice().iter().flat_map(|s| s.rooms.iter())
    }

    /// Whether the user is in `room` on some other node.
    pub fn in_room(&self, room: &RoomId) -> bool {
        self.rooms().any(|r| r == room)
    }

    /// Sessions of the user on the other nodes where they are in `room`.
    pub fn sessions_in(&self, room: &RoomId) -> usize {
        self.slots
            .as_slice()
            .iter()
            .filter(|s| s.rooms.contains(room))
            .map(|s| s.sessions as usize)
            .sum()
    }

    /// The latest chosen status reported, if any was chosen.
    pub fn status(&self) -> Option<&SharedStatus> {
        self.status.as_deref()
    }

    /// When this node last saw a change of the user on another node.
    pub fn seen(&self) -> Millis {
        self.seen
    }

    /// Takes `s` if it was chosen later than the status held (or is the first non-default
    /// one); returns whether it did.
    fn adopt(&mut self, s: &SharedStatus) -> bool {
        let newer = match &self.status {
            Some(cur) => s.at > cur.at,
            None => !s.is_default(),
        };
        if newer {
            self.status = Some(Box::new(s.clone()));
        }
        newer
    }
}

/// Entries of the other nodes, by user; node ids interned.
#[derive(Debug, Default)]
pub struct RemotePresence {
    users: HashMap<Key, RemoteUser>,
    /// Interned node ids: `names[ix]`, and back.
    names: Vec<String>,
    ixs: HashMap<String, NodeIx>,
    /// Users each node has an entry for (by node index), to list the nodes in use.
    counts: Vec<usize>,
}

impl RemotePresence {
    fn intern(&mut self, node: &str) -> NodeIx {
        if let Some(ix) = self.ixs.get(node) {
            return *ix;
        }
        // Node ids are few (one per node that ever ran, generated ones included): they are
        // never reclaimed.
        let ix = self.names.len() as NodeIx;
        self.names.push(node.to_owned());
        self.ixs.insert(node.to_owned(), ix);
        self.counts.push(0);
        ix
    }

    /// Applies a delta from `node`: its entry for `user`, or `None` when the user left it.
    /// `v` orders deltas of the same node (an entry removal carries the version too); `now`
    /// is the user's last-seen here while they stay.
    pub fn apply(
        &mut self,
        node: &str,
        user: &UserId,
        entry: Option<NodeEntry>,
        v: u64,
        now: Millis,
    ) -> RemoteChange {
        let ix = self.intern(node);
        let had = self.users.contains_key(user.as_str());
        let current = self
            .users
            .get(user.as_str())
            .and_then(|u| u.slots.as_slice().iter().find(|s| s.node == ix));
        if current.is_some_and(|s| s.v >= v) {
            return RemoteChange::None;
        }
        let Some(entry) = entry else {
            if current.is_none() {
                return RemoteChange::None;
            }
            self.counts[ix as usize] -= 1;
            let Some(u) = self.users.get_mut(user.as_str()) else {
                return RemoteChange::None;
            };
            let rest: Vec<NodeSlot> = u
                .slots
                .as_slice()
                .iter()
                .filter(|s| s.node != ix)
                .cloned()
                .collect();
            return match Slots::from_vec(rest) {
                Some(slots) => {
                    u.slots = slots;
                    u.seen = now;
                    RemoteChange::Changed
                }
                None => {
                    self.users.remove(user.as_str());
                    RemoteChange::Left
                }
            };
        };
        let slot = NodeSlot {
            v,
            rooms: entry.rooms.into_boxed_slice(),
            node: ix,
            sessions: entry.sessions.len().min(u16::MAX as usize) as u16,
            idle: entry.idle,
        };
        let Some(u) = self.users.get_mut(user.as_str()) else {
            self.counts[ix as usize] += 1;
            let mut u = RemoteUser {
                slots: Slots::One(slot),
                status: None,
                seen: now,
            };
            u.adopt(&entry.status);
            self.users.insert(Key::new(user.as_str()), u);
            return RemoteChange::Arrived;
        };
        u.seen = now;
        let status_changed = u.adopt(&entry.status);
        let same = |s: &NodeSlot| {
            s.rooms == slot.rooms && s.sessions == slot.sessions && s.idle == slot.idle
        };
        let changed = match current_ix(&u.slots, ix) {
            Some(i) => {
                let unchanged = same(&u.slots.as_slice()[i]);
                u.slots.set(i, slot);
                !unchanged
            }
            None => {
                self.counts[ix as usize] += 1;
                u.slots.push(slot);
                true
            }
        };
        debug_assert!(had);
        if changed || status_changed {
            RemoteChange::Changed
        } else {
            RemoteChange::None
        }
    }

    /// A chosen status announced by another node (`Status` event); returns whether it was
    /// newer than what this node held for a remote user (`false` for unknown users).
    pub fn adopt_status(&mut self, user: &UserId, status: &SharedStatus) -> bool {
        self.users
            .get_mut(user.as_str())
            .is_some_and(|u| u.adopt(status))
    }

    /// The users `node` has an entry for (one scan; used when a node is declared dead or
    /// says hello, both rare).
    pub fn users_on(&self, node: &str) -> Vec<UserId> {
        let Some(&ix) = self.ixs.get(node) else {
            return Vec::new();
        };
        if self.counts[ix as usize] == 0 {
            return Vec::new();
        }
        self.users
            .iter()
            .filter(|(_, u)| u.slots.as_slice().iter().any(|s| s.node == ix))
            .filter_map(|(k, _)| UserId::parse(k.as_str()).ok())
            .collect()
    }

    /// Whether any other node has `user`.
    pub fn has(&self, user: &UserId) -> bool {
        self.users.contains_key(user.as_str())
    }

    /// What the other nodes say about `user`.
    pub fn get(&self, user: &UserId) -> Option<&RemoteUser> {
        self.users.get(user.as_str())
    }

    /// The nodes that have `user` (for the admin views, which read the sessions there).
    pub fn nodes_of(&self, user: &UserId) -> Vec<String> {
        self.users
            .get(user.as_str())
            .into_iter()
            .flat_map(|u| u.slots.as_slice())
            .filter_map(|s| self.names.get(s.node as usize).cloned())
            .collect()
    }

    /// Every user some other node has (ids as `str`: the map holds no `UserId`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RemoteUser)> {
        self.users.iter().map(|(k, u)| (k.as_str(), u))
    }

    /// The nodes that have at least one entry.
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        self.names
            .iter()
            .zip(&self.counts)
            .filter(|(_, n)| **n > 0)
            .map(|(name, _)| name)
    }
}

fn current_ix(slots: &Slots, ix: NodeIx) -> Option<usize> {
    slots.as_slice().iter().position(|s| s.node == ix)
}

impl Slots {
    /// `None` for no slot at all.
    fn from_vec(mut v: Vec<NodeSlot>) -> Option<Slots> {
        match v.len() {
            0 => None,
            1 => v.pop().map(Slots::One),
            _ => Some(Slots::Many(v.into_boxed_slice())),
        }
    }

    fn set(&mut self, i: usize, slot: NodeSlot) {
        match self {
            Slots::One(s) => *s = slot,
            Slots::Many(v) => v[i] = slot,
        }
    }

    fn push(&mut self, slot: NodeSlot) {
        let mut all = self.as_slice().to_vec();
        all.push(slot);
        if let Some(s) = Slots::from_vec(all) {
            *self = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn status(status: ChosenStatus, at: Millis) -> SharedStatus {
        SharedStatus {
            status,
            custom_message: None,
            custom_expires_at: None,
            metadata: None,
            at,
        }
    }

    fn entry(v: u64, sessions: usize, idle: bool) -> NodeEntry {
        NodeEntry {
            v,
            sessions: (0..sessions)
                .map(|i| RemoteSession {
                    id: format!("s{i}"),
                    device_id: None,
                    connected_at: 1,
                    last_activity: 1,
                })
                .collect(),
            rooms: vec![RoomId::parse("public:lobby").unwrap()],
            idle,
            status: status(ChosenStatus::Online, 0),
        }
    }

    fn sessions(p: &RemotePresence, u: &UserId) -> usize {
        p.get(u).map_or(0, RemoteUser::sessions)
    }

    #[test]
    fn a_user_arrives_with_the_first_node_and_leaves_with_the_last() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        assert_eq!(
            p.apply("n1", &a, Some(entry(1, 1, false)), 1, 10),
            RemoteChange::Arrived
        );
        assert_eq!(
            p.apply("n2", &a, Some(entry(1, 2, false)), 1, 11),
            RemoteChange::Changed
        );
        assert_eq!(sessions(&p, &a), 3);
        assert_eq!(p.get(&a).map(RemoteUser::seen), Some(11));
        let mut nodes = p.nodes_of(&a);
        nodes.sort();
        assert_eq!(nodes, vec!["n1", "n2"]);
        assert_eq!(p.apply("n1", &a, None, 2, 12), RemoteChange::Changed);
        assert_eq!(sessions(&p, &a), 2);
        assert_eq!(p.nodes_of(&a), vec!["n2"]);
        assert_eq!(p.apply("n2", &a, None, 2, 13), RemoteChange::Left);
        assert!(!p.has(&a));
        assert_eq!(p.nodes().count(), 0, "no node is left in use");
    }

    #[test]
    fn the_same_entry_again_is_no_change() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        p.apply("n1", &a, Some(entry(1, 1, false)), 1, 10);
        assert_eq!(
            p.apply("n1", &a, Some(entry(2, 1, false)), 2, 11),
            RemoteChange::None
        );
        assert_eq!(
            p.apply("n1", &a, Some(entry(3, 2, false)), 3, 12),
            RemoteChange::Changed
        );
    }

    #[test]
    fn an_older_version_never_rolls_an_entry_back() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        p.apply("n1", &a, Some(entry(5, 2, false)), 5, 10);
        assert_eq!(
            p.apply("n1", &a, Some(entry(4, 1, false)), 4, 11),
            RemoteChange::None
        );
        assert_eq!(p.apply("n1", &a, None, 3, 12), RemoteChange::None);
        assert_eq!(sessions(&p, &a), 2);
        // Another node's versions are its own.
        assert_eq!(
            p.apply("n2", &a, Some(entry(1, 1, false)), 1, 13),
            RemoteChange::Changed
        );
        assert_eq!(
            p.apply("n2", &a, Some(entry(1, 3, false)), 1, 14),
            RemoteChange::None
        );
        assert_eq!(sessions(&p, &a), 3);
    }

    #[test]
    fn a_dead_node_takes_its_users_once_but_not_those_still_elsewhere() {
        let mut p = RemotePresence::default();
        let (a, b) = (user("alice"), user("bob"));
        p.apply("n1", &a, Some(entry(1, 1, false)), 1, 1);
        p.apply("n1", &b, Some(entry(2, 1, false)), 2, 1);
        p.apply("n2", &b, Some(entry(1, 1, false)), 1, 1);
        let mut gone = p.users_on("n1");
        gone.sort();
        assert_eq!(gone, vec![a.clone(), b.clone()]);
        // The registry drops each with a removal newer than anything the node sent.
        assert_eq!(p.apply("n1", &a, None, u64::MAX, 2), RemoteChange::Left);
        assert_eq!(p.apply("n1", &b, None, u64::MAX, 2), RemoteChange::Changed);
        assert!(!p.has(&a) && p.has(&b));
        assert_eq!(sessions(&p, &b), 1);
        assert!(p.users_on("n1").is_empty(), "once");
        assert_eq!(p.nodes().collect::<Vec<_>>(), vec!["n2"]);
    }

    #[test]
    fn idle_only_when_every_node_is_idle() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        p.apply("n1", &a, Some(entry(1, 1, true)), 1, 1);
        assert!(p.get(&a).is_some_and(RemoteUser::all_idle));
        p.apply("n2", &a, Some(entry(1, 1, false)), 1, 1);
        assert!(!p.get(&a).is_some_and(RemoteUser::all_idle));
        p.apply("n2", &a, Some(entry(2, 1, true)), 2, 1);
        assert!(p.get(&a).is_some_and(RemoteUser::all_idle));
    }

    #[test]
    fn the_latest_chosen_status_wins_and_the_default_costs_nothing() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        p.apply("n1", &a, Some(entry(1, 1, false)), 1, 1);
        assert!(p.get(&a).and_then(RemoteUser::status).is_none());
        let mut busy = entry(2, 1, false);
        busy.status = status(ChosenStatus::Busy, 50);
        assert_eq!(p.apply("n1", &a, Some(busy), 2, 2), RemoteChange::Changed);
        // An older choice reported by another node does not win.
        let mut away = entry(1, 1, false);
        away.status = status(ChosenStatus::Away, 40);
        p.apply("n2", &a, Some(away), 1, 3);
        assert_eq!(
            p.get(&a).and_then(RemoteUser::status).map(|s| s.status),
            Some(ChosenStatus::Busy)
        );
        assert!(p.adopt_status(&a, &status(ChosenStatus::Invisible, 60)));
        assert!(!p.adopt_status(&a, &status(ChosenStatus::Online, 59)));
        assert_eq!(
            p.get(&a).and_then(RemoteUser::status).map(|s| s.status),
            Some(ChosenStatus::Invisible)
        );
    }

    #[test]
    fn rooms_and_room_sessions_come_from_each_node() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        let lobby = RoomId::parse("public:lobby").unwrap();
        let other = RoomId::parse("public:other").unwrap();
        p.apply("n1", &a, Some(entry(1, 2, false)), 1, 1);
        let mut e = entry(1, 1, false);
        e.rooms = vec![other.clone()];
        p.apply("n2", &a, Some(e), 1, 1);
        let u = p.get(&a).unwrap();
        assert!(u.in_room(&lobby) && u.in_room(&other));
        assert_eq!((u.sessions_in(&lobby), u.sessions_in(&other)), (2, 1));
    }

    #[test]
    fn a_remote_user_is_small() {
        // The budget of docs/benchmarks.md ("Memory per remote user"): 48 bytes beside a
        // 24-byte key, with one node inline.
        assert_eq!(std::mem::size_of::<RemoteUser>(), 48);
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    #[test]
    fn short_and_long_user_ids_are_found_alike() {
        let mut p = RemotePresence::default();
        let short = user("bob");
        let edge = user(&"e".repeat(INLINE_KEY));
        let long = user(&"l".repeat(64));
        for (i, u) in [&short, &edge, &long].into_iter().enumerate() {
            p.apply("n1", u, Some(entry(1, i + 1, false)), 1, 1);
        }
        assert_eq!([&short, &edge, &long].map(|u| sessions(&p, u)), [1, 2, 3]);
        assert!(!p.has(&user("bo")) && !p.has(&user(&"e".repeat(INLINE_KEY - 1))));
        let mut on = p.users_on("n1");
        on.sort();
        assert_eq!(on, vec![short, edge, long]);
    }
}
