//! Admin and operations REST (role `admin`): presence listings, one user's sessions, a room's
//! presence, the rooms with online members, disconnecting a user, server stats; plus
//! `GET /metrics` (admin or service).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::actors::presence_registry::ListOnline;
use crate::auth::AuthenticatedUser;
use crate::domain::{ChosenStatus, CustomMessage, RoomId, StatusError, UserId};
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};
use crate::protocol::close_code;

use super::openapi::ErrorBody;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresenceQuery {
    /// Only users with this status: `online`, `away`, `busy` or `invisible`.
    status: Option<String>,
    /// Only members of this room.
    room: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, clamped to 1..=1000 (default 100).
    limit: Option<usize>,
}

/// `GET /v1/admin/presence?status=&room=&cursor=&limit=`: online users by id.
#[utoipa::path(
    get,
    path = "/v1/admin/presence",
    tag = "admin",
    params(PresenceQuery),
    responses(
        (status = 200, description = "`{users: [...], count, next_cursor}`: online users by id.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 422, description = "Bad status, room or ill-typed query value (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn presence_list(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    q: web::Query<PresenceQuery>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let status = q
        .status
        .as_deref()
        .map(ChosenStatus::parse)
        .transpose()
        .map_err(refused_status)?;
    let room = q.room.as_deref().map(RoomId::parse).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let users = engine
        .list_online(ListOnline {
            status,
            room,
            after: q.cursor.clone(),
            limit,
        })
        .await?;
    let next_cursor = if users.len() == limit {
        users.last().map(|u| u.user.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok()
        .json(json!({"users": users, "count": users.len(), "next_cursor": next_cursor})))
}

/// `GET /v1/admin/presence/{user}`: presence with every session, or the offline presence.
#[utoipa::path(
    get,
    path = "/v1/admin/presence/{user}",
    tag = "admin",
    params(("user" = String, Path, description = "User id.")),
    responses(
        (status = 200, description = "The presence with every session and room, or the offline presence.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn presence_user(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let user = UserId::parse(&path)?;
    match engine.admin_presence(user.clone()).await? {
        Some(p) => Ok(HttpResponse::Ok().json(p)),
        None => {
            let view = engine.presence_of(vec![user]).await?.pop();
            Ok(HttpResponse::Ok().json(json!({
                "user": path.as_str(),
                "status": "offline",
                "devices": 0,
                "last_seen": view.and_then(|v| v.last_seen),
                "sessions": [],
                "rooms": [],
            })))
        }
    }
}

/// `GET /v1/admin/rooms/{room}/presence`: the room's online members with their presence.
#[utoipa::path(
    get,
    path = "/v1/admin/rooms/{room}/presence",
    tag = "admin",
    params(("room" = String, Path, description = "Room id.")),
    responses(
        (status = 200, description = "`{room, members, last_seq, online: [{presence, sessions}]}`.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 404, description = "No such room (not_found).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn room_presence(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let room = RoomId::parse(&path)?;
    let online = engine.room_presence(room.clone()).await?;
    if !online.exists {
        return Err(AppError::new(
            ErrorCode::NotFound,
            format!("room {room} does not exist"),
        ));
    }
    let users: Vec<UserId> = online.online.iter().map(|(u, _)| u.clone()).collect();
    let views = engine.presence_of(users).await?;
    let online_list: Vec<_> = online
        .online
        .iter()
        .zip(views)
        .map(|((_, sessions), view)| json!({"presence": view, "sessions": sessions}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "room": room,
        "members": online.members,
        "last_seq": online.last_seq,
        "online": online_list,
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomsOnlineQuery {
    /// Most rooms listed, clamped to 1..=500 (default 100).
    limit: Option<usize>,
    /// Most members listed per room, clamped to 1..=100 (default 20); `online` still counts
    /// them all.
    members: Option<usize>,
}

/// `GET /v1/admin/rooms?limit=&members=`: rooms with connected members, the busiest first.
#[utoipa::path(
    get,
    path = "/v1/admin/rooms",
    tag = "admin",
    params(RoomsOnlineQuery),
    responses(
        (status = 200, description = "`{rooms: [{room, online, members: [{user, status, devices}]}], count, total}`: rooms with connected members, most members first.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 422, description = "Ill-typed query value (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn rooms_online(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    q: web::Query<RoomsOnlineQuery>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let members = q.members.unwrap_or(20).clamp(1, 100);
    let listing = engine.rooms_online(limit, members).await?;
    Ok(HttpResponse::Ok().json(json!({
        "rooms": listing.rooms,
        "count": listing.rooms.len(),
        "total": listing.total,
    })))
}

/// `POST /v1/admin/users/{user}/disconnect`: close every session with 4000; the user goes
/// offline at once (no grace period).
#[utoipa::path(
    post,
    path = "/v1/admin/users/{user}/disconnect",
    tag = "admin",
    params(("user" = String, Path, description = "User id.")),
    responses(
        (status = 200, description = "`{user, sessions_closed}`.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn disconnect_user(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let user = UserId::parse(&path)?;
    let n = engine
        .disconnect_user(
            user.clone(),
            close_code::ADMIN_DISCONNECT,
            "disconnected by an administrator".into(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"user": user, "sessions_closed": n})))
}

/// `GET /v1/admin/stats`.
#[utoipa::path(
    get,
    path = "/v1/admin/stats",
    tag = "admin",
    responses(
        (status = 200, description = "Server counters (docs/rest.md).", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn stats(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let mut stats = engine.stats().await?;
    stats["webhooks"] = engine.webhook_stats().await?;
    Ok(HttpResponse::Ok().json(stats))
}

/// `GET /metrics`: Prometheus text format, for an admin or service token (a scraper sends
/// it as `Authorization: Bearer`): the figures say how to hurt the server, so they are not
/// for the open internet.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Neither admin nor service role (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn metrics(auth: AuthenticatedUser) -> Result<HttpResponse, AppError> {
    auth.require_service_or_admin()?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::METRICS.render()))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SetPresenceBody {
    /// `online`, `away`, `busy` or `invisible`.
    status: String,
    /// Shown with the status; `null` or absent clears it.
    custom_message: Option<String>,
}

/// `PUT /v1/admin/presence/{user}` `{"status", "custom_message"}`: sets a user's status on all
/// their devices (kept for their next connection if they are offline).
#[utoipa::path(
    put,
    path = "/v1/admin/presence/{user}",
    tag = "admin",
    params(("user" = String, Path, description = "User id.")),
    request_body = SetPresenceBody,
    responses(
        (status = 200, description = "`{user, status, presence}`.", body = Object),
        (status = 400, description = "Malformed JSON (invalid_json).", body = ErrorBody),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 422, description = "Unknown status, custom_message too long, missing field (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn set_presence(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
    body: web::Json<SetPresenceBody>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let user = UserId::parse(&path)?;
    let status = ChosenStatus::parse(&body.status).map_err(refused_status)?;
    let custom_message = body
        .custom_message
        .as_deref()
        .map(CustomMessage::parse)
        .transpose()
        .map_err(refused_status)?;
    engine
        .set_status(&user, status, custom_message, None, None)
        .await?;
    let view = engine.presence_of(vec![user.clone()]).await?.pop();
    Ok(HttpResponse::Ok().json(json!({"user": user, "status": status, "presence": view})))
}

/// A refused status or custom message with the texts docs/rest.md documents for the admin
/// routes (shorter than the `presence` frame's); the rules are the domain types'.
fn refused_status(e: StatusError) -> AppError {
    let text = match e {
        StatusError::UnknownStatus(_) => "status must be online, away, busy or invisible",
        StatusError::CustomMessageTooLong => "custom_message is too long",
    };
    AppError::new(ErrorCode::InvalidData, text)
}
