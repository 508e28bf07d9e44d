//! Retention: a periodic, batched job that deletes the bodies of messages older than their
//! room kind's retention (leaving tombstones, so seqs stay gap-free) and read notifications
//! older than theirs. Each batch is one small transaction through the commit queue, so
//! writers never wait for more than one batch.

use actix::prelude::*;

use crate::actors::commit_queue::{Commit, CommitQueue};
use crate::config::Retention;
use crate::db::models::{WriteOp, WriteOutcome};
use crate::domain::RoomKind;

/// Most batches one sweep runs (per kind); the rest waits for the next sweep.
const MAX_BATCHES_PER_SWEEP: usize = 100;

/// Starts the job when any retention is configured.
pub(super) fn start(
    commits: Addr<CommitQueue>,
    retention: Retention,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) {
    let any = [RoomKind::Public, RoomKind::Private, RoomKind::Direct]
        .iter()
        .any(|k| retention.of(*k).is_some())
        || retention.read_notifications.is_some();
    if !any {
        return;
    }
    actix::spawn(async move {
        let mut tick = actix::clock::interval(retention.sweep);
        loop {
            tick.tick().await;
            if sweep(&commits, &retention, clock.now()).await.is_err() {
                return; // the commit queue stopped: shutting down
            }
        }
    });
}

/// One sweep at `now`; `Err` once the commit queue is gone.
pub async fn sweep(
    commits: &Addr<CommitQueue>,
    retention: &Retention,
    now: crate::domain::Millis,
) -> Result<i64, MailboxError> {
    let mut total = 0;
    let at = crate::domain::now_millis();
    for kind in [RoomKind::Public, RoomKind::Private, RoomKind::Direct] {
        let Some(age) = retention.of(kind) else {
            continue;
        };
        let before = now - age.as_millis() as i64;
        let op = || WriteOp::ExpireMessages {
            kind,
            before,
            at,
            limit: retention.batch,
        };
        total += batches(commits, op, retention.batch, "messages").await?;
    }
    if let Some(age) = retention.read_notifications {
        let before = now - age.as_millis() as i64;
        let op = || WriteOp::ExpireReadNotifications {
            before,
            limit: retention.batch,
        };
        total += batches(commits, op, retention.batch, "read notifications").await?;
    }
    Ok(total)
}

/// Runs `op` until a batch comes back short (or the per-sweep bound).
async fn batches(
    commits: &Addr<CommitQueue>,
    op: impl Fn() -> WriteOp,
    batch: i64,
    what: &str,
) -> Result<i64, MailboxError> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES_PER_SWEEP {
        match commits.send(Commit { ops: vec![op()] }).await? {
            Ok(outcomes) => {
                let n = match outcomes.first() {
                    Some(WriteOutcome::Count(n)) => *n,
                    _ => 0,
                };
                total += n;
                if n < batch {
                    break;
                }
            }
            Err(e) => {
                log::warn!("retention of {what} failed, retrying at the next sweep: {e}");
                break;
            }
        }
    }
    if total > 0 {
        log::info!("retention: {total} {what} expired");
    }
    Ok(total)
}
