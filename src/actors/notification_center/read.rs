//! Reading and deleting notifications (`MarkRead`, `DeleteNotification`): the change is
//! committed, then the user's unread count is recounted and pushed to all their sessions.

use actix::prelude::*;

use crate::actors::commit_queue::Commit;
use crate::actors::database::CountUnreadNotifications;
use crate::db::models::{WriteOp, WriteOutcome};
use crate::domain::UserId;
use crate::error::{EngineError, PersistError};

use super::{unread_frame, NotificationCenter};
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
