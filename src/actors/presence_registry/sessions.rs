//! Session lifecycle and activity in the `PresenceRegistry`: a session opened (first one:
//! online), closed (last one: grace, then offline; last-seen stored) and client activity
//! (`Touch`: last activity, the end of auto-away).

use actix::prelude::*;

use crate::actors::session::handle::SessionHandle;
use crate::db::models::{UserRecord, WriteOp};
use crate::domain::{SessionId, UserId};

use super::{DevicePresence, PresenceRegistry, UserPresence};
/// Sent when a session has registered with the room supervisor, before it is subscribed to
/// its rooms (the supervisor reports those with [`UserRoomsChanged`](crate::actors::room_supervisor::UserRoomsChanged)).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionOpened {
    pub handle: SessionHandle,
    /// What is stored about the user, used when the user was not online yet.
    pub stored: Option<UserRecord>,
}

impl Handler<SessionOpened> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: SessionOpened, _: &mut Context<Self>) {
        let user = msg.handle.user.clone();
        let now = self.now();
        // A user other nodes have already: their presence here starts from that picture
        // (and what they announced stays announced).
        let remote = match self.users.contains_key(&user) {
            true => None,
            false => self.remote_presence(&user),
        };
        let entry = self
            .users
            .entry(user.clone())
            .or_insert_with(|| UserPresence::new(msg.stored.as_ref(), now));
        if let (Some(r), Some(compact)) = (remote, self.remote.get(&user)) {
            super::cluster::fold_remote(entry, compact);
            if let Some(s) = compact.status() {
                super::cluster::adopt_status(entry, s.clone());
            }
            entry.announced = r.announced;
        }
        // A reconnect within the grace period: no offline, no second online.
        entry.offline_at = None;
        entry.sessions.insert(
            msg.handle.id,
            DevicePresence {
                handle: msg.handle,
                last_activity: now,
            },
        );
        entry.last_activity = now;
        entry.seen(now);
        let before_auto_away = std::mem::take(&mut entry.auto_away);
        if (!entry.announced && entry.visible()) || before_auto_away {
            self.announce(&user);
        }
        self.publish_local(&user);
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
    fn handle(&mut self, msg: SessionClosed, _: &mut Context<Self>) {
        self.session_closed(msg);
        self.wake_closed_waiters();
    }
}

impl PresenceRegistry {
    fn session_closed(&mut self, msg: SessionClosed) {
        for watched in self.watching.remove(&msg.session).unwrap_or_default() {
            if let Some(w) = self.watchers.get_mut(&watched) {
                w.remove(&msg.session);
                if w.is_empty() {
                    self.watchers.remove(&watched);
                }
            }
        }
        let now = self.now();
        let grace = self.policy.grace;
        let Some(entry) = self.users.get_mut(&msg.user) else {
            return;
        };
        if entry.sessions.remove(&msg.session).is_none() || !entry.sessions.is_empty() {
            return;
        }
        entry.seen(now);
        let skip_grace = std::mem::take(&mut entry.skip_grace);
        entry.offline_at = Some(now + grace.as_millis() as i64);
        // The stored last-seen is what others will see: an invisible user's does not move.
        if let Some(at) = entry.visible_last_seen {
            self.persist(WriteOp::SaveLastSeen {
                user: msg.user.clone(),
                at,
            });
        }
        if grace.is_zero() || skip_grace {
            self.go_offline(&msg.user);
        } else {
            // The sessions this node lists go; the entry itself stays until the grace ends.
            self.publish_local(&msg.user);
        }
    }
}

/// Sent by a session (at most about once a second) when its client did something: a user
/// who was auto-away is back, and last-seen moves.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Touch {
    pub session: SessionId,
    pub user: UserId,
}

impl Handler<Touch> for PresenceRegistry {
    type Result = ();
    fn handle(&mut self, msg: Touch, _: &mut Context<Self>) {
        let now = self.now();
        let Some(entry) = self.users.get_mut(&msg.user) else {
            return;
        };
        if let Some(d) = entry.sessions.get_mut(&msg.session) {
            d.last_activity = now;
        }
        entry.last_activity = now;
        entry.seen(now);
        if entry.auto_away {
            let before = entry.view(&msg.user);
            entry.auto_away = false;
            self.announce_if_changed(&msg.user, &before);
            self.publish_local(&msg.user);
        }
    }
}
