//! Admin routes of the webhook outbox (docs/webhooks.md, docs/rest.md): list events (failed
//! and dead ones above all) and re-drive them. Thin: the engine reads and writes.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::openapi::ErrorBody;
use crate::auth::AuthenticatedUser;
use crate::db::models::{WebhookEventRow, STATE_DEAD, STATE_PENDING};
use crate::domain::rfc3339;
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `dead` (default), `pending`, `failed` (pending with at least one failed attempt) or
    /// `all`.
    state: Option<String>,
    /// `next_cursor` of the previous page (an event id).
    cursor: Option<String>,
    /// Page size, clamped to 1..=500 (default 100).
    limit: Option<i64>,
}

/// An event as the admin sees it.
fn event_json(e: &WebhookEventRow) -> serde_json::Value {
    json!({
        "id": e.id,
        "type": e.event_type,
        "state": e.state,
        "created_at": rfc3339(e.created_at),
        "attempts": e.attempts,
        "last_attempt_at": e.last_attempt_at.map(rfc3339),
        "next_attempt_at": rfc3339(e.next_attempt_at),
        "last_error": e.last_error,
        "delivered_to": e.delivered().collect::<Vec<_>>(),
        "data": serde_json::from_str::<serde_json::Value>(&e.payload).unwrap_or_default(),
    })
}

/// `GET /v1/admin/webhooks/events?state=dead|pending|failed|all&cursor=&limit=`: oldest
/// first.
#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/events",
    tag = "admin",
    params(EventsQuery),
    responses(
        (status = 200, description = "`{events: [...], next_cursor}`, oldest first.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 422, description = "Bad state (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_events(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let (state, failed_only) = match q.state.as_deref().unwrap_or(STATE_DEAD) {
        "dead" => (Some(STATE_DEAD.to_owned()), false),
        "pending" => (Some(STATE_PENDING.to_owned()), false),
        "failed" => (Some(STATE_PENDING.to_owned()), true),
        "all" => (None, false),
        other => {
            return Err(AppError::new(
                ErrorCode::InvalidData,
                format!("state must be dead, pending, failed or all, not {other:?}"),
            ))
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let events = engine
        .webhook_events(state, q.cursor.clone(), limit)
        .await?;
    let next = if events.len() as i64 == limit {
        events.last().map(|e| e.id.clone())
    } else {
        None
    };
    let shown: Vec<_> = events
        .iter()
        .filter(|e| !failed_only || e.attempts > 0)
        .map(event_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"events": shown, "next_cursor": next})))
}

/// `POST /v1/admin/webhooks/events/{id}/redrive`: the event is pending again, due now, with a
/// new give-up window.
#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/events/{id}/redrive",
    tag = "admin",
    params(("id" = String, Path, description = "Event id.")),
    responses(
        (status = 200, description = "`{redriven: 1}`.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 404, description = "No such event (not_found).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn redrive_one(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let n = engine.redrive_webhooks(Some(id.into_inner())).await?;
    if n == 0 {
        return Err(AppError::new(ErrorCode::NotFound, "no such webhook event"));
    }
    Ok(HttpResponse::Ok().json(json!({"redriven": n})))
}

/// `POST /v1/admin/webhooks/redrive`: every dead event is pending again.
#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/redrive",
    tag = "admin",
    responses(
        (status = 200, description = "`{redriven: N}`.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn redrive_all(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let n = engine.redrive_webhooks(None).await?;
    Ok(HttpResponse::Ok().json(json!({"redriven": n})))
}
