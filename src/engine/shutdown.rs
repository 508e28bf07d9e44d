//! Graceful shutdown: close every session, record last-seen, and drain the queued writes.

use super::Engine;
use crate::actors::notification_center::*;
use crate::actors::presence_registry::*;
use crate::protocol;

impl Engine {
    /// Graceful shutdown of the engine: close every session with 1001, record last-seen for
    /// everyone still online, and wait until every queued write is committed.
    pub async fn shutdown(&self) {
        let closed = self
            .presence
            .send(CloseAllSessions {
                code: protocol::close_code::GOING_AWAY,
                reason: "server shutting down".into(),
            })
            .await
            .unwrap_or(0);
        let _ = self
            .notifications
            .send(CloseNotificationSessions {
                user: None,
                code: protocol::close_code::GOING_AWAY,
                reason: "server shutting down".into(),
            })
            .await;
        let flushed = self.presence.send(FlushLastSeen).await.unwrap_or(0);
        // Sessions close asynchronously; give their last frames and writes a moment to queue.
        actix::clock::sleep(std::time::Duration::from_millis(100)).await;
        if let Err(e) = self
            .store
            .commits
            .send(crate::actors::commit_queue::Drain)
            .await
        {
            log::error!("shutdown: commit queue unreachable: {e}");
        }
        log::info!("shutdown: closed {closed} sessions, recorded last-seen of {flushed} users, writes drained");
    }
}
