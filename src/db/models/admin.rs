//! Backend credentials and the audit log as stored: API keys (only a SHA-256 of each key is
//! kept) and what admins did to users' data and credentials.

use diesel::prelude::*;
use serde::Serialize;

use super::bad_column;
use crate::db::schema::{api_keys, audit_log};
use crate::domain::Millis;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub key_hash: String,
    pub roles: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// An API key as the admin routes show it (never the key, never its hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredApiKey {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub key_hash: String,
    pub roles: Vec<String>,
    pub created_by: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

impl TryFrom<ApiKeyRow> for StoredApiKey {
    type Error = diesel::result::Error;
    fn try_from(r: ApiKeyRow) -> Result<Self, Self::Error> {
        let roles: Vec<String> = serde_json::from_str(&r.roles)
            .map_err(|_| bad_column(&format!("api key {}", r.id), "roles", &r.roles))?;
        Ok(StoredApiKey {
            id: r.id,
            name: r.name,
            key_hash: r.key_hash,
            roles,
            created_by: r.created_by,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, PartialEq)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: String,
    /// `user.export`, `user.erase`, `api_key.create`, `api_key.revoke`.
    pub action: String,
    /// Who did it (the admin's user id).
    pub actor: String,
    /// Whom or what it concerned (a user id, an API key id).
    pub subject: String,
    /// JSON: what was done (counts, names).
    pub detail: String,
    pub created_at: i64,
}

impl AuditEntry {
    pub fn new(action: &str, actor: &str, subject: &str, detail: serde_json::Value) -> Self {
        AuditEntry {
            id: uuid::Uuid::now_v7().simple().to_string(),
            action: action.to_owned(),
            actor: actor.to_owned(),
            subject: subject.to_owned(),
            detail: detail.to_string(),
            created_at: crate::domain::now_millis(),
        }
    }
}

/// Admin writes (`WriteOp::Admin`); each carries the audit entry written with it.
#[derive(Debug, Clone)]
pub enum AdminWrite {
    CreateApiKey {
        row: ApiKeyRow,
        audit: AuditEntry,
    },
    /// Answers `Done(false)` for an unknown or already revoked key.
    RevokeApiKey {
        id: String,
        at: Millis,
        audit: AuditEntry,
    },
    /// Only the audit entry (an export, which reads).
    Audit {
        audit: AuditEntry,
    },
    /// Tombstones the user's messages (logged as deletes in their rooms' change logs, `by`
    /// the admin) and deletes their memberships, reactions, notifications, preferences,
    /// device positions, blocks, invitations and presence record.
    EraseUser {
        user: crate::domain::UserId,
        by: crate::domain::UserId,
        at: Millis,
        audit: AuditEntry,
    },
}

impl AdminWrite {
    pub fn audit(&self) -> &AuditEntry {
        match self {
            AdminWrite::CreateApiKey { audit, .. }
            | AdminWrite::RevokeApiKey { audit, .. }
            | AdminWrite::Audit { audit }
            | AdminWrite::EraseUser { audit, .. } => audit,
        }
    }
}

/// What an [`AdminWrite`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminOutcome {
    Done(bool),
    Erased(ErasedCounts),
}

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErasedCounts {
    pub messages: i64,
    pub memberships: i64,
    pub reactions: i64,
    pub notifications: i64,
}

/// Admin reads (on the reader threads).
#[derive(Debug, Clone)]
pub enum AdminRead {
    ApiKey {
        id: String,
    },
    ApiKeys,
    /// Newest first, before the entry id `before`.
    Audit {
        before: Option<String>,
        limit: i64,
    },
    /// Everything stored about `user`; their messages by id, after `messages_after`.
    Export {
        user: crate::domain::UserId,
        messages_after: Option<String>,
        messages_limit: i64,
    },
}

#[derive(Debug)]
pub enum AdminAnswer {
    ApiKey(Option<StoredApiKey>),
    ApiKeys(Vec<StoredApiKey>),
    Audit(Vec<AuditEntry>),
    Export(Box<UserExportRows>),
}

/// A user's stored data, as read for an export.
#[derive(Debug)]
pub struct UserExportRows {
    pub messages: Vec<super::StoredMessage>,
    /// More messages follow the last one.
    pub messages_more: bool,
    /// (room, role, joined_at, delivered_seq, read_seq)
    pub memberships: Vec<(String, String, i64, i64, i64)>,
    /// (device, room, seq, updated_at)
    pub device_positions: Vec<(String, String, i64, i64)>,
    pub notifications: Vec<super::StoredNotification>,
    /// The preferences document (JSON), if any.
    pub preferences: Option<String>,
    pub presence: Option<super::UserRecord>,
    /// (room, seq, emoji, created_at)
    pub reactions: Vec<(String, i64, String, i64)>,
    /// (blocked user, created_at)
    pub blocks: Vec<(String, i64)>,
}
