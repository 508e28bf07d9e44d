//! Presence operations: a user's chosen status, watching and unwatching users, and presence
//! lookups (who may watch whom is decided in `policy`).

use serde_json::Value;

use super::Engine;
use crate::actors::presence_registry::{GetPresence, SetStatus, Unwatch, Watch};
use crate::actors::session::handle::SessionHandle;
use crate::domain::{ChosenStatus, CustomMessage, SessionId, UserId};
use crate::error::EngineError;
use crate::protocol::PresenceView;

impl Engine {
    pub async fn set_status(
        &self,
        user: &UserId,
        status: ChosenStatus,
        custom_message: Option<CustomMessage>,
        custom_expires_at: Option<i64>,
        metadata: Option<Value>,
    ) -> Result<(), EngineError> {
        Ok(self
            .presence
            .send(SetStatus {
                user: user.clone(),
                status,
                custom_message,
                custom_expires_at,
                metadata,
            })
            .await?)
    }

    /// `watch`: only users who share a room with the watcher, unless open watching is
    /// configured or the watcher is an admin.
    pub async fn watch(
        &self,
        handle: SessionHandle,
        admin: bool,
        users: Vec<UserId>,
    ) -> Result<Vec<PresenceView>, EngineError> {
        self.check_may_see(&handle.user, admin, &users).await?;
        // A user who blocked the watcher is not watched and shows as "no information".
        let order = users.clone();
        let (users, hidden) = self.without_blockers(&handle.user, admin, users).await?;
        let views = self.presence.send(Watch { handle, users }).await??;
        Ok(super::consent::mask_hidden(order, views, &hidden))
    }

    pub async fn unwatch(&self, session: SessionId, users: Vec<UserId>) -> Result<(), EngineError> {
        Ok(self.presence.send(Unwatch { session, users }).await?)
    }

    pub async fn presence_of(&self, users: Vec<UserId>) -> Result<Vec<PresenceView>, EngineError> {
        self.presence.send(GetPresence { users }).await?
    }
}
