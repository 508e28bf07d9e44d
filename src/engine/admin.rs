//! Backend integration owned by admins (issue 19 points 3-4): long-lived API keys (created,
//! listed, revoked; only their SHA-256 stored; checked on REST requests), a user's data
//! export and erasure, and the audit log every one of them writes.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{persist, Engine};
use crate::actors::commit_queue::Commit;
use crate::actors::database::ReadAdmin;
use crate::actors::room::Caller;
use crate::auth::AuthenticatedUser;
use crate::db::models::{
    AdminAnswer, AdminOutcome, AdminRead, AdminWrite, ApiKeyRow, AuditEntry, ErasedCounts,
    StoredApiKey, UserExportRows, WriteOp, WriteOutcome,
};
use crate::domain::UserId;
use crate::error::EngineError;

/// Every key starts with this, so a leaked one is easy to find in code and logs.
pub const API_KEY_PREFIX: &str = "hk_";
/// Roles an API key may carry.
pub const API_KEY_ROLES: &[&str] = &["service", "admin"];
/// Most messages one export page holds.
pub const MAX_EXPORT_MESSAGES: i64 = 10_000;

/// The user id requests made with key `id` act as (`apikey.<id>`).
pub fn api_key_user(id: &str) -> String {
    format!("apikey.{id}")
}

/// SHA-256 of the whole key, hex. Keys carry 244 random bits, so a plain digest is enough: a
/// slow password hash protects guessable secrets, and these are not guessable.
fn digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Constant-time comparison of two digests.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The id inside `hk_<id>_<secret>`, if the text has that shape.
pub fn api_key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(id)
}

impl Engine {
    async fn admin_write(&self, w: AdminWrite) -> Result<AdminOutcome, EngineError> {
        let outcomes = persist(
            self.store
                .commits
                .send(Commit {
                    ops: vec![WriteOp::Admin(Box::new(w))],
                })
                .await,
        )?;
        match outcomes.into_iter().next() {
            Some(WriteOutcome::Admin(o)) => Ok(o),
            other => Err(EngineError::Internal(format!(
                "an admin write answered {other:?}"
            ))),
        }
    }

    async fn admin_read(&self, query: AdminRead) -> Result<AdminAnswer, EngineError> {
        persist(self.store.reader.send(ReadAdmin { query }).await)
    }

    /// Creates an API key; answers it and the key itself, which is never shown again.
    pub async fn create_api_key(
        &self,
        by: &UserId,
        name: String,
        roles: Vec<String>,
    ) -> Result<(StoredApiKey, String), EngineError> {
        if name.is_empty() || name.len() > 100 {
            return Err(EngineError::Invalid("name must be 1..=100 bytes".into()));
        }
        if roles.is_empty() || roles.iter().any(|r| !API_KEY_ROLES.contains(&r.as_str())) {
            return Err(EngineError::Invalid(format!(
                "roles must be a non-empty list of {API_KEY_ROLES:?}"
            )));
        }
        let max = self.settings.limits.max_api_keys;
        if self.api_keys().await?.len() >= max {
            return Err(EngineError::LimitExceeded(format!(
                "this deployment already has {max} API keys, the limit (HERALD_MAX_API_KEYS)"
            )));
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let key = format!("{API_KEY_PREFIX}{id}_{secret}");
        let row = ApiKeyRow {
            id: id.clone(),
            name: name.clone(),
            key_hash: digest(&key),
            roles: json!(roles).to_string(),
            created_by: by.to_string(),
            created_at: crate::domain::now_millis(),
            revoked_at: None,
        };
        let audit = AuditEntry::new(
            "api_key.create",
            by.as_str(),
            &id,
            json!({"name": name, "roles": roles}),
        );
        self.admin_write(AdminWrite::CreateApiKey {
            row: row.clone(),
            audit,
        })
        .await?;
        let stored = StoredApiKey {
            id,
            name,
            key_hash: String::new(),
            roles,
            created_by: row.created_by,
            created_at: row.created_at,
            revoked_at: None,
        };
        Ok((stored, key))
    }

    /// Every API key (revoked ones included), oldest first, without secrets.
    pub async fn api_keys(&self) -> Result<Vec<StoredApiKey>, EngineError> {
        match self.admin_read(AdminRead::ApiKeys).await? {
            AdminAnswer::ApiKeys(v) => Ok(v),
            other => Err(EngineError::Internal(format!("unexpected {other:?}"))),
        }
    }

    /// Revokes key `id`: requests with it are refused from now on, on every node (each
    /// request reads the key's row). False when it was unknown or revoked already.
    pub async fn revoke_api_key(&self, by: &UserId, id: String) -> Result<bool, EngineError> {
        let audit = AuditEntry::new("api_key.revoke", by.as_str(), &id, json!({}));
        match self
            .admin_write(AdminWrite::RevokeApiKey {
                id,
                at: crate::domain::now_millis(),
                audit,
            })
            .await?
        {
            AdminOutcome::Done(changed) => Ok(changed),
            other => Err(EngineError::Internal(format!("unexpected {other:?}"))),
        }
    }

    /// The identity of an API key, or `None` when it is unknown, wrong or revoked.
    pub async fn verify_api_key(
        &self,
        key: &str,
    ) -> Result<Option<AuthenticatedUser>, EngineError> {
        let Some(id) = api_key_id(key) else {
            return Ok(None);
        };
        let stored = match self
            .admin_read(AdminRead::ApiKey { id: id.to_owned() })
            .await?
        {
            AdminAnswer::ApiKey(k) => k,
            other => return Err(EngineError::Internal(format!("unexpected {other:?}"))),
        };
        let Some(k) = stored.filter(|k| k.revoked_at.is_none() && same(&k.key_hash, &digest(key)))
        else {
            return Ok(None);
        };
        let user = UserId::parse(&api_key_user(&k.id))
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(Some(AuthenticatedUser {
            user_id: user,
            name: Some(k.name),
            roles: k.roles,
            // Keys do not expire; they are revoked.
            expires_at: i64::MAX,
        }))
    }

    /// The audit log, newest first.
    pub async fn audit_log(
        &self,
        before: Option<String>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, EngineError> {
        match self.admin_read(AdminRead::Audit { before, limit }).await? {
            AdminAnswer::Audit(v) => Ok(v),
            other => Err(EngineError::Internal(format!("unexpected {other:?}"))),
        }
    }

    /// Everything stored about `user` (their messages a page at a time), audited.
    pub async fn export_user(
        &self,
        by: &UserId,
        user: UserId,
        messages_after: Option<String>,
        messages_limit: i64,
    ) -> Result<UserExportRows, EngineError> {
        let rows = match self
            .admin_read(AdminRead::Export {
                user: user.clone(),
                messages_after: messages_after.clone(),
                messages_limit: messages_limit.clamp(1, MAX_EXPORT_MESSAGES),
            })
            .await?
        {
            AdminAnswer::Export(rows) => *rows,
            other => return Err(EngineError::Internal(format!("unexpected {other:?}"))),
        };
        let audit = AuditEntry::new(
            "user.export",
            by.as_str(),
            user.as_str(),
            json!({"messages": rows.messages.len(), "messages_after": messages_after}),
        );
        self.admin_write(AdminWrite::Audit { audit }).await?;
        Ok(rows)
    }

    /// Erases `user`: their sessions are closed everywhere, they leave every room (through
    /// the rooms, so every node's state follows), their messages become tombstones and the
    /// rest of their data goes. Audited.
    pub async fn erase_user(&self, by: &UserId, user: UserId) -> Result<ErasedCounts, EngineError> {
        self.disconnect_user(
            user.clone(),
            crate::protocol::close_code::ADMIN_DISCONNECT,
            "account erased".into(),
        )
        .await?;
        let admin = Caller {
            user: by.clone(),
            admin: true,
        };
        // Pages of their rooms until none is left; a page where no room let them go ends it
        // (the erasure below deletes any membership left in the database).
        loop {
            let rooms = self.user_rooms(&user, None, 500).await?;
            let mut left = false;
            for r in rooms {
                left |= self
                    .change_member(r.room, user.clone(), admin.clone(), false)
                    .await?;
            }
            if !left {
                break;
            }
        }
        // Sessions closing record last-seen through the same write queue: wait until the
        // user is offline everywhere (bounded), so the erasure is written after it.
        for _ in 0..50 {
            // The admin view: invisible users count too.
            let online = self
                .admin_presence(user.clone())
                .await
                .is_ok_and(|p| p.is_some_and(|p| p.devices > 0));
            if !online {
                break;
            }
            actix::clock::sleep(std::time::Duration::from_millis(100)).await;
        }
        let audit = AuditEntry::new("user.erase", by.as_str(), user.as_str(), json!({}));
        match self
            .admin_write(AdminWrite::EraseUser {
                user,
                by: by.clone(),
                at: crate::domain::now_millis(),
                audit,
            })
            .await?
        {
            AdminOutcome::Erased(c) => Ok(c),
            other => Err(EngineError::Internal(format!("unexpected {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_name_an_id() {
        let key = format!("hk_0123456789ab_{}", "f".repeat(64));
        assert_eq!(api_key_id(&key), Some("0123456789ab"));
        assert_eq!(api_key_id("hk_0123456789ab_short"), None);
        assert_eq!(api_key_id("eyJhbGciOi.jwt.token"), None);
        assert_eq!(
            api_key_id(&format!("hk_zzzzzzzzzzzz_{}", "f".repeat(64))),
            None
        );
        assert!(same(&digest(&key), &digest(&key)));
        assert!(!same(&digest(&key), &digest("hk_other")));
    }
}
