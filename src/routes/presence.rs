//! `GET /v1/presence/{user}`: the presence object others see of one user.

use actix_web::{web, HttpResponse};

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
