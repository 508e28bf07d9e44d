//! Which sessions exist: admitting a new one (rates and limits), unregistering a closed one,
//! and the admin disconnect of a user's sessions.

use super::Engine;
use crate::actors::notification_center::{CloseNotificationSessions, NotificationUnsubscribe};
use crate::actors::presence_registry::{DisconnectUser, SessionClosed};
use crate::actors::room_supervisor::{AdmissionTicket, AdmitSession, Disconnect};
use crate::domain::{SessionId, UserId};
use crate::error::EngineError;
use crate::metrics::METRICS;

impl Engine {
    /// Admits one more session of `user` from `ip`, or says which limit refuses it: the
    /// user's rate of new sessions, then (checked and counted in one step) sessions per user
    /// and connections per address. The ticket holds the session's place until dropped.
    pub async fn admit(
        &self,
        user: &UserId,
        ip: Option<std::net::IpAddr>,
    ) -> Result<AdmissionTicket, EngineError> {
        if let Err(refusal) = self.gate.check_user(user) {
            METRICS.refused.with_label_values(&[refusal.metric()]).inc();
            return Err(EngineError::RateLimited(refusal.to_string()));
        }
        let l = &self.settings.limits;
        self.rooms
            .send(AdmitSession {
                user: user.clone(),
                ip,
                max_sessions: l.max_sessions_per_user,
                max_per_ip: l.max_connections_per_ip,
            })
            .await?
    }

    /// Unregisters a session (idempotent).
    pub fn close_session(&self, session: SessionId, user: &UserId) {
        // do_send: our own actors' mailboxes are unbounded and this must never be lost.
        self.rooms.do_send(Disconnect {
            session,
            user: user.clone(),
        });
        self.notifications.do_send(NotificationUnsubscribe {
            session,
            user: user.clone(),
        });
        self.presence.do_send(SessionClosed {
            session,
            user: user.clone(),
        });
    }

    pub async fn disconnect_user(
        &self,
        user: UserId,
        code: u16,
        reason: String,
    ) -> Result<usize, EngineError> {
        // The registry first: it counts the user's sessions before any of them closes. Then
        // the notification center, for the notification sockets (it would also close the
        // native and Socket.IO sessions, which are already closing).
        let closed = self
            .presence
            .send(DisconnectUser {
                user: user.clone(),
                code,
                reason: reason.clone(),
            })
            .await?;
        self.notifications.do_send(CloseNotificationSessions {
            user: Some(user),
            code,
            reason,
        });
        Ok(closed)
    }
}
