//! Graceful shutdown: close every session, record last-seen, and drain the queued writes.

use std::time::Duration;

use actix::MailboxError;

use super::Engine;
use crate::actors::notification_center::CloseNotificationSessions;
use crate::actors::presence_registry::{AwaitSessionsClosed, CloseAllSessions, FlushLastSeen};
use crate::protocol;

/// How long shutdown waits for the closed sessions to unregister before it drains the
/// writes anyway (a session stuck mid-registration must not hold the process); the HTTP
/// server's own graceful timeout is as long.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Engine {
    /// Graceful shutdown of the engine: close every session with 1001, record last-seen for
    /// everyone still online, wait until every closed session has unregistered (its last
    /// writes queued), then until every queued write is committed.
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
        // Sessions close asynchronously: each queues its close frame, stops, and unregisters
        // (the registry's `SessionClosed` queues its last-seen write). Once the registry has
        // handled them all, every such write is in the commit queue ahead of the drain.
        match self
            .presence
            .send(AwaitSessionsClosed)
            .timeout(CLOSE_WAIT)
            .await
        {
            Ok(()) => {}
            Err(MailboxError::Timeout) => log::warn!(
                "shutdown: sessions still registered after {CLOSE_WAIT:?}; draining anyway"
            ),
            Err(e) => log::error!("shutdown: presence registry unreachable: {e}"),
        }
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
