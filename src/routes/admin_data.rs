//! Admin REST for backends and data rights (issue 19): API keys (`/v1/admin/api-keys`), the
//! audit log (`/v1/admin/audit`), and a user's data export and erasure
//! (`/v1/admin/users/{user}/export`, `DELETE /v1/admin/users/{user}`). Admins only.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::notifications::notification_json;
use super::openapi::ErrorBody;
use crate::auth::AuthenticatedUser;
use crate::domain::{rfc3339, UserId};
use crate::engine::Engine;
use crate::error::AppError;
use crate::protocol;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewApiKey {
    /// What the key is for (1-100 bytes), shown in the list.
    name: String,
    /// `service` (the default) and/or `admin`.
    roles: Option<Vec<String>>,
}

/// `POST /v1/admin/api-keys` `{"name", "roles"?}`: a new key for a backend, shown once.
#[utoipa::path(
    post,
    path = "/v1/admin/api-keys",
    tag = "admin",
    request_body = NewApiKey,
    responses(
        (status = 201, description = "`{id, name, roles, created_by, created_at, revoked_at: null, key}`: `key` is shown only here.", body = Object),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 422, description = "Bad name or roles (invalid_data).", body = ErrorBody),
        (status = 429, description = "1,000 keys exist already (limit_exceeded).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create_api_key(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    body: web::Json<NewApiKey>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let body = body.into_inner();
    let roles = body.roles.unwrap_or_else(|| vec!["service".into()]);
    let (stored, key) = engine
        .create_api_key(&auth.user_id, body.name, roles)
        .await?;
    let mut v = key_json(&stored);
    v["key"] = json!(key);
    Ok(HttpResponse::Created().json(v))
}

fn key_json(k: &crate::db::models::StoredApiKey) -> serde_json::Value {
    json!({
        "id": k.id,
        "name": k.name,
        "roles": k.roles,
        "user": crate::engine::api_key_user(&k.id),
        "created_by": k.created_by,
        "created_at": rfc3339(k.created_at),
        "revoked_at": k.revoked_at.map(rfc3339),
    })
}

/// `GET /v1/admin/api-keys`: every key, oldest first, without secrets.
#[utoipa::path(
    get,
    path = "/v1/admin/api-keys",
    tag = "admin",
    responses(
        (status = 200, description = "`{api_keys: [{id, name, roles, user, created_by, created_at, revoked_at}]}`.", body = Object),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_api_keys(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let keys = engine.api_keys().await?;
    let list: Vec<_> = keys.iter().map(key_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "api_keys": list })))
}

/// `DELETE /v1/admin/api-keys/{id}`: revokes a key (at once, on every node).
#[utoipa::path(
    delete,
    path = "/v1/admin/api-keys/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The key's id.")),
    responses(
        (status = 200, description = "`{id, revoked}`: false when unknown or revoked already.", body = Object),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_api_key(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let id = path.into_inner();
    let revoked = engine.revoke_api_key(&auth.user_id, id.clone()).await?;
    Ok(HttpResponse::Ok().json(json!({"id": id, "revoked": revoked})))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The `next_cursor` of the previous page.
    before: Option<String>,
    /// Page size, 1-500 (default 100).
    limit: Option<i64>,
}

/// `GET /v1/admin/audit?before=&limit=`: the audit log, newest first.
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    params(AuditQuery),
    responses(
        (status = 200, description = "`{entries: [{id, action, actor, subject, detail, created_at}], next_cursor}`.", body = Object),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn audit(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let entries = engine.audit_log(q.before.clone(), limit).await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id.clone()))
        .flatten();
    let list: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "action": e.action,
                "actor": e.actor,
                "subject": e.subject,
                "detail": serde_json::from_str::<serde_json::Value>(&e.detail).unwrap_or(json!(null)),
                "created_at": rfc3339(e.created_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"entries": list, "next_cursor": next})))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The `messages_next_cursor` of the previous export page.
    messages_after: Option<String>,
    /// Messages per page, 1-10,000 (default 10,000).
    limit: Option<i64>,
}

/// `GET /v1/admin/users/{user}/export`: everything stored about a user, as JSON.
#[utoipa::path(
    get,
    path = "/v1/admin/users/{user}/export",
    tag = "admin",
    params(("user" = String, Path, description = "User id."), ExportQuery),
    responses(
        (status = 200, description = "`{user, exported_at, presence, preferences, memberships, device_positions, notifications, reactions, blocks, messages, messages_next_cursor}`.", body = Object),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 422, description = "Bad user id (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn export_user(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let user = UserId::parse(&path)?;
    let limit = q.limit.unwrap_or(crate::engine::MAX_EXPORT_MESSAGES);
    let rows = engine
        .export_user(&auth.user_id, user.clone(), q.messages_after.clone(), limit)
        .await?;
    let next = rows
        .messages_more
        .then(|| rows.messages.last().map(|m| m.id.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "user": user,
        "exported_at": rfc3339(crate::domain::now_millis()),
        "presence": rows.presence.as_ref().map(|p| json!({
            "status": p.status,
            "custom_message": p.custom_message,
            "custom_expires_at": p.custom_expires_at.map(rfc3339),
            "last_seen": p.last_seen.map(rfc3339),
            "updated_at": rfc3339(p.updated_at),
        })),
        "preferences": rows.preferences.as_deref().and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()),
        "memberships": rows.memberships.iter().map(|(room, role, joined, delivered, read)| json!({
            "room": room, "role": role, "joined_at": rfc3339(*joined),
            "delivered_seq": delivered, "read_seq": read,
        })).collect::<Vec<_>>(),
        "device_positions": rows.device_positions.iter().map(|(device, room, seq, at)| json!({
            "device_id": device, "room": room, "seq": seq, "updated_at": rfc3339(*at),
        })).collect::<Vec<_>>(),
        "notifications": rows.notifications.iter().map(notification_json).collect::<Vec<_>>(),
        "reactions": rows.reactions.iter().map(|(room, seq, emoji, at)| json!({
            "room": room, "seq": seq, "emoji": emoji, "created_at": rfc3339(*at),
        })).collect::<Vec<_>>(),
        "blocks": rows.blocks.iter().map(|(u, at)| json!({"user": u, "created_at": rfc3339(*at)})).collect::<Vec<_>>(),
        "messages": protocol::message_objects(&rows.messages),
        "messages_next_cursor": next,
    })))
}

/// `DELETE /v1/admin/users/{user}`: erases a user (sessions closed, rooms left, messages
/// tombstoned, the rest deleted). Audited.
#[utoipa::path(
    delete,
    path = "/v1/admin/users/{user}",
    tag = "admin",
    params(("user" = String, Path, description = "User id.")),
    responses(
        (status = 200, description = "`{user, erased: {messages, memberships, reactions, notifications}}`.", body = Object),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 422, description = "Bad user id (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn erase_user(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let user = UserId::parse(&path)?;
    let erased = engine.erase_user(&auth.user_id, user.clone()).await?;
    Ok(HttpResponse::Ok().json(json!({"user": user, "erased": erased})))
}
