//! `GET /v1/presence/{user}`: the presence object others see of one user — for room
//! co-members (or anyone with open watching), admins and service backends.

use actix_web::{web, HttpResponse};

use crate::auth::AuthenticatedUser;
use crate::domain::UserId;
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

use super::openapi::ErrorBody;

/// `GET /v1/presence/{user}`.
#[utoipa::path(
    get,
    path = "/v1/presence/{user}",
    operation_id = "get_presence",
    tag = "presence",
    params(("user" = String, Path, description = "User id.")),
    responses(
        (status = 200, description = "The presence object (docs/protocol.md, Presence object).", body = Object),
        (status = 403, description = "No shared room with the user, and neither admin nor service (forbidden).", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_one(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let user = UserId::parse(&path)?;
    let privileged = auth.is_admin() || auth.is_service();
    engine
        .check_may_see(&auth.user_id, privileged, std::slice::from_ref(&user))
        .await?;
    // A user who blocked the caller shows as "no information" (issue 18).
    let mut list = engine
        .presence_seen_by(&auth.user_id, privileged, vec![user])
        .await?;
    let view = list
        .pop()
        .ok_or_else(|| AppError::new(ErrorCode::Internal, "presence lookup returned nothing"))?;
    Ok(HttpResponse::Ok().json(view))
}
