//! Request execution: the dispatch of a client request (any session kind) to the engine's
//! operations, and the `auth` token refresh.

use serde_json::{json, Value};

use super::Engine;
use crate::actors::session::handle::SessionHandle;
use crate::error::EngineError;
use crate::protocol;

/// Requests of any kind of session.
impl Engine {
    /// Carries out a client request for the session `handle` and answers the ack's data.
    /// `ping` and `auth` concern the connection itself and are handled by the session.
    pub async fn execute(
        &self,
        handle: SessionHandle,
        admin: bool,
        request: crate::protocol::ClientRequest,
    ) -> Result<Value, EngineError> {
        use crate::protocol::ClientRequest as R;
        let user = handle.user.clone();
        let session = handle.id;
        match request {
            R::Join { room, since_seq } => self.join(&user, session, room, since_seq).await,
            R::Leave { room } => self.leave(&user, room).await.map(|_| json!({})),
            R::Send(req) => {
                let ack = self.send_message(&user, Some(session), req).await?;
                serde_json::to_value(ack).map_err(|e| EngineError::Internal(e.to_string()))
            }
            R::Typing { room, state } => self
                .typing(&user, session, room, state)
                .await
                .map(|_| json!({})),
            R::Receipt { room, seq, status } => self
                .device_receipt(
                    &user,
                    Some(session),
                    handle.device.clone(),
                    room,
                    seq,
                    status,
                )
                .await
                .map(|_| json!({})),
            R::Presence {
                status,
                custom_message,
                custom_expires_at,
                metadata,
            } => self
                .set_status(&user, status, custom_message, custom_expires_at, metadata)
                .await
                .map(|_| json!({})),
            R::History {
                room,
                before_seq,
                after_seq,
                limit,
            } => {
                // Read first: retention only moves it forward, so the page is never older
                // than what the ack says.
                let retained_from = self.retained_from(&room).await?;
                let (messages, has_more) = self
                    .history(&user, false, room.clone(), before_seq, after_seq, limit)
                    .await?;
                Ok(json!({
                    "messages": protocol::message_objects(&messages),
                    "has_more": has_more,
                    "retained_from": retained_from,
                }))
            }
            R::Members { room, after, limit } => self.members(&user, room, after, limit).await,
            R::Watch { users } => self
                .watch(handle, admin, users)
                .await
                .map(|p| json!({ "presence": p })),
            R::Unwatch { users } => self
                .unwatch(session, users)
                .await
                .map(|_| json!({ "presence": [] })),
            R::Edit { room, seq, body } => {
                let change = crate::db::models::MessageChange::Edit {
                    body,
                    max_text_bytes: self.settings.max_text_bytes,
                };
                self.change_message(on_socket(&user), room, seq, change)
                    .await
            }
            R::Delete { room, seq } => {
                let change = crate::db::models::MessageChange::Delete;
                self.change_message(on_socket(&user), room, seq, change)
                    .await
            }
            R::React {
                room,
                seq,
                emoji,
                on,
            } => {
                let change = crate::db::models::MessageChange::React { emoji, on };
                self.change_message(on_socket(&user), room, seq, change)
                    .await
            }
            R::Changes { room, after, limit } => {
                self.room_changes(on_socket(&user), room, after, limit)
                    .await
            }
            R::Event { room, name, data } => self
                .custom_event(&user, room, name, data)
                .await
                .map(|_| json!({})),
            R::Consent(c) => self.execute_consent(&handle, admin, c).await,
            R::Ping => Ok(json!({})),
            R::Auth { .. } => Err(EngineError::Internal(
                "auth is handled by the session".into(),
            )),
        }
    }

    /// Verifies a fresh token for the same user (the `auth` request).
    pub fn refresh_auth(
        &self,
        current: &crate::auth::AuthenticatedUser,
        token: &str,
    ) -> Result<crate::auth::AuthenticatedUser, crate::error::AppError> {
        let fresh = self.keys.verify(token)?;
        if fresh.user_id != current.user_id {
            return Err(crate::error::AppError::new(
                crate::error::ErrorCode::Forbidden,
                "the new token names another user; reconnect to switch users",
            ));
        }
        Ok(fresh)
    }
}

/// On sockets an admin is a plain user (docs/protocol.md): moderation goes through REST.
fn on_socket(user: &crate::domain::UserId) -> crate::actors::room::Caller {
    crate::actors::room::Caller {
        user: user.clone(),
        admin: false,
    }
}
