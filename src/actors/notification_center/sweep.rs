//! The periodic sweep of the `NotificationCenter`: expired notifications are deleted (and
//! counts updated), held ones released once the recipient's quiet time is over;
//! `NotificationSweep` runs it now (tests, against a manual clock).

use std::collections::HashMap;

use actix::prelude::*;

use crate::actors::commit_queue::Commit;
use crate::actors::database::{LoadHeldNotifications, LoadPreferences};
use crate::db::models::{WriteOp, WriteOutcome};
use crate::domain::UserId;
use crate::error::PersistError;

use super::{notification_frame, NotificationCenter};
use crate::notification::Preferences;
/// Most held notifications released per sweep.
const RELEASE_BATCH: i64 = 1000;

impl NotificationCenter {
    /// Pushes held or undelivered notifications of online users whose quiet time is over.
    pub(super) fn release(
        &self,
        users: Vec<UserId>,
    ) -> impl ActorFuture<Self, Output = ()> + 'static {
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
    pub(super) fn sweep(&self) -> impl ActorFuture<Self, Output = ()> + 'static {
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
