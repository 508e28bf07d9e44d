//! Consent (issue 18) in the registry: pushing a frame to every live session of a user
//! (`invitation`), and what a block changes for the blocked user's sessions (watches of the
//! blocker end, the blocker is hidden from shared rooms' presence and typing).
//!
//! Who blocked whom is not kept here: the engine reads it from the database when a watch
//! starts and sends [`DropWatches`] when a block is made, so the registry holds no second copy.

use actix::prelude::*;

use super::PresenceRegistry;
use crate::actors::session::handle::{DeliverOutcome, SessionControl};
use crate::domain::{SessionId, UserId};
use crate::metrics::METRICS;
use crate::protocol::{EncodedFrame, PresenceView, ServerFrame};

/// Sent by the engine: deliver `frame` to every session of `user` (native and Socket.IO;
/// not the seed notification socket, which speaks only its own frames): on this node, and
/// in cluster mode on the others too (`client_frame` on the backplane). Answers how many
/// sessions here took it.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DeliverToUser {
    pub user: UserId,
    pub frame: EncodedFrame,
}

impl Handler<DeliverToUser> for PresenceRegistry {
    type Result = usize;
    fn handle(&mut self, msg: DeliverToUser, _: &mut Context<Self>) -> usize {
        if self.cluster.enabled() {
            if let Some(frame) = crate::cluster::wire::WireFrame::from_encoded(&msg.frame) {
                self.cluster
                    .publish(crate::cluster::wire::ClusterEvent::ClientFrame {
                        user: msg.user.clone(),
                        frame,
                    });
            }
        }
        self.deliver_here(&msg.user, &msg.frame)
    }
}

impl PresenceRegistry {
    /// `frame` to this node's sessions of `user`; how many took it.
    pub(super) fn deliver_here(&self, user: &UserId, frame: &EncodedFrame) -> usize {
        let Some(entry) = self.users.get(user) else {
            return 0;
        };
        let mut n = 0;
        for d in entry.sessions.values() {
            if d.handle.deliver(frame, None) == DeliverOutcome::Queued {
                METRICS.frames_out.inc();
                n += 1;
            }
        }
        n
    }
}

/// Sent by the engine when `blocker` blocks (`on`) or unblocks `blocked`. Blocking: the
/// blocked user's watches of the blocker end (with the blocker's presence as "no
/// information": offline, no last-seen, as a watch made after the block answers), and their
/// sessions hide the blocker from shared rooms' presence and typing; unblocking shows them
/// again. On this node, and in cluster mode on every other (`block` on the backplane).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BlockChanged {
    pub blocker: UserId,
    pub blocked: UserId,
    pub on: bool,
}

impl Handler<BlockChanged> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: BlockChanged, _: &mut Context<Self>) {
        if self.cluster.enabled() {
            self.cluster
                .publish(crate::cluster::wire::ClusterEvent::Block {
                    blocker: msg.blocker.clone(),
                    blocked: msg.blocked.clone(),
                    on: msg.on,
                });
        }
        self.apply_block(&msg.blocker, &msg.blocked, msg.on);
    }
}

impl PresenceRegistry {
    /// A block between two users, for this node's sessions.
    pub(super) fn apply_block(&mut self, blocker: &UserId, blocked: &UserId, on: bool) {
        if let Some(entry) = self.users.get(blocked) {
            for d in entry.sessions.values() {
                d.handle.send_control(SessionControl::Hide {
                    user: blocker.clone(),
                    hidden: on,
                });
            }
        }
        if on {
            self.drop_watches(blocked, blocker);
        }
    }

    fn drop_watches(&mut self, watcher: &UserId, blocker: &UserId) {
        let Some(ws) = self.watchers.get_mut(blocker) else {
            return;
        };
        let dropped: Vec<SessionId> = ws
            .iter()
            .filter(|(_, h)| &h.user == watcher)
            .map(|(id, _)| *id)
            .collect();
        if dropped.is_empty() {
            return;
        }
        let hidden = PresenceView::offline(blocker.as_str(), None);
        let frame = ServerFrame::Presence(&hidden).encode();
        for id in &dropped {
            if let Some(h) = ws.remove(id) {
                if h.deliver(&frame, None) == DeliverOutcome::Queued {
                    METRICS.frames_out.inc();
                }
            }
            if let Some(set) = self.watching.get_mut(id) {
                set.remove(blocker);
            }
        }
        if ws.is_empty() {
            self.watchers.remove(blocker);
        }
    }
}
