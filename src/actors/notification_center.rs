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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::commit_queue::Commit;
use super::database::{CountUnreadNotifications, LoadHeldNotifications, LoadPreferences};
use super::session::SessionHandle;
use crate::clock::Clock;
use crate::db::models::{StoredNotification, WriteOp, WriteOutcome};
use crate::domain::{rfc3339, SessionId, UserId};
use crate::engine::Store;
use crate::error::{EngineError, PersistError};
use crate::metrics::METRICS;
use crate::notification::{NotificationSource, NotificationSpec, Preferences};
use crate::protocol::{EncodedFrame, Notification, ServerFrame, UnreadCount};

/// Most held notifications released per sweep.
const RELEASE_BATCH: i64 = 1000;

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
                if h.deliver(frame, None) == super::session::DeliverOutcome::Queued {
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

    /// Pushes held or undelivered notifications of online users whose quiet time is over.
    fn release(&self, users: Vec<UserId>) -> impl ActorFuture<Self, Output = ()> + 'static {
        let now = self.clock.now();
        let reader = self.store.reader.clone();
        let commits = self.store.commits.clone();
        let fut = async move {
            let rows = reader
                .send(LoadHeldNotifications {
                    users,
                    now,
                    limit: RELEASE_BATCH,
                })
                .await
                .map_err(PersistError::from)
                .and_then(|r| r)?;
            let mut users: Vec<UserId> = rows.iter().map(|r| r.user.clone()).collect();
            users.sort();
            users.dedup();
            let prefs = reader
                .send(LoadPreferences { users })
                .await
                .map_err(PersistError::from)
                .and_then(|r| r)?;
            Ok::<_, PersistError>((
                rows,
                prefs.into_iter().collect::<HashMap<UserId, Preferences>>(),
                commits,
            ))
        };
        fut.into_actor(self).map(move |res, act, ctx| {
            let (rows, prefs, commits) = match res {
                Ok(r) => r,
                Err(e) => return log::warn!("held notifications unavailable: {e}"),
            };
            let mut delivered = Vec::new();
            let mut touched = Vec::new();
            let defaults = Preferences::default();
            for r in rows {
                let p = prefs.get(&r.user).unwrap_or(&defaults);
                if !act.online(&r.user) || p.holds(r.priority, now) {
                    continue;
                }
                if !act.mark_pushed(&r.id) {
                    continue;
                }
                act.push(&r.user, &notification_frame(&r));
                delivered.push(r.id);
                if !touched.contains(&r.user) {
                    touched.push(r.user);
                }
            }
            if !delivered.is_empty() {
                commits.do_send(Commit {
                    ops: vec![WriteOp::MarkDelivered {
                        ids: delivered,
                        at: now,
                    }],
                });
            }
            act.push_counts(touched, ctx);
        })
    }

    /// Deletes expired notifications (updating counts), then releases held ones.
    fn sweep(&self) -> impl ActorFuture<Self, Output = ()> + 'static {
        let now = self.clock.now();
        let commits = self.store.commits.clone();
        async move {
            commits
                .send(Commit {
                    ops: vec![WriteOp::DeleteExpiredNotifications { now }],
                })
                .await
                .map_err(PersistError::from)
                .and_then(|r| r)
        }
        .into_actor(self)
        .then(|res, act, ctx| {
            match res {
                Ok(mut out) => {
                    if let Some(WriteOutcome::Users(users)) = out.pop() {
                        act.push_counts(users, ctx);
                    }
                }
                Err(e) => log::warn!("notification expiry sweep failed: {e}"),
            }
            act.release(act.sessions.keys().cloned().collect())
        })
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

/// One recipient's result of a [`Notify`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notified {
    pub user: UserId,
    /// The notification's id; `None` when the user's preferences mute it.
    pub id: Option<String>,
    /// False for an idempotent repeat (nothing new was stored).
    pub created: bool,
    /// Held by quiet hours or do-not-disturb (stored and counted, pushed later).
    pub held: bool,
}

/// Sent by sources (REST backends and admins, rooms for mentions and direct messages):
/// notify these users.
#[derive(Message)]
#[rtype(result = "Result<Vec<Notified>, EngineError>")]
pub struct Notify {
    pub users: Vec<UserId>,
    pub spec: NotificationSpec,
    pub idempotency_key: Option<String>,
    pub source: NotificationSource,
    /// The message whose `notification_outbox` row this notification settles: it is deleted
    /// in the same commit group that stores the notifications (alone when preferences mute
    /// them all), so the row outlives a crash before that commit and never a successful one.
    pub outbox: Option<String>,
}

impl Handler<Notify> for NotificationCenter {
    type Result = ResponseActFuture<Self, Result<Vec<Notified>, EngineError>>;
    fn handle(&mut self, msg: Notify, _: &mut Context<Self>) -> Self::Result {
        let reader = self.store.reader.clone();
        let commits = self.store.commits.clone();
        let users = msg.users.clone();
        let load = async move {
            reader
                .send(LoadPreferences { users })
                .await
                .map_err(PersistError::from)
                .and_then(|r| r)
        };
        Box::pin(
            load.into_actor(self)
                .then(move |prefs, act, _| {
                    let now = act.clock.now();
                    let prefs: HashMap<UserId, Preferences> =
                        prefs.map(|p| p.into_iter().collect()).unwrap_or_else(|e| {
                            log::warn!("notification preferences unavailable, using defaults: {e}");
                            HashMap::new()
                        });
                    let defaults = Preferences::default();
                    let mut rows = Vec::new();
                    let mut results = Vec::new();
                    let s = &msg.spec;
                    for user in msg.users {
                        let p = prefs.get(&user).unwrap_or(&defaults);
                        if p.mutes(s, &msg.source) {
                            results.push(Notified {
                                user,
                                id: None,
                                created: false,
                                held: false,
                            });
                            continue;
                        }
                        let held = p.holds(s.priority, now);
                        let live = !held && act.online(&user);
                        rows.push(StoredNotification {
                            // Time-ordered, like message ids: index-friendly inserts.
                            id: uuid::Uuid::now_v7().simple().to_string(),
                            user: user.clone(),
                            notification_type: s.notification_type.clone(),
                            title: s.title.clone(),
                            message: s.message.clone(),
                            image_url: s.image_url.clone(),
                            actions: s.actions.clone(),
                            data: if s.data.is_null() {
                                serde_json::json!({})
                            } else {
                                s.data.clone()
                            },
                            priority: s.priority,
                            source_user: msg.source.user.clone(),
                            source_room: msg.source.room.clone(),
                            idempotency_key: msg.idempotency_key.clone(),
                            created_at: now,
                            expires_at: s.expires_at,
                            delivered_at: live.then_some(now),
                            read_at: None,
                        });
                        results.push(Notified {
                            user,
                            id: None,
                            created: true,
                            held,
                        });
                    }
                    let outbox = msg.outbox.map(|id| WriteOp::ClearOutbox {
                        message_ids: vec![id],
                    });
                    async move {
                        if rows.is_empty() {
                            if let Some(clear) = outbox {
                                commits
                                    .send(Commit { ops: vec![clear] })
                                    .await
                                    .map_err(PersistError::from)
                                    .and_then(|r| r)?;
                            }
                            return Ok((results, Vec::new()));
                        }
                        // One group: the notifications and the outbox row commit together.
                        let mut ops = vec![WriteOp::InsertNotifications { rows }];
                        ops.extend(outbox);
                        let out = commits
                            .send(Commit { ops })
                            .await
                            .map_err(PersistError::from)
                            .and_then(|r| r)?;
                        match out.into_iter().next() {
                            Some(WriteOutcome::Notifications(stored)) => Ok((results, stored)),
                            other => Err(PersistError::Unavailable(format!(
                                "unexpected outcome {other:?}"
                            ))),
                        }
                    }
                    .into_actor(act)
                })
                .map(|res, act, ctx| {
                    let (mut results, stored) = res.map_err(EngineError::from)?;
                    let mut touched = Vec::new();
                    let mut late = Vec::new();
                    let mut stored = stored.into_iter();
                    for r in results.iter_mut().filter(|r| r.created) {
                        let Some((row, new)) = stored.next() else {
                            break;
                        };
                        r.id = Some(row.id.clone());
                        r.created = new;
                        // A user who connected while the notification was being stored
                        // gets it now rather than at the next sweep.
                        let came_online =
                            row.delivered_at.is_none() && !r.held && act.online(&r.user);
                        if new && (row.delivered_at.is_some() || came_online) {
                            if !act.mark_pushed(&row.id) {
                                continue;
                            }
                            act.push(&r.user, &notification_frame(&row));
                            if came_online {
                                late.push(row.id.clone());
                            }
                        }
                        if new {
                            touched.push(r.user.clone());
                        }
                    }
                    if !late.is_empty() {
                        let at = act.clock.now();
                        act.store.commits.do_send(Commit {
                            ops: vec![WriteOp::MarkDelivered { ids: late, at }],
                        });
                    }
                    act.push_counts(touched, ctx);
                    Ok(results)
                }),
        )
    }
}

/// Sent by REST and both sockets: mark one notification (or all) read. Answers the new
/// unread count, which is also pushed to every session of the user; `NotFound` when the
/// user has no notification `id` (one already read is fine: marking is idempotent).
#[derive(Message)]
#[rtype(result = "Result<i64, EngineError>")]
pub struct MarkRead {
    pub user: UserId,
    pub id: Option<String>,
}

/// Sent by REST: delete one notification. Answers whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, EngineError>")]
pub struct DeleteNotification {
    pub user: UserId,
    pub id: String,
}

impl NotificationCenter {
    /// Commits `op` for `user`, then answers and pushes the user's unread count.
    fn change_and_count(
        &self,
        user: UserId,
        op: WriteOp,
    ) -> ResponseActFuture<Self, Result<(WriteOutcome, i64), EngineError>> {
        let commits = self.store.commits.clone();
        let reader = self.store.reader.clone();
        let now = self.clock.now();
        let u = user.clone();
        Box::pin(
            async move {
                let out = commits
                    .send(Commit { ops: vec![op] })
                    .await
                    .map_err(PersistError::from)
                    .and_then(|r| r)?;
                let counts = reader
                    .send(CountUnreadNotifications {
                        users: vec![u],
                        now,
                    })
                    .await
                    .map_err(PersistError::from)
                    .and_then(|r| r)?;
                let n = counts.first().map(|c| c.1).unwrap_or(0);
                Ok::<_, PersistError>((out.into_iter().next().unwrap_or(WriteOutcome::Count(0)), n))
            }
            .into_actor(self)
            .map(move |res, act, _| {
                let (out, n) = res.map_err(EngineError::from)?;
                act.push(&user, &unread_frame(n));
                Ok((out, n))
            }),
        )
    }
}

impl Handler<MarkRead> for NotificationCenter {
    type Result = ResponseActFuture<Self, Result<i64, EngineError>>;
    fn handle(&mut self, msg: MarkRead, _: &mut Context<Self>) -> Self::Result {
        let op = WriteOp::MarkNotificationsRead {
            user: msg.user.clone(),
            id: msg.id,
            at: self.clock.now(),
        };
        Box::pin(self.change_and_count(msg.user, op).map(|r, _, _| {
            let (out, n) = r?;
            // The query answers `Changed(false)` for an id the user has no notification by.
            if out == WriteOutcome::Changed(false) {
                return Err(EngineError::NotFound("no such notification".into()));
            }
            Ok(n)
        }))
    }
}

impl Handler<DeleteNotification> for NotificationCenter {
    type Result = ResponseActFuture<Self, Result<bool, EngineError>>;
    fn handle(&mut self, msg: DeleteNotification, _: &mut Context<Self>) -> Self::Result {
        let op = WriteOp::DeleteNotification {
            user: msg.user.clone(),
            id: msg.id,
        };
        Box::pin(
            self.change_and_count(msg.user, op)
                .map(|r, _, _| r.map(|(out, _)| matches!(out, WriteOutcome::Changed(true)))),
        )
    }
}

/// Sent by tests (and the periodic timer's equivalent): delete expired notifications and
/// release held ones whose quiet time is over, according to the clock.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotificationSweep;

impl Handler<NotificationSweep> for NotificationCenter {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: NotificationSweep, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.sweep())
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
                h.send_control(super::session::SessionControl::Close {
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
    fn handle(&mut self, msg: crate::cluster::backplane::RemoteClusterEvent, _: &mut Context<Self>) {
        if let crate::cluster::wire::ClusterEvent::UserFrame { user, frame } = msg.0.event {
            if let Some(frame) = frame.to_encoded() {
                self.push_here(&user, &frame);
            }
        }
    }
}
