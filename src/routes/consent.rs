//! Consent over REST (issue 18): invitations (list mine, accept, decline, revoke), backend
//! direct rooms, my block list, reporting a message, and the admin's reports. The invitation
//! itself is `POST /v1/rooms/{room}/members/{user}` (`rooms.rs`), as before for admins and
//! services; docs/rest.md "Invitations, blocks and reports".

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthenticatedUser;
use crate::domain::{RoomId, UserId};
use crate::engine::{report_ack, Engine};
use crate::error::{AppError, ErrorCode};

use super::openapi::ErrorBody;

/// `GET /v1/invitations`: my pending invitations, oldest first.
#[utoipa::path(
    get,
    path = "/v1/invitations",
    operation_id = "list_invitations",
    tag = "consent",
    responses(
        (status = 200, description = "`{invitations: [{room, room_name, from, to, created_at, expires_at}]}`, oldest first, unexpired only.", body = Object),
    ),
    security(("bearer" = [])),
)]
pub async fn list_invitations(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    let list = engine.pending_invitations(&auth.user_id).await?;
    let views: Vec<_> = list.iter().map(|i| i.view()).collect();
    Ok(HttpResponse::Ok().json(json!({ "invitations": views })))
}

/// `POST /v1/invitations/{room}/accept`: become a member of the room I was invited to.
#[utoipa::path(
    post,
    path = "/v1/invitations/{room}/accept",
    tag = "consent",
    params(("room" = String, Path, description = "Room id.")),
    responses(
        (status = 200, description = "`{room, accepted: true, added}`: I am a member now.", body = Object),
        (status = 404, description = "No pending (unexpired) invitation to that room (not_found).", body = ErrorBody),
        (status = 429, description = "HERALD_MAX_ROOM_MEMBERS or my HERALD_MAX_ROOMS_PER_USER reached; the invitation stays (limit_exceeded).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn accept(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let room = RoomId::parse(&path)?;
    Ok(HttpResponse::Ok().json(engine.accept_invitation(&auth.user_id, room).await?))
}

/// `POST /v1/invitations/{room}/decline`.
#[utoipa::path(
    post,
    path = "/v1/invitations/{room}/decline",
    tag = "consent",
    params(("room" = String, Path, description = "Room id.")),
    responses(
        (status = 200, description = "`{room, declined: true}`.", body = Object),
        (status = 404, description = "No pending invitation to that room (not_found).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn decline(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let room = RoomId::parse(&path)?;
    Ok(HttpResponse::Ok().json(engine.decline_invitation(&auth.user_id, room).await?))
}

/// `DELETE /v1/rooms/{room}/invitations/{user}`: the inviter (or an admin) revokes.
#[utoipa::path(
    delete,
    path = "/v1/rooms/{room}/invitations/{user}",
    tag = "consent",
    params(
        ("room" = String, Path, description = "Room id."),
        ("user" = String, Path, description = "The invitee."),
    ),
    responses(
        (status = 200, description = "`{room, user, revoked}`; `revoked` is false when no invitation of mine (any, for an admin) was pending.", body = Object),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (room, user) = (RoomId::parse(&path.0)?, UserId::parse(&path.1)?);
    let revoked = engine
        .revoke_invitation(&auth.user_id, auth.is_admin(), room.clone(), user.clone())
        .await?;
    Ok(HttpResponse::Ok().json(json!({"room": room, "user": user, "revoked": revoked})))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DirectRoomBody {
    /// The two users, in any order.
    users: Vec<String>,
}

/// `POST /v1/rooms/direct` (admin or service): the direct room of two users, with both
/// memberships; under `HERALD_DM_POLICY=nobody` the only way a direct room comes to be.
#[utoipa::path(
    post,
    path = "/v1/rooms/direct",
    tag = "consent",
    request_body = DirectRoomBody,
    responses(
        (status = 201, description = "`{room, created: true}`: created.", body = Object),
        (status = 200, description = "`{room, created: false}`: it existed with both members.", body = Object),
        (status = 403, description = "Neither admin nor service (forbidden).", body = ErrorBody),
        (status = 422, description = "Not two different valid user ids (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create_direct(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    auth.require_service_or_admin()?;
    let body: DirectRoomBody = serde_json::from_slice(&body).map_err(|e| {
        AppError::new(
            ErrorCode::InvalidData,
            format!("expected {{\"users\": [a, b]}}: {e}"),
        )
    })?;
    let [a, b] = body.users.as_slice() else {
        return Err(AppError::new(
            ErrorCode::InvalidData,
            "users must name exactly two users",
        ));
    };
    let (a, b) = (UserId::parse(a)?, UserId::parse(b)?);
    let (room, created) = engine.create_direct_room(&a, &b).await?;
    let status = if created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(json!({"room": room, "created": created})))
}

/// `GET /v1/me/blocks`: my block list, oldest first.
#[utoipa::path(
    get,
    path = "/v1/me/blocks",
    tag = "consent",
    responses(
        (status = 200, description = "`{blocks: [{user, created_at}], count, max}`.", body = Object),
    ),
    security(("bearer" = [])),
)]
pub async fn list_blocks(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    let blocks = engine.blocks(&auth.user_id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "count": blocks.len(),
        "max": engine.settings.consent.max_blocks,
        "blocks": blocks,
    })))
}

/// `PUT /v1/me/blocks/{user}`: block a user (idempotent).
#[utoipa::path(
    put,
    path = "/v1/me/blocks/{user}",
    tag = "consent",
    params(("user" = String, Path, description = "The user to block.")),
    responses(
        (status = 200, description = "`{user, blocked: true, added}`; `added` is false if already blocked.", body = Object),
        (status = 422, description = "Myself, or not a valid user id (invalid_data).", body = ErrorBody),
        (status = 429, description = "HERALD_MAX_BLOCKS reached (limit_exceeded).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn block(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let user = UserId::parse(&path)?;
    Ok(HttpResponse::Ok().json(engine.block(&auth.user_id, user).await?))
}

/// `DELETE /v1/me/blocks/{user}`: unblock (idempotent).
#[utoipa::path(
    delete,
    path = "/v1/me/blocks/{user}",
    tag = "consent",
    params(("user" = String, Path, description = "The user to unblock.")),
    responses(
        (status = 200, description = "`{user, blocked: false, removed}`; `removed` is false if not blocked.", body = Object),
    ),
    security(("bearer" = [])),
)]
pub async fn unblock(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let user = UserId::parse(&path)?;
    Ok(HttpResponse::Ok().json(engine.unblock(&auth.user_id, user).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ReportBody {
    /// 1..=HERALD_MAX_REPORT_REASON_BYTES bytes after trimming.
    reason: String,
}

/// `POST /v1/rooms/{room}/messages/{seq}/report`: report a message (members only; once per
/// reporter and message).
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/messages/{seq}/report",
    tag = "consent",
    params(
        ("room" = String, Path, description = "Room id."),
        ("seq" = i64, Path, description = "The message's seq."),
    ),
    request_body = ReportBody,
    responses(
        (status = 201, description = "`{report_id, room, seq, created: true}`.", body = Object),
        (status = 200, description = "I reported this message before: that report, `created: false`.", body = Object),
        (status = 403, description = "Not a member of the room (forbidden).", body = ErrorBody),
        (status = 404, description = "No such message (not_found).", body = ErrorBody),
        (status = 413, description = "Reason over HERALD_MAX_REPORT_REASON_BYTES (too_large).", body = ErrorBody),
        (status = 422, description = "Missing or empty reason, seq < 1 (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn report(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<(String, i64)>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let room = RoomId::parse(&path.0)?;
    let req: ReportBody = serde_json::from_slice(&body).map_err(|e| {
        AppError::new(
            ErrorCode::InvalidData,
            format!("expected {{\"reason\": \"...\"}}: {e}"),
        )
    })?;
    let (r, created) = engine
        .report(&auth.user_id, room, path.1, req.reason)
        .await?;
    let status = if created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(report_ack(&r, created)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// `open` (default), `resolved` or `all`.
    status: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, clamped to 1..=500 (default 100).
    limit: Option<i64>,
}

/// `GET /v1/admin/reports?status=open|resolved|all&cursor=&limit=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/admin/reports",
    tag = "admin",
    params(ReportsQuery),
    responses(
        (status = 200, description = "`{reports: [...], next_cursor}`, newest first.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 422, description = "Bad status or cursor (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_reports(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    q: web::Query<ReportsQuery>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let open = match q.status.as_deref().unwrap_or("open") {
        "open" => Some(true),
        "resolved" => Some(false),
        "all" => None,
        other => {
            return Err(AppError::new(
                ErrorCode::InvalidData,
                format!("status must be open, resolved or all, not {other:?}"),
            ))
        }
    };
    let before = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let reports = engine.list_reports(open, before, limit).await?;
    let next = if reports.len() as i64 == limit {
        reports.last().map(|r| format!("{}.{}", r.created_at, r.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({"reports": reports, "next_cursor": next})))
}

/// A reports cursor: `<created_at>.<id>` of the last report of the previous page.
fn parse_cursor(c: &str) -> Result<(i64, String), AppError> {
    let bad = || AppError::new(ErrorCode::InvalidData, "invalid cursor");
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
pub struct ResolveBody {
    /// A note on what was done, at most 1000 bytes.
    resolution: Option<String>,
}

/// `POST /v1/admin/reports/{id}/resolve` (admin): idempotent.
#[utoipa::path(
    post,
    path = "/v1/admin/reports/{id}/resolve",
    tag = "admin",
    params(("id" = String, Path, description = "Report id.")),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "`{report: {...}, changed}`; `changed` is false when it was resolved already.", body = Object),
        (status = 403, description = "Not an admin (forbidden).", body = ErrorBody),
        (status = 404, description = "No such report (not_found).", body = ErrorBody),
        (status = 422, description = "Resolution over 1000 bytes or not a string (invalid_data).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn resolve_report(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    if path.is_empty() || path.len() > 64 {
        return Err(AppError::new(ErrorCode::InvalidData, "invalid report id"));
    }
    // The body is optional: an empty one resolves without a note.
    let req: ResolveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ResolveBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AppError::new(
                ErrorCode::InvalidData,
                format!("expected {{\"resolution\"?: \"...\"}}: {e}"),
            )
        })?
    };
    if req.resolution.as_ref().is_some_and(|r| r.len() > 1000) {
        return Err(AppError::new(
            ErrorCode::InvalidData,
            "resolution must be at most 1000 bytes",
        ));
    }
    let (report, changed) = engine
        .resolve_report(&auth.user_id, path.into_inner(), req.resolution)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"report": report, "changed": changed})))
}
