//! The room supervisor's side of cluster mode: membership changes announced to the other
//! nodes and applied from them (rooms, the user's sessions here), and the resync of every
//! room when the backplane comes back.

use super::*;
use crate::actors::room::{MemberChanged, Resync};
use crate::cluster::backplane::{BackplaneResumed, RemoteClusterEvent, SetSessionCounts};
use crate::cluster::wire::{ClusterEvent, WireRole};
use crate::db::models::MemberRole;

impl RoomSupervisor {
    /// Tells the other nodes that `user` joined (`role`) or left (`None`) `room` here.
    pub(super) fn announce_member(&self, user: &UserId, room: &RoomId, role: Option<MemberRole>) {
        self.cluster.publish(ClusterEvent::UserRoom {
            user: user.clone(),
            room: room.clone(),
            role: role.map(WireRole::from),
        });
    }
}

impl Handler<RemoteClusterEvent> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: RemoteClusterEvent, _: &mut Context<Self>) {
        let ClusterEvent::UserRoom { user, room, role } = msg.0.event else {
            return;
        };
        let role = role.map(MemberRole::from);
        // The room first (its members), then the sessions: both in this mailbox order.
        if let Some(e) = self.rooms.get(&room) {
            e.addr.do_send(MemberChanged {
                user: user.clone(),
                role,
            });
        }
        match role {
            Some(_) => self.subscribe_user(&user, &room, true),
            None => self.unsubscribe_user(&user, &room),
        }
    }
}

impl Handler<BackplaneResumed> for RoomSupervisor {
    type Result = ();
    fn handle(&mut self, msg: BackplaneResumed, _: &mut Context<Self>) {
        // Session counts as this node has them (admitted while Redis was away included).
        if let Some(backplane) = self.cluster.backplane() {
            let counts = self.admitted.iter().map(|(u, n)| (u.clone(), *n)).collect();
            backplane.do_send(SetSessionCounts(counts));
        }
        if msg.first {
            return;
        }
        for e in self.rooms.values() {
            e.addr.do_send(Resync);
        }
    }
}
