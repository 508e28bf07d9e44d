//! REST for edits and deletes of stored messages, and a room's change log:
//! `PATCH`/`DELETE /v1/rooms/{room}/messages/{seq}`, `GET /v1/rooms/{room}/changes`.
//! The room decides who may (src/actors/room/changes.rs); these handlers only parse.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::openapi::ErrorBody;
use crate::actors::room::Caller;
use crate::auth::AuthenticatedUser;
use crate::db::models::MessageChange;
use crate::domain::RoomId;
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};
use crate::protocol::HISTORY_MAX_LIMIT;

/// Over REST the `admin` and `service` roles moderate: they delete any message of any room.
fn moderator_or_user(auth: &AuthenticatedUser) -> Caller {
    Caller {
        user: auth.user_id.clone(),
        admin: auth.is_admin() || auth.is_service(),
    }
}

fn room_and_seq(path: &(String, i64)) -> Result<(RoomId, i64), AppError> {
    if path.1 < 1 {
        return Err(AppError::new(ErrorCode::InvalidData, "seq must be >= 1"));
    }
    Ok((RoomId::parse(&path.0)?, path.1))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EditBody {
    /// The new body, valid for the message's kind (`{"text": "..."}` for text).
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

/// `PATCH /v1/rooms/{room}/messages/{seq}` `{"body"}`: the sender replaces the body of their
/// message within `HERALD_EDIT_WINDOW_SECS`.
#[utoipa::path(
    patch,
    path = "/v1/rooms/{room}/messages/{seq}",
    operation_id = "edit_message",
    tag = "rooms",
    params(("room" = String, Path, description = "Room id."), ("seq" = i64, Path, description = "The message's seq.")),
    request_body = EditBody,
    responses(
        (status = 200, description = "The `message_edited` event's data `{room, seq, body, edited_at, by, change_seq}`, or `{room, seq, unchanged: true}` when the body was already so.", body = Object),
        (status = 400, description = "Malformed JSON (invalid_json).", body = ErrorBody),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not a member, not the sender, or past the edit window (forbidden).", body = ErrorBody),
        (status = 404, description = "No such message (not_found).", body = ErrorBody),
        (status = 409, description = "The message was deleted (conflict).", body = ErrorBody),
        (status = 413, description = "body.text too long (too_large).", body = ErrorBody),
        (status = 422, description = "A body that does not fit the message's kind (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn edit(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<(String, i64)>,
    body: web::Json<EditBody>,
) -> Result<HttpResponse, AppError> {
    let (room, seq) = room_and_seq(&path)?;
    let max_text_bytes = engine.settings.max_text_bytes;
    let body = body.into_inner().body;
    if body
        .get("text")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|t| t.len() > max_text_bytes)
    {
        return Err(AppError::new(
            ErrorCode::TooLarge,
            format!("body.text is longer than {max_text_bytes} bytes"),
        ));
    }
    // Only the sender edits, whatever their roles.
    let by = Caller {
        user: auth.user_id.clone(),
        admin: false,
    };
    let change = MessageChange::Edit {
        body,
        max_text_bytes,
    };
    let data = engine.change_message(by, room, seq, change).await?;
    Ok(HttpResponse::Ok().json(data))
}

/// `DELETE /v1/rooms/{room}/messages/{seq}`: leaves a tombstone (the seq stays, the body
/// becomes `null`). The sender within the edit window, the room's owner, an admin or a
/// service may.
#[utoipa::path(
    delete,
    path = "/v1/rooms/{room}/messages/{seq}",
    operation_id = "delete_message",
    tag = "rooms",
    params(("room" = String, Path, description = "Room id."), ("seq" = i64, Path, description = "The message's seq.")),
    responses(
        (status = 200, description = "The `message_deleted` event's data `{room, seq, deleted_at, by, change_seq}`, or `{room, seq, unchanged: true}` when it was deleted already.", body = Object),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not a member, not allowed, or past the edit window (forbidden).", body = ErrorBody),
        (status = 404, description = "No such room or message (not_found).", body = ErrorBody),
        (status = 422, description = "Bad seq (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, AppError> {
    let (room, seq) = room_and_seq(&path)?;
    let data = engine
        .change_message(moderator_or_user(&auth), room, seq, MessageChange::Delete)
        .await?;
    Ok(HttpResponse::Ok().json(data))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// The last change seq you hold (default 0: from the start).
    after_change_seq: Option<i64>,
    /// Page size, at least 1, at most 100 (the default).
    limit: Option<i64>,
}

/// `GET /v1/rooms/{room}/changes?after_change_seq=&limit=`: the room's change log (edits,
/// deletes, reactions), oldest first. Members, admins and services.
#[utoipa::path(
    get,
    path = "/v1/rooms/{room}/changes",
    operation_id = "room_changes",
    tag = "rooms",
    params(("room" = String, Path, description = "Room id."), ChangesQuery),
    responses(
        (status = 200, description = "`{changes: [{type, data}], has_more}`: each entry as its live event (`message_edited`, `message_deleted`, `reaction`).", body = Object),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Not a member (forbidden).", body = ErrorBody),
        (status = 404, description = "No such room (not_found).", body = ErrorBody),
        (status = 422, description = "Bad after_change_seq or limit (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
    q: web::Query<ChangesQuery>,
) -> Result<HttpResponse, AppError> {
    let room = RoomId::parse(&path)?;
    let after = q.after_change_seq.unwrap_or(0);
    let limit = q.limit.unwrap_or(HISTORY_MAX_LIMIT);
    if after < 0 || limit < 1 {
        return Err(AppError::new(
            ErrorCode::InvalidData,
            "after_change_seq must be >= 0 and limit >= 1",
        ));
    }
    let data = engine
        .room_changes(
            moderator_or_user(&auth),
            room,
            after,
            limit.min(HISTORY_MAX_LIMIT),
        )
        .await?;
    Ok(HttpResponse::Ok().json(data))
}
