//! `RemotePresence`: what the other nodes say about their users, kept by each node's
//! `PresenceRegistry` beside its own sessions.
//!
//! Every node owns the presence of its own sessions and publishes, per user, one
//! [`NodeEntry`] (the user's sessions on that node, their rooms, whether they are idle) into
//! its own Redis hash and as a delta on the cluster channel. A user is online while any node
//! has an entry; each node computes the transitions itself and tells only its own sessions,
//! so an observer hears each change once. An entry leaves when its node's grace period
//! ends, or when the node stops heartbeating (a killed node): then every node drops all of
//! that node's entries at once.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{ChosenStatus, CustomMessage, Millis, RoomId, UserId};

/// One session of a user on another node, for the admin views.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteSession {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub connected_at: Millis,
    pub last_activity: Millis,
}

/// A node's view of one of its users.
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

/// How a user's presence on the other nodes changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteChange {
    /// No other node had the user; now one does.
    Arrived,
    /// The last other node dropped the user.
    Left,
    /// Still on other nodes; the entries changed (sessions, rooms or idleness).
    Changed,
    /// Nothing new (an older version, or the same entry again).
    None,
}

/// Entries of the other nodes, by user and by node.
#[derive(Debug, Default)]
pub struct RemotePresence {
    users: HashMap<UserId, HashMap<String, NodeEntry>>,
    /// Users per node, to drop a dead node's entries at once.
    nodes: HashMap<String, HashSet<UserId>>,
}

impl RemotePresence {
    /// Applies a delta from `node`: its entry for `user`, or `None` when the user left it.
    /// `v` orders deltas of the same node (an entry removal carries the version too).
    pub fn apply(
        &mut self,
        node: &str,
        user: &UserId,
        entry: Option<NodeEntry>,
        v: u64,
    ) -> RemoteChange {
        let had = self.users.get(user).is_some_and(|m| !m.is_empty());
        let per_user = self.users.entry(user.clone()).or_default();
        if per_user.get(node).is_some_and(|e| e.v >= v) {
            return RemoteChange::None;
        }
        let changed = match entry {
            Some(e) => {
                let same = per_user.get(node) == Some(&e);
                per_user.insert(node.to_owned(), e);
                self.nodes
                    .entry(node.to_owned())
                    .or_default()
                    .insert(user.clone());
                !same
            }
            None => {
                let removed = per_user.remove(node).is_some();
                if let Some(set) = self.nodes.get_mut(node) {
                    set.remove(user);
                }
                removed
            }
        };
        let has = !per_user.is_empty();
        if !has {
            self.users.remove(user);
        }
        match (had, has) {
            (false, true) => RemoteChange::Arrived,
            (true, false) => RemoteChange::Left,
            _ if changed => RemoteChange::Changed,
            _ => RemoteChange::None,
        }
    }

    /// Drops everything `node` said (it stopped heartbeating); returns each user it had and
    /// whether another node still has them.
    pub fn node_down(&mut self, node: &str) -> Vec<(UserId, bool)> {
        let Some(users) = self.nodes.remove(node) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            if let Some(m) = self.users.get_mut(&user) {
                m.remove(node);
                let still = !m.is_empty();
                if !still {
                    self.users.remove(&user);
                }
                out.push((user, still));
            }
        }
        out
    }

    /// Whether any other node has `user`.
    pub fn has(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    /// The other nodes' entries for `user`.
    pub fn entries(&self, user: &UserId) -> impl Iterator<Item = (&String, &NodeEntry)> {
        self.users.get(user).into_iter().flatten()
    }

    /// Whether every other node that has `user` says they are idle (`true` when none has).
    pub fn all_idle(&self, user: &UserId) -> bool {
        self.entries(user).all(|(_, e)| e.idle)
    }

    /// The user's rooms on the other nodes.
    pub fn rooms(&self, user: &UserId) -> HashSet<RoomId> {
        self.entries(user)
            .flat_map(|(_, e)| e.rooms.iter().cloned())
            .collect()
    }

    /// Sessions of `user` on other nodes.
    pub fn session_count(&self, user: &UserId) -> usize {
        self.entries(user).map(|(_, e)| e.sessions.len()).sum()
    }

    /// Every user some other node has.
    pub fn users(&self) -> impl Iterator<Item = &UserId> {
        self.users.keys()
    }

    /// The nodes that have at least one entry.
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        self.nodes
            .iter()
            .filter(|(_, u)| !u.is_empty())
            .map(|(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
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
            status: SharedStatus {
                status: ChosenStatus::Online,
                custom_message: None,
                custom_expires_at: None,
                metadata: None,
                at: 0,
            },
        }
    }

    #[test]
    fn a_user_arrives_with_the_first_node_and_leaves_with_the_last() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        assert_eq!(
            p.apply("n1", &a, Some(entry(1, 1, false)), 1),
            RemoteChange::Arrived
        );
        assert_eq!(
            p.apply("n2", &a, Some(entry(1, 2, false)), 1),
            RemoteChange::Changed
        );
        assert_eq!(p.session_count(&a), 3);
        assert_eq!(p.apply("n1", &a, None, 2), RemoteChange::Changed);
        assert_eq!(p.apply("n2", &a, None, 2), RemoteChange::Left);
        assert!(!p.has(&a));
    }

    #[test]
    fn an_older_version_never_rolls_an_entry_back() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        p.apply("n1", &a, Some(entry(5, 2, false)), 5);
        assert_eq!(
            p.apply("n1", &a, Some(entry(4, 1, false)), 4),
            RemoteChange::None
        );
        assert_eq!(p.apply("n1", &a, None, 3), RemoteChange::None);
        assert_eq!(p.session_count(&a), 2);
    }

    #[test]
    fn a_dead_node_takes_its_users_but_not_those_still_elsewhere() {
        let mut p = RemotePresence::default();
        let (a, b) = (user("alice"), user("bob"));
        p.apply("n1", &a, Some(entry(1, 1, false)), 1);
        p.apply("n1", &b, Some(entry(2, 1, false)), 2);
        p.apply("n2", &b, Some(entry(1, 1, false)), 1);
        let mut gone = p.node_down("n1");
        gone.sort();
        assert_eq!(gone, vec![(a.clone(), false), (b.clone(), true)]);
        assert!(!p.has(&a) && p.has(&b));
        assert!(p.node_down("n1").is_empty(), "once");
    }

    #[test]
    fn idle_only_when_every_node_is_idle() {
        let mut p = RemotePresence::default();
        let a = user("alice");
        p.apply("n1", &a, Some(entry(1, 1, true)), 1);
        assert!(p.all_idle(&a));
        p.apply("n2", &a, Some(entry(1, 1, false)), 1);
        assert!(!p.all_idle(&a));
    }
}
