//! `SessionPort`: everything a client session may ask of the engine.
//!
//! The client session actors (`WsSession`, `SocketIoSession`, `NotificationSocket`) and the
//! pipelines they share (`RequestSession`, `StreamSession`) hold a `SessionPort`, not the
//! whole [`Engine`]: the methods below are their dependency list, and a new need of a session
//! shows up here, in one place, instead of hiding behind an `Engine` that can reach every
//! actor. Each method delegates to the engine's operation of the same concern (`admission`,
//! `session_start`, `requests`, `notifications`) or sends the one message it names, so the
//! sessions and the REST routes and tests (which keep the `Engine`) still share one code path.
//!
//! Routes build one per session with [`Engine::session_port`]. Cloning it costs what cloning
//! the `Engine` costs (reference counts, no allocation).

use crate::actors::notification_center::{NotificationSubscribe, NotificationUnsubscribe};
use crate::actors::presence_registry::Touch;
use crate::actors::room_supervisor::AdmissionTicket;
use crate::actors::session::handle::SessionHandle;
use crate::auth::{AuthError, AuthenticatedUser};
use crate::config::Settings;
use crate::db::models::StoredMessage;
use crate::domain::{RoomId, SessionId, UserId};
use crate::error::{AppError, EngineError};
use crate::protocol::ClientRequest;
use crate::rate::RateClass;

use super::{Engine, Resume, SessionStart};

/// What a client session holds to reach the engine; cheap to clone.
#[derive(Clone)]
pub struct SessionPort {
    /// Private: a session reaches the engine only through the methods below.
    engine: Engine,
}

impl Engine {
    /// The narrow handle a new client session is given (see [`SessionPort`]).
    pub fn session_port(&self) -> SessionPort {
        SessionPort {
            engine: self.clone(),
        }
    }
}

impl SessionPort {
    /// The server's settings (timers, limits, outbox bounds, Socket.IO parameters).
    pub fn settings(&self) -> &Settings {
        &self.engine.settings
    }

    /// This node's id in cluster mode (session ids are shown as `<node>:<n>`); `None` alone.
    pub fn node_id(&self) -> Option<&str> {
        self.engine.cluster.node_id()
    }

    /// Verifies a token presented in band (the Socket.IO `CONNECT`).
    pub fn verify_token(&self, token: &str) -> Result<AuthenticatedUser, AuthError> {
        self.engine.keys.verify(token)
    }

    /// Verifies a fresh token for the same user (the `auth` request): [`Engine::refresh_auth`].
    pub fn refresh_auth(
        &self,
        current: &AuthenticatedUser,
        token: &str,
    ) -> Result<AuthenticatedUser, AppError> {
        self.engine.refresh_auth(current, token)
    }

    /// Takes one token of `class` from the buckets `user`'s sessions share; false when empty.
    pub fn check_user_class(&self, user: &UserId, class: RateClass) -> bool {
        self.engine.gate.check_user_class(user, class)
    }

    /// Admits one more session of `user` from `ip` (Socket.IO `CONNECT`): [`Engine::admit`].
    pub async fn admit(
        &self,
        user: &UserId,
        ip: Option<std::net::IpAddr>,
    ) -> Result<AdmissionTicket, EngineError> {
        self.engine.admit(user, ip).await
    }

    /// Registers the session everywhere and plans its replay: [`Engine::open_session`].
    pub async fn open_session(
        &self,
        handle: SessionHandle,
        resume: Resume,
    ) -> Result<SessionStart, EngineError> {
        self.engine.open_session(handle, resume).await
    }

    /// Carries out a client request and answers the ack's data: [`Engine::execute`].
    pub async fn execute(
        &self,
        handle: SessionHandle,
        admin: bool,
        request: ClientRequest,
    ) -> Result<serde_json::Value, EngineError> {
        self.engine.execute(handle, admin, request).await
    }

    /// One page of a room's stream after `after`: [`Engine::replay_page`].
    pub async fn replay_page(
        &self,
        room: RoomId,
        after: i64,
    ) -> Result<(Vec<StoredMessage>, bool), EngineError> {
        self.engine.replay_page(room, after).await
    }

    /// Reports client activity to the presence registry (auto-away, last-seen).
    pub fn touch(&self, session: SessionId, user: &UserId) {
        // do_send: our own actor's mailbox is unbounded, and no answer is awaited.
        self.engine.presence.do_send(Touch {
            session,
            user: user.clone(),
        });
    }

    /// Unregisters a closed session everywhere (idempotent): [`Engine::close_session`].
    pub fn close_session(&self, session: SessionId, user: &UserId) {
        self.engine.close_session(session, user)
    }

    /// Subscribes a notification socket to its user's notifications.
    pub fn subscribe_notifications(&self, handle: SessionHandle) {
        // do_send: our own actor's mailbox is unbounded, and no answer is awaited.
        self.engine
            .notifications
            .do_send(NotificationSubscribe { handle });
    }

    /// Unsubscribes a closed notification socket (idempotent).
    pub fn unsubscribe_notifications(&self, session: SessionId, user: &UserId) {
        self.engine.notifications.do_send(NotificationUnsubscribe {
            session,
            user: user.clone(),
        });
    }

    /// The user's unread notification count: [`Engine::notification_unread`].
    pub async fn notification_unread(&self, user: &UserId) -> Result<i64, EngineError> {
        self.engine.notification_unread(user).await
    }

    /// Marks one notification (all with `None`) read; answers the new unread count.
    pub async fn mark_notifications_read(
        &self,
        user: &UserId,
        id: Option<String>,
    ) -> Result<i64, EngineError> {
        self.engine.mark_notifications_read(user, id).await
    }
}
