//! `NotificationCenter`: creates, delivers and counts notifications.
//!
//! Sources (REST backends and admins, room mentions, direct messages to offline users) send it
//! [`Notify`]. It applies each recipient's preferences — muted sources and types create
//! nothing; quiet hours and do-not-disturb hold everything but `urgent` — stores the
//! notifications through the commit queue, and pushes `notification` and `unread_count`
//! frames (SPEC section 3 shapes, encoded once) to every notification-capable session of the
//! user: native sessions and seed-compatible notification sockets alike. Reading or deleting
//! on one device updates the count on all of them. A periodic sweep (against the configured
//! clock) deletes expired notifications and releases held ones when the quiet window ends.
//!
//! Sends to: sessions (`Deliver`), the commit queue, the database readers.
//!
//! Files: this one holds the actor, its sessions by user, the frames and pushes, the
//! subscriptions and the shutdown close; `notify.rs` creating notifications (`Notify`);
//! `read.rs` reading and deleting them; `sweep.rs` the expiry and release sweep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::database::CountUnreadNotifications;
use super::session::handle::SessionHandle;
use crate::actors::store::Store;
use crate::clock::Clock;
use crate::db::models::StoredNotification;
use crate::domain::{rfc3339, SessionId, UserId};
use crate::error::PersistError;
use crate::metrics::METRICS;
use crate::protocol::{EncodedFrame, Notification, ServerFrame, UnreadCount};

mod notify;
mod read;
mod sweep;
mod webhooks;

pub use notify::{Notified, Notify};
pub use read::{DeleteNotification, MarkRead};
pub use sweep::NotificationSweep;

pub struct NotificationCenter {
    store: Store,
    clock: Arc<dyn Clock>,
    sweep_every: Duration,
    sessions: HashMap<UserId, HashMap<SessionId, SessionHandle>>,
    /// Ids pushed live recently: a notification stored while its user was connecting can be
    /// found both by the creator and by the connect-time release; it is pushed once.
    pushed: std::collections::HashSet<String>,
    /// Cluster mode: pushes reach the user's sessions on the other nodes too.
    cluster: crate::cluster::Cluster,
    /// Cluster mode: who has a session on any node (the presence registry knows), for
    /// `message.undelivered` webhooks.
    connectivity: Option<Recipient<crate::actors::presence_registry::ConnectedAnywhere>>,
}

/// Sent by the engine once the presence registry runs (it starts after this center).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachConnectivity {
    pub presence: Recipient<crate::actors::presence_registry::ConnectedAnywhere>,
}

impl Handler<AttachConnectivity> for NotificationCenter {
    type Result = ();
    fn handle(&mut self, msg: AttachConnectivity, _: &mut Context<Self>) {
        self.connectivity = Some(msg.presence);
    }
}

/// `{"type":"notification","data":{"id","title","message","is_read","created_at","notification_type"}}`.
pub fn notification_frame(n: &StoredNotification) -> EncodedFrame {
    ServerFrame::Notification(Notification {
        created_at: rfc3339(n.created_at),
        id: &n.id,
        is_read: n.read_at.is_some(),
        message: &n.message,
        notification_type: &n.notification_type,
        title: &n.title,
    })
    .encode()
}

/// `{"type":"unread_count","data":{"unread_count":N}}`.
pub fn unread_frame(n: i64) -> EncodedFrame {
    ServerFrame::UnreadCount(UnreadCount { unread_count: n }).encode()
}

impl NotificationCenter {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        sweep_every: Duration,
        cluster: crate::cluster::Cluster,
    ) -> Self {
        NotificationCenter {
            cluster,
            connectivity: None,
            store,
            clock,
            sweep_every,
            sessions: HashMap::new(),
            pushed: Default::default(),
        }
    }

    /// Records that `id` is being pushed; false if it already was.
    fn mark_pushed(&mut self, id: &str) -> bool {
        if self.pushed.len() > 10_000 {
            self.pushed.clear();
        }
        self.pushed.insert(id.to_owned())
    }

    /// Whether `user` may have a session to push to. In cluster mode that may be on another
    /// node, which this one does not know: always (counts are read and published).
    fn online(&self, user: &UserId) -> bool {
        self.cluster.enabled() || self.sessions.get(user).is_some_and(|s| !s.is_empty())
    }

    /// Delivers `frame` to this node's sessions of `user` and, in cluster mode, to the
    /// other nodes' (`user_frame` on the backplane).
    fn push(&self, user: &UserId, frame: &EncodedFrame) {
        if self.cluster.enabled() {
            if let Some(wire) = crate::cluster::wire::WireFrame::from_encoded(frame) {
                self.cluster
                    .publish(crate::cluster::wire::ClusterEvent::UserFrame {
                        user: user.clone(),
                        frame: wire,
                    });
            }
        }
        self.push_here(user, frame);
    }

    fn push_here(&self, user: &UserId, frame: &EncodedFrame) {
        if let Some(sessions) = self.sessions.get(user) {
            for h in sessions.values() {
                if h.deliver(frame, None) == super::session::handle::DeliverOutcome::Queued {
                    METRICS.frames_out.inc();
                }
            }
        }
    }

    /// Looks up and pushes the unread counts of `users`.
    fn push_counts(&self, users: Vec<UserId>, ctx: &mut Context<Self>) {
        let users: Vec<UserId> = users.into_iter().filter(|u| self.online(u)).collect();
        if users.is_empty() {
            return;
        }
        let q = CountUnreadNotifications {
            users,
            now: self.clock.now(),
        };
        self.store
            .reader
            .send(q)
            .into_actor(self)
            .map(
                |res, act, _| match res.map_err(PersistError::from).and_then(|r| r) {
                    Ok(counts) => {
                        for (u, n) in counts {
                            act.push(&u, &unread_frame(n));
                        }
                    }
                    Err(e) => log::warn!("unread counts unavailable: {e}"),
                },
            )
            .spawn(ctx);
    }
}

impl Actor for NotificationCenter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.sweep_every, |act, ctx| {
            act.sweep().spawn(ctx);
        });
    }
}

/// Sent when a native session or a notification socket opens: push this user's
/// notifications to it from now on (and what was waiting for them).
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotificationSubscribe {
    pub handle: SessionHandle,
}

impl Handler<NotificationSubscribe> for NotificationCenter {
    type Result = ();
    fn handle(&mut self, msg: NotificationSubscribe, ctx: &mut Context<Self>) {
        let user = msg.handle.user.clone();
        self.sessions
            .entry(user.clone())
            .or_default()
            .insert(msg.handle.id, msg.handle);
        self.release(vec![user]).spawn(ctx);
    }
}

/// Sent when such a session closes (idempotent).
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotificationUnsubscribe {
    pub session: SessionId,
    pub user: UserId,
}

impl Handler<NotificationUnsubscribe> for NotificationCenter {
    type Result = ();
    fn handle(&mut self, msg: NotificationUnsubscribe, _: &mut Context<Self>) {
        if let Some(s) = self.sessions.get_mut(&msg.user) {
            s.remove(&msg.session);
            if s.is_empty() {
                self.sessions.remove(&msg.user);
            }
        }
    }
}

/// Sent at shutdown (every session) and by the admin disconnect (one user's): close the
/// notification-capable sessions with this code.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseNotificationSessions {
    pub user: Option<UserId>,
    pub code: u16,
    pub reason: String,
}

impl Handler<CloseNotificationSessions> for NotificationCenter {
    type Result = usize;
    fn handle(&mut self, msg: CloseNotificationSessions, _: &mut Context<Self>) -> usize {
        let mut n = 0;
        for (user, sessions) in &self.sessions {
            if msg.user.as_ref().is_some_and(|u| u != user) {
                continue;
            }
            for h in sessions.values() {
                h.send_control(super::session::handle::SessionControl::Close {
                    code: msg.code,
                    reason: msg.reason.clone(),
                });
                n += 1;
            }
        }
        n
    }
}

/// A notification or unread count another node pushed for a user: delivered to this
/// node's sessions of the user.
impl Handler<crate::cluster::backplane::RemoteClusterEvent> for NotificationCenter {
    type Result = ();
    fn handle(
        &mut self,
        msg: crate::cluster::backplane::RemoteClusterEvent,
        _: &mut Context<Self>,
    ) {
        if let crate::cluster::wire::ClusterEvent::UserFrame { user, frame } = msg.0.event {
            if let Some(frame) = frame.to_encoded() {
                self.push_here(&user, &frame);
            }
        }
    }
}
