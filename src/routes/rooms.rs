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

#[derive(Deserialize)]
pub struct CreateRoomBody {
    name: String,
}

/// `POST /v1/rooms` `{"name"}`: a private room owned by the caller.
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

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/rooms?cursor=&limit=`: my rooms with last seq and my unread count.
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

/// `POST /v1/rooms/{room}/members/{user}` (room owner or admin).
pub async fn add_member(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (room, user) = room_and_user(&path)?;
    let added = engine
        .change_member(room.clone(), user.clone(), caller(&auth), true)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"room": room, "user": user, "added": added})))
}

/// `DELETE /v1/rooms/{room}/members/{user}` (room owner, admin, or the member themself).
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

#[derive(Deserialize)]
pub struct SystemMessageBody {
    body: serde_json::Value,
    priority: Option<String>,
    client_msg_id: Option<String>,
}

/// `POST /v1/rooms/{room}/messages` (service or admin role): a `system` message from an app
/// backend, stored and delivered like any message; 201 with the ack (200 and
/// `"duplicate": true` for a retry with the same `client_msg_id`).
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

#[derive(Deserialize)]
pub struct MessagesQuery {
    before_seq: Option<i64>,
    after_seq: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/rooms/{room}/messages?before_seq=&after_seq=&limit=`: oldest first; `next_cursor`
/// is the `before_seq` of the previous (older) page, or the `after_seq` of the next page when
/// paging forwards.
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
    })))
}

/// `GET /v1/rooms/{room}/messages/{message_id}/status`: each recipient's state (`sent`,
/// `delivered`, `read`), from the members' watermarks.
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
