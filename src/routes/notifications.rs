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

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<i64>,
    unread: Option<bool>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn parse_cursor(c: &str) -> Result<(i64, String), AppError> {
    let bad = || AppError::new(ErrorCode::InvalidData, "invalid cursor");
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

/// `GET /v1/notifications?cursor=&limit=&unread=true&type=`: newest first.
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
pub async fn mark_all_read(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    let n = engine.mark_notifications_read(&auth.user_id, None).await?;
    Ok(HttpResponse::Ok().json(json!({ "unread_count": n })))
}

/// `DELETE /v1/notifications/{id}`: 204, or 404 if the caller has no such notification.
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
pub async fn get_preferences(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(engine.preferences(&auth.user_id).await?))
}

/// `PUT /v1/notifications/preferences` (the whole document).
pub async fn put_preferences(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    body: web::Json<Preferences>,
) -> Result<HttpResponse, AppError> {
    engine.set_preferences(&auth.user_id, &body).await?;
    Ok(HttpResponse::Ok().json(body.into_inner()))
}

#[derive(Deserialize)]
pub struct SendBody {
    users: Vec<String>,
    notification_type: String,
    title: String,
    #[serde(default)]
    message: String,
    image_url: Option<String>,
    #[serde(default)]
    actions: Vec<NotificationAction>,
    #[serde(default)]
    data: Value,
    priority: Option<Priority>,
    expires_at: Option<String>,
    idempotency_key: Option<String>,
}

/// Most recipients of one send.
pub const MAX_RECIPIENTS: usize = 10_000;

/// `POST /v1/admin/notifications` (roles `admin` or `service`): one request, fan-out inside.
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
