//! Notifications over REST (the HTTP fallback of the sockets): list, unread count, mark read,
//! delete, preferences; and `POST /v1/admin/notifications` for app backends and admins.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::AuthenticatedUser;
use crate::db::models::StoredNotification;
use crate::domain::{rfc3339, Priority, UserId};
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};
use crate::notification::{NotificationAction, NotificationSource, NotificationSpec, Preferences};

use super::openapi::ErrorBody;

/// The full notification object of the REST API.
pub fn notification_json(n: &StoredNotification) -> Value {
    json!({
        "id": n.id,
        "notification_type": n.notification_type,
        "title": n.title,
        "message": n.message,
        "image_url": n.image_url,
        "actions": n.actions,
        "data": n.data,
        "priority": n.priority,
        "is_read": n.read_at.is_some(),
        "created_at": rfc3339(n.created_at),
        "expires_at": n.expires_at.map(rfc3339),
        "delivered_at": n.delivered_at.map(rfc3339),
        "read_at": n.read_at.map(rfc3339),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, clamped to 1..=100 (default 50).
    limit: Option<i64>,
    /// Only unread notifications.
    unread: Option<bool>,
    /// Only this `notification_type`.
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn parse_cursor(c: &str) -> Result<(i64, String), AppError> {
    let bad = || AppError::new(ErrorCode::InvalidData, "invalid cursor");
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

/// `GET /v1/notifications?cursor=&limit=&unread=true&type=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/notifications",
    operation_id = "list_notifications",
    tag = "notifications",
    params(ListQuery),
    responses(
        (status = 200, description = "`{notifications: [...], next_cursor}`, newest first.", body = Object),
        (status = 422, description = "Bad cursor or ill-typed query value (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 100);
    let before = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let rows = engine
        .list_notifications(
            &auth.user_id,
            q.unread.unwrap_or(false),
            q.kind.clone(),
            before,
            limit,
        )
        .await?;
    let next = if rows.len() as i64 == limit {
        rows.last().map(|n| format!("{}.{}", n.created_at, n.id))
    } else {
        None
    };
    let items: Vec<Value> = rows.iter().map(notification_json).collect();
    Ok(HttpResponse::Ok().json(json!({"notifications": items, "next_cursor": next})))
}

/// `GET /v1/notifications/unread_count` → `{"unread_count": N}`.
#[utoipa::path(
    get,
    path = "/v1/notifications/unread_count",
    tag = "notifications",
    responses(
        (status = 200, description = "`{unread_count}`.", body = Object),
    ),
    security(("bearer" = [])),
)]
pub async fn unread_count(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    let n = engine.notification_unread(&auth.user_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "unread_count": n })))
}

fn notification_id(id: &str) -> Result<String, AppError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(AppError::new(
            ErrorCode::InvalidData,
            "invalid notification id",
        ));
    }
    Ok(id.to_owned())
}

/// `POST /v1/notifications/{id}/read` → `{"unread_count": N}` (idempotent).
#[utoipa::path(
    post,
    path = "/v1/notifications/{id}/read",
    tag = "notifications",
    params(("id" = String, Path, description = "Notification id.")),
    responses(
        (status = 200, description = "`{unread_count}` after the change.", body = Object),
        (status = 404, description = "The caller has no such notification (not_found).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn mark_read(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let n = engine
        .mark_notifications_read(&auth.user_id, Some(notification_id(&path)?))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "unread_count": n })))
}

/// `POST /v1/notifications/read_all` → `{"unread_count": 0}`.
#[utoipa::path(
    post,
    path = "/v1/notifications/read_all",
    tag = "notifications",
    responses(
        (status = 200, description = "`{unread_count}`.", body = Object),
    ),
    security(("bearer" = [])),
)]
pub async fn mark_all_read(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    let n = engine.mark_notifications_read(&auth.user_id, None).await?;
    Ok(HttpResponse::Ok().json(json!({ "unread_count": n })))
}

/// `DELETE /v1/notifications/{id}`: 204, or 404 if the caller has no such notification.
#[utoipa::path(
    delete,
    path = "/v1/notifications/{id}",
    operation_id = "delete_notification",
    tag = "notifications",
    params(("id" = String, Path, description = "Notification id.")),
    responses(
        (status = 204, description = "Deleted; no body."),
        (status = 404, description = "The caller has no such notification (not_found).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    if engine
        .delete_notification(&auth.user_id, notification_id(&path)?)
        .await?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(AppError::new(ErrorCode::NotFound, "no such notification"))
    }
}

/// `GET /v1/notifications/preferences`.
#[utoipa::path(
    get,
    path = "/v1/notifications/preferences",
    tag = "notifications",
    responses(
        (status = 200, description = "The preferences (the defaults if never set).", body = Preferences),
    ),
    security(("bearer" = [])),
)]
pub async fn get_preferences(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(engine.preferences(&auth.user_id).await?))
}

/// `PUT /v1/notifications/preferences` (the whole document).
#[utoipa::path(
    put,
    path = "/v1/notifications/preferences",
    tag = "notifications",
    request_body = Preferences,
    responses(
        (status = 200, description = "The stored preferences.", body = Preferences),
        (status = 400, description = "Malformed JSON (invalid_json).", body = ErrorBody),
        (status = 422, description = "Unknown field, bad HH:MM, time zone or dnd_until, too many mutes (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn put_preferences(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    body: web::Json<Preferences>,
) -> Result<HttpResponse, AppError> {
    engine.set_preferences(&auth.user_id, &body).await?;
    Ok(HttpResponse::Ok().json(body.into_inner()))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SendBody {
    /// Recipients: 1..=10,000 user ids.
    users: Vec<String>,
    notification_type: String,
    title: String,
    #[serde(default)]
    message: String,
    image_url: Option<String>,
    #[serde(default)]
    actions: Vec<NotificationAction>,
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Value,
    priority: Option<Priority>,
    /// RFC 3339.
    expires_at: Option<String>,
    /// 1..=128 bytes: a retry with the same key creates nothing new.
    idempotency_key: Option<String>,
}

/// Most recipients of one send.
pub const MAX_RECIPIENTS: usize = 10_000;

/// `POST /v1/admin/notifications` (roles `admin` or `service`): one request, fan-out inside.
#[utoipa::path(
    post,
    path = "/v1/admin/notifications",
    operation_id = "send_notification",
    tag = "admin",
    request_body = SendBody,
    responses(
        (status = 201, description = "`{results: [...], created}`: one result per recipient.", body = Object),
        (status = 400, description = "Malformed JSON (invalid_json).", body = ErrorBody),
        (status = 403, description = "Neither admin nor service role (forbidden).", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB (too_large).", body = ErrorBody),
        (status = 422, description = "Bad users, expires_at or idempotency_key, missing field (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn send(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    body: web::Json<SendBody>,
) -> Result<HttpResponse, AppError> {
    auth.require_service_or_admin()?;
    let b = body.into_inner();
    if b.users.is_empty() || b.users.len() > MAX_RECIPIENTS {
        return Err(AppError::new(
            ErrorCode::InvalidData,
            format!("users must list 1..={MAX_RECIPIENTS} ids"),
        ));
    }
    let mut users = b
        .users
        .iter()
        .map(|u| UserId::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    users.sort();
    users.dedup();
    let expires_at = match b.expires_at.as_deref() {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| AppError::new(ErrorCode::InvalidData, "expires_at must be RFC 3339"))?
                .timestamp_millis(),
        ),
    };
    if b.idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 128)
    {
        return Err(AppError::new(
            ErrorCode::InvalidData,
            "idempotency_key must be 1..=128 bytes",
        ));
    }
    let spec = NotificationSpec {
        notification_type: b.notification_type,
        title: b.title,
        message: b.message,
        image_url: b.image_url,
        actions: b.actions,
        data: b.data,
        priority: b.priority.unwrap_or_default(),
        expires_at,
    };
    let results = engine
        .notify(
            users,
            spec,
            b.idempotency_key,
            NotificationSource::default(),
        )
        .await?;
    let created = results.iter().filter(|r| r.created).count();
    Ok(HttpResponse::Created().json(json!({"results": results, "created": created})))
}
