//! Creating notifications: `Notify` applies each recipient's preferences, stores the
//! notifications through the commit queue and pushes them with the new unread counts.

use std::collections::HashMap;

use actix::prelude::*;

use crate::actors::commit_queue::Commit;
use crate::actors::database::LoadPreferences;
use crate::db::models::{StoredNotification, WriteOp, WriteOutcome};
use crate::domain::UserId;
use crate::error::{EngineError, PersistError};
use crate::metrics::METRICS;
use crate::notification::{NotificationSource, NotificationSpec};

use super::{notification_frame, NotificationCenter};
use crate::notification::Preferences;
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
        // In cluster mode a user may be connected to another node only: ask the registry,
        // which knows every node's users, before reporting anyone undelivered.
        let connectivity = self
            .connectivity
            .clone()
            .filter(|_| self.cluster.enabled())
            .filter(|_| {
                self.store
                    .webhooks
                    .wants(crate::webhook::EventType::MessageUndelivered)
            });
        let load = async move {
            let connected = match connectivity {
                Some(c) => c
                    .send(crate::actors::presence_registry::ConnectedAnywhere {
                        users: users.clone(),
                    })
                    .await
                    .ok(),
                None => None,
            };
            let prefs = reader
                .send(LoadPreferences { users })
                .await
                .map_err(PersistError::from)
                .and_then(|r| r);
            (prefs, connected)
        };
        Box::pin(
            load.into_actor(self)
                .then(move |(prefs, connected), act, _| {
                    // Connected anywhere: on some node (cluster mode), else here.
                    let offline = |act: &NotificationCenter, u: &UserId| match &connected {
                        Some(set) => !set.contains(u),
                        None => !act.online(u),
                    };
                    let now = act.clock.now();
                    let prefs: HashMap<UserId, Preferences> =
                        prefs.map(|p| p.into_iter().collect()).unwrap_or_else(|e| {
                            log::warn!("notification preferences unavailable, using defaults: {e}");
                            HashMap::new()
                        });
                    let defaults = Preferences::default();
                    let mut rows = Vec::new();
                    let mut results = Vec::new();
                    // Webhook events, committed in the notifications' group (webhooks.rs).
                    let mut events = Vec::new();
                    let s = &msg.spec;
                    for user in msg.users {
                        let p = prefs.get(&user).unwrap_or(&defaults);
                        if p.mutes(s, &msg.source) {
                            let away = offline(act, &user);
                            events.extend(super::webhooks::muted(
                                act,
                                &user,
                                s,
                                &msg.source,
                                now,
                                away,
                            ));
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
                        let row = StoredNotification {
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
                        };
                        let away = offline(act, &row.user);
                        events.extend(super::webhooks::stored(act, &row, held, away));
                        rows.push(row);
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
                    let events = (!events.is_empty()).then_some(WriteOp::Webhooks(
                        crate::db::models::WebhookWrite::Enqueue { events },
                    ));
                    async move {
                        if rows.is_empty() {
                            let ops: Vec<WriteOp> = outbox.into_iter().chain(events).collect();
                            if !ops.is_empty() {
                                commits
                                    .send(Commit { ops })
                                    .await
                                    .map_err(PersistError::from)
                                    .and_then(|r| r)?;
                            }
                            return Ok((results, Vec::new()));
                        }
                        // One group: the notifications and the outbox row commit together.
                        let mut ops = vec![WriteOp::InsertNotifications { rows }];
                        ops.extend(outbox);
                        ops.extend(events);
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
                        if new {
                            METRICS.notifications_created.inc();
                        }
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
