//! Presence over REST: one user's presence, and the admin listing of everyone online.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::auth::AuthenticatedUser;
use crate::domain::UserId;
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

/// `GET /v1/presence/{user}`: the presence object others see.
pub async fn get_one(
    _auth: AuthenticatedUser,
    engine: web::Data<Engine>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let user = UserId::parse(&path)?;
    let mut list = engine.presence_of(vec![user]).await?;
    let view = list
        .pop()
        .ok_or_else(|| AppError::new(ErrorCode::Internal, "presence lookup returned nothing"))?;
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /v1/admin/presence` (admin): everyone online with status and session count.
pub async fn admin_list(
    auth: AuthenticatedUser,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, AppError> {
    auth.require_admin()?;
    let users = engine.list_online().await?;
    Ok(HttpResponse::Ok().json(json!({"users": users, "count": users.len()})))
}
