//! Consent (issue 18) in the registry: pushing a frame to every live session of a user
//! (`invitation`), and ending a blocked user's watches of the blocker.
//!
//! Who blocked whom is not kept here: the engine reads it from the database when a watch
//! starts and sends [`DropWatches`] when a block is made, so the registry holds no second copy.

use actix::prelude::*;

use super::PresenceRegistry;
use crate::actors::session::handle::DeliverOutcome;
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

/// Sent by the engine when `blocker` blocks `watcher`: the watcher's sessions stop watching
/// the blocker and are sent the blocker's presence as "no information" (offline, no
/// last-seen), as a watch made after the block answers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DropWatches {
    pub watcher: UserId,
    pub blocker: UserId,
}

impl Handler<DropWatches> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: DropWatches, _: &mut Context<Self>) {
        let Some(ws) = self.watchers.get_mut(&msg.blocker) else {
            return;
        };
        let dropped: Vec<SessionId> = ws
            .iter()
            .filter(|(_, h)| h.user == msg.watcher)
            .map(|(id, _)| *id)
            .collect();
        if dropped.is_empty() {
            return;
        }
        let hidden = PresenceView::offline(msg.blocker.as_str(), None);
        let frame = ServerFrame::Presence(&hidden).encode();
        for id in &dropped {
            if let Some(h) = ws.remove(id) {
                if h.deliver(&frame, None) == DeliverOutcome::Queued {
                    METRICS.frames_out.inc();
                }
            }
            if let Some(set) = self.watching.get_mut(id) {
                set.remove(&msg.blocker);
            }
        }
        if ws.is_empty() {
            self.watchers.remove(&msg.blocker);
        }
    }
}
