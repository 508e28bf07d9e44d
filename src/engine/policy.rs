//! Authorization rules: who may see whose presence (room co-members, admins, or everyone
//! with open watching).

use super::{persist, Engine};
use crate::domain::UserId;
use crate::error::EngineError;

impl Engine {
    /// Refuses (with `forbidden`) when `viewer` may not see the presence of one of `users`.
    pub async fn check_may_see(
        &self,
        viewer: &UserId,
        admin: bool,
        users: &[UserId],
    ) -> Result<(), EngineError> {
        if admin || self.settings.open_watch {
            return Ok(());
        }
        let others: Vec<UserId> = users.iter().filter(|u| *u != viewer).cloned().collect();
        if others.is_empty() {
            return Ok(());
        }
        let q = crate::actors::database::FindCoMembers {
            user: viewer.clone(),
            others: others.clone(),
        };
        let shared: std::collections::HashSet<UserId> = persist(self.store.reader.send(q).await)?
            .into_iter()
            .collect();
        let denied: Vec<&str> = others
            .iter()
            .filter(|u| !shared.contains(*u))
            .map(|u| u.as_str())
            .collect();
        if denied.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Forbidden(format!(
                "you share no room with {}; presence is visible to room co-members only",
                denied.join(", ")
            )))
        }
    }
}
