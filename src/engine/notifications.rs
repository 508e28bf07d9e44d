//! Notification operations: notify, mark read, delete, list, unread count and preferences.

use super::{persist, Engine};
use crate::actors::notification_center::{DeleteNotification, MarkRead, Notified, Notify};
use crate::domain::UserId;
use crate::error::EngineError;

/// Notifications.
impl Engine {
    /// Creates a notification for each user (preferences applied).
    pub async fn notify(
        &self,
        users: Vec<UserId>,
        spec: crate::notification::NotificationSpec,
        idempotency_key: Option<String>,
        source: crate::notification::NotificationSource,
    ) -> Result<Vec<Notified>, EngineError> {
        spec.validate()?;
        self.notifications
            .send(Notify {
                users,
                spec,
                idempotency_key,
                source,
                outbox: None,
            })
            .await?
    }

    /// Marks one notification (or all with `None`) read; answers the new unread count.
    pub async fn mark_notifications_read(
        &self,
        user: &UserId,
        id: Option<String>,
    ) -> Result<i64, EngineError> {
        self.notifications
            .send(MarkRead {
                user: user.clone(),
                id,
            })
            .await?
    }

    pub async fn delete_notification(
        &self,
        user: &UserId,
        id: String,
    ) -> Result<bool, EngineError> {
        self.notifications
            .send(DeleteNotification {
                user: user.clone(),
                id,
            })
            .await?
    }

    pub async fn notification_unread(&self, user: &UserId) -> Result<i64, EngineError> {
        let q = crate::actors::database::CountUnreadNotifications {
            users: vec![user.clone()],
            now: self.settings.clock.now(),
        };
        Ok(persist(self.store.reader.send(q).await)?
            .first()
            .map(|c| c.1)
            .unwrap_or(0))
    }

    pub async fn list_notifications(
        &self,
        user: &UserId,
        unread_only: bool,
        kind: Option<String>,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<crate::db::models::StoredNotification>, EngineError> {
        let q = crate::actors::database::ListNotifications {
            user: user.clone(),
            unread_only,
            kind,
            before,
            limit,
            now: self.settings.clock.now(),
        };
        persist(self.store.reader.send(q).await)
    }

    pub async fn preferences(
        &self,
        user: &UserId,
    ) -> Result<crate::notification::Preferences, EngineError> {
        let q = crate::actors::database::LoadPreferences {
            users: vec![user.clone()],
        };
        let stored = persist(self.store.reader.send(q).await)?;
        // None stored: the defaults.
        Ok(stored
            .into_iter()
            .next()
            .map(|(_, p)| p)
            .unwrap_or_default())
    }

    pub async fn set_preferences(
        &self,
        user: &UserId,
        prefs: &crate::notification::Preferences,
    ) -> Result<(), EngineError> {
        prefs.validate()?;
        let doc = serde_json::to_string(prefs).map_err(|e| EngineError::Internal(e.to_string()))?;
        let op = crate::db::models::WriteOp::SavePreferences {
            user: user.clone(),
            prefs: doc,
            at: self.settings.clock.now(),
        };
        persist(
            self.store
                .commits
                .send(crate::actors::commit_queue::Commit { ops: vec![op] })
                .await,
        )?;
        Ok(())
    }
}
