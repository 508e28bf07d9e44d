//! Device-position expiry: a periodic delete of the resume positions of devices idle for
//! `device_ttl`.

use actix::prelude::*;

use crate::actors::commit_queue::CommitQueue;

/// Deletes device positions idle for `ttl`, a minute after start and then hourly, so
/// devices that never come back do not accumulate (docs/configuration.md).
pub(super) fn expire_device_positions(commits: Addr<CommitQueue>, ttl: std::time::Duration) {
    actix::spawn(async move {
        actix::clock::sleep(std::time::Duration::from_secs(60)).await;
        let mut tick = actix::clock::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let before = crate::domain::now_millis() - ttl.as_millis() as i64;
            let op = crate::db::models::WriteOp::ExpireDevicePositions { before };
            match commits
                .send(crate::actors::commit_queue::Commit { ops: vec![op] })
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::warn!("expiring device positions failed: {e}"),
                Err(_) => return, // the commit queue stopped: shutting down
            }
        }
    });
}
