//! Rooms and history over REST: create a private room, list mine, add and remove members,
//! read a room's messages by seq cursor, post a system message (app backends).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::actors::room::Caller;
use crate::auth::AuthenticatedUser;
use crate::domain::{RoomId, UserId};
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};
use crate::protocol::{self, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT};

use super::openapi::ErrorBody;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateRoomBody {
    /// 1..=128 bytes after trimming.
    name: String,
}

/// `POST /v1/rooms` `{"name"}`: a private room owned by the caller.
#[utoipa::path(
    post,
    path = "/v1/rooms",
    operation_id = "create_room",
    tag = "rooms",
    request_body = CreateRoomBody,
    responses(
        (status = 201, description = "Created: `{room, name, kind: \"private\", role: \"owner\"}`.", body = Object),
        (status = 400, description = "Malformed JSON (invalid_json).", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB (too_large).", body = ErrorBody),
        (status = 422, description = "Missing name or not 1..=128 bytes (invalid_data).", body = ErrorBody),
        (status = 429, description = "The caller's HERALD_MAX_ROOMS_PER_USER is reached (limit_exceeded).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    body: web::Json<CreateRoomBody>,
) -> Result<HttpResponse, AppError> {
    let name = body.into_inner().name.trim().to_owned();
    if name.is_empty() || name.len() > 128 {
        return Err(AppError::new(
            ErrorCode::InvalidData,
            "name must be 1..=128 bytes",
        ));
    }
    let room = engine.create_room(&auth.user_id, name.clone()).await?;
    Ok(HttpResponse::Created()
        .json(json!({"room": room, "name": name, "kind": "private", "role": "owner"})))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, clamped to 1..=500 (default 100).
    limit: Option<i64>,
}

/// `GET /v1/rooms?cursor=&limit=`: my rooms with last seq and my unread count.
#[utoipa::path(
    get,
    path = "/v1/rooms",
    operation_id = "list_rooms",
    tag = "rooms",
    params(ListQuery),
    responses(
        (status = 200, description = "`{rooms: [...], next_cursor}`: my rooms with watermarks and unread counts.", body = Object),
        (status = 422, description = "Ill-typed query value (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let rooms = engine
        .user_rooms(&auth.user_id, q.cursor.clone(), limit)
        .await?;
    let next = if rooms.len() as i64 == limit {
        rooms.last().map(|r| r.room.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({"rooms": rooms, "next_cursor": next})))
}

fn caller(auth: &AuthenticatedUser) -> Caller {
    Caller {
        user: auth.user_id.clone(),
        admin: auth.is_admin(),
    }
}

fn room_and_user(path: &(String, String)) -> Result<(RoomId, UserId), AppError> {
    Ok((RoomId::parse(&path.0)?, UserId::parse(&path.1)?))
}

/// `POST /v1/rooms/{room}/members/{user}`: an admin or a service adds the member at once;
/// the room's owner invites them (issue 18: they become a member by accepting).
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/members/{user}",
    tag = "rooms",
    params(
        ("room" = String, Path, description = "Room id."),
        ("user" = String, Path, description = "User id."),
    ),
    responses(
        (status = 200, description = "`{room, user, added, invited[, invitation]}`: admin or service: `added` (false if already a member); the owner: `invited: true` and the `invitation` (`invited` and `added` false if already a member).", body = Object),
        (status = 403, description = "Not the room owner or an admin; not a private room; or the user blocked the owner (forbidden).", body = ErrorBody),
        (status = 404, description = "No such room (not_found).", body = ErrorBody),
        (status = 429, description = "HERALD_MAX_ROOM_MEMBERS, the user's HERALD_MAX_ROOMS_PER_USER, or a pending-invitation cap reached (limit_exceeded).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn add_member(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (room, user) = room_and_user(&path)?;
    let privileged = auth.is_admin() || auth.is_service();
    let answer = engine.invite(&auth.user_id, privileged, room, user).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `DELETE /v1/rooms/{room}/members/{user}` (room owner, admin, or the member themself).
#[utoipa::path(
    delete,
    path = "/v1/rooms/{room}/members/{user}",
    tag = "rooms",
    params(
        ("room" = String, Path, description = "Room id."),
        ("user" = String, Path, description = "User id."),
    ),
    responses(
        (status = 200, description = "`{room, user, removed}`; `removed` is false if not a member.", body = Object),
        (status = 403, description = "Not the room owner, an admin or the member (forbidden).", body = ErrorBody),
        (status = 404, description = "No such room (not_found).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn remove_member(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (room, user) = room_and_user(&path)?;
    let removed = engine
        .change_member(room.clone(), user.clone(), caller(&auth), false)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"room": room, "user": user, "removed": removed})))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SystemMessageBody {
    /// The message body, a JSON object.
    #[schema(value_type = Object)]
    body: serde_json::Value,
    /// `low`, `normal` (default), `high` or `urgent`.
    priority: Option<String>,
    /// At most `MAX_CLIENT_MSG_ID` bytes; a retry with the same id is answered 200 with `"duplicate": true`.
    client_msg_id: Option<String>,
}

/// `POST /v1/rooms/{room}/messages` (service or admin role): a `system` message from an app
/// backend, stored and delivered like any message; 201 with the ack (200 and
/// `"duplicate": true` for a retry with the same `client_msg_id`).
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/messages",
    tag = "rooms",
    params(("room" = String, Path, description = "Room id.")),
    request_body = SystemMessageBody,
    responses(
        (status = 201, description = "Stored and delivered: the ack (`id`, `seq`, ...).", body = Object),
        (status = 200, description = "A retry with the same `client_msg_id`: the first ack with `\"duplicate\": true`.", body = Object),
        (status = 403, description = "Neither service nor admin role (forbidden).", body = ErrorBody),
        (status = 404, description = "No such room (not_found).", body = ErrorBody),
        (status = 409, description = "A storage constraint refused the write (conflict).", body = ErrorBody),
        (status = 422, description = "Body not as described, bad priority or client_msg_id (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn post_system_message(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    // The role first: a caller without it learns nothing, whatever the body.
    auth.require_service_or_admin()?;
    let room = RoomId::parse(&path)?;
    let req: SystemMessageBody = serde_json::from_slice(&body).map_err(|e| {
        AppError::new(
            ErrorCode::InvalidData,
            format!("expected {{\"body\": {{...}}, \"priority\"?, \"client_msg_id\"?}}: {e}"),
        )
    })?;
    let priority = match req.priority.as_deref() {
        None => crate::domain::Priority::default(),
        Some(p) => crate::domain::Priority::parse(p).ok_or_else(|| {
            AppError::new(
                ErrorCode::InvalidData,
                "priority must be low, normal, high or urgent",
            )
        })?,
    };
    if req
        .client_msg_id
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > protocol::MAX_CLIENT_MSG_ID)
    {
        return Err(AppError::new(
            ErrorCode::InvalidData,
            format!(
                "client_msg_id must be 1..={} bytes",
                protocol::MAX_CLIENT_MSG_ID
            ),
        ));
    }
    let ack = engine
        .post_system_message(&auth.user_id, room, &req.body, priority, req.client_msg_id)
        .await?;
    let status = if ack.duplicate {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::CREATED
    };
    Ok(HttpResponse::build(status).json(ack))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Messages older than this seq (paging backwards; the default is the newest).
    before_seq: Option<i64>,
    /// Messages newer than this seq (paging forwards).
    after_seq: Option<i64>,
    /// Page size, at least 1, capped at the history maximum.
    limit: Option<i64>,
}

/// `GET /v1/rooms/{room}/messages?before_seq=&after_seq=&limit=`: oldest first; `next_cursor`
/// is the `before_seq` of the previous (older) page, or the `after_seq` of the next page when
/// paging forwards.
#[utoipa::path(
    get,
    path = "/v1/rooms/{room}/messages",
    operation_id = "room_messages",
    tag = "rooms",
    params(("room" = String, Path, description = "Room id."), MessagesQuery),
    responses(
        (status = 200, description = "`{room, messages: [...], has_more, next_cursor}`, oldest first.", body = Object),
        (status = 403, description = "Not a member or an admin (forbidden).", body = ErrorBody),
        (status = 404, description = "No such room (not_found).", body = ErrorBody),
        (status = 422, description = "Bad limit or ill-typed query value (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn messages(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
    q: web::Query<MessagesQuery>,
) -> Result<HttpResponse, AppError> {
    let room = RoomId::parse(&path)?;
    let limit = q.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    if limit < 1 {
        return Err(AppError::new(ErrorCode::InvalidData, "limit must be >= 1"));
    }
    let limit = limit.min(HISTORY_MAX_LIMIT);
    // Read first: retention only moves it forward, so the page is never older than it says.
    let retained_from = engine.retained_from(&room).await?;
    let (messages, has_more) = engine
        .history(
            &auth.user_id,
            auth.is_admin(),
            room.clone(),
            q.before_seq,
            q.after_seq,
            limit,
        )
        .await?;
    let next_cursor = match (has_more, q.after_seq) {
        (false, _) => None,
        (true, Some(_)) => messages.last().map(|m| m.seq),
        (true, None) => messages.first().map(|m| m.seq),
    };
    Ok(HttpResponse::Ok().json(json!({
        "room": room,
        "messages": protocol::message_objects(&messages),
        "has_more": has_more,
        "next_cursor": next_cursor,
        "retained_from": retained_from,
    })))
}

/// `GET /v1/rooms/{room}/messages/{message_id}/status`: each recipient's state (`sent`,
/// `delivered`, `read`), from the members' watermarks.
#[utoipa::path(
    get,
    path = "/v1/rooms/{room}/messages/{message_id}/status",
    tag = "rooms",
    params(
        ("room" = String, Path, description = "Room id."),
        ("message_id" = String, Path, description = "Message id (1..=64 bytes)."),
    ),
    responses(
        (status = 200, description = "Each recipient's state: `sent`, `delivered` or `read`.", body = Object),
        (status = 403, description = "Not a member or an admin (forbidden).", body = ErrorBody),
        (status = 404, description = "No such room or message (not_found).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn message_status(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let room = RoomId::parse(&path.0)?;
    if path.1.is_empty() || path.1.len() > 64 {
        return Err(AppError::new(ErrorCode::InvalidData, "invalid message id"));
    }
    let status = engine
        .message_status(&auth.user_id, auth.is_admin(), room, path.1.clone())
        .await?;
    Ok(HttpResponse::Ok().json(status))
}
