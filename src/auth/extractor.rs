//! Where a request's token is read (the `Authorization` header; a `herald.bearer.` subprotocol
//! or `?token=` on WebSocket handshakes only) and the `AuthenticatedUser` extractor of REST routes.

use std::future::ready;

use futures_util::future::LocalBoxFuture;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use serde::Deserialize;

use super::{AuthError, AuthenticatedUser, JwtKeys};
use crate::error::{AppError, ErrorCode};
/// The token of an `Authorization: Bearer <JWT>` header, if the request has one.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

/// The WebSocket subprotocol a server answers when a browser offers its token as
/// [`BEARER_PROTOCOL_PREFIX`]`<JWT>` (browsers must get one of the offered protocols back).
pub const WS_PROTOCOL: &str = "herald.v1";

/// Prefix of the `Sec-WebSocket-Protocol` entry that carries a token: browsers cannot set
/// `Authorization` on an upgrade, and this keeps the token out of the URL (and so out of
/// access logs).
pub const BEARER_PROTOCOL_PREFIX: &str = "herald.bearer.";

/// The token of a WebSocket handshake: `Authorization: Bearer`, else a
/// `Sec-WebSocket-Protocol` entry `herald.bearer.<JWT>`, else the `token` query parameter.
/// REST must use [`bearer_token`].
pub fn token_from_request(req: &HttpRequest) -> Option<String> {
    bearer_token(req)
        .or_else(|| protocol_token(req))
        .or_else(|| {
            web::Query::<TokenQuery>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.into_inner().token)
        })
}

/// The token offered as a `herald.bearer.<JWT>` WebSocket subprotocol, if any.
fn protocol_token(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|h| h.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL_PREFIX))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn engine_keys(req: &HttpRequest) -> Result<&JwtKeys, AppError> {
    req.app_data::<web::Data<crate::engine::Engine>>()
        .map(|e| e.keys.as_ref())
        .ok_or_else(|| AppError::new(ErrorCode::Internal, "engine not configured"))
}

/// Verifies a REST request's token, taken only from the `Authorization` header: `?token=` is
/// refused (401) because query strings are logged by proxies and servers.
pub fn authenticate(req: &HttpRequest) -> Result<AuthenticatedUser, AppError> {
    let keys = engine_keys(req)?;
    let token = bearer_token(req).ok_or(AuthError::MissingHeader)?;
    Ok(keys.verify(&token)?)
}

/// Verifies a WebSocket handshake's token: the `Authorization` header or `?token=`.
pub fn authenticate_socket(req: &HttpRequest) -> Result<AuthenticatedUser, AppError> {
    let keys = engine_keys(req)?;
    let token = token_from_request(req).ok_or(AuthError::Missing)?;
    Ok(keys.verify(&token)?)
}

/// The API key of a REST request: `X-Api-Key`, or a bearer token shaped like a key.
fn api_key(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("x-api-key")
        .and_then(|h| h.to_str().ok())
        .map(|k| k.trim().to_owned())
        .or_else(|| bearer_token(req).filter(|t| t.starts_with(crate::engine::API_KEY_PREFIX)))
}

impl FromRequest for AuthenticatedUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    /// A JWT is verified at once; an API key needs its stored digest, read from the database
    /// on every request (so a revocation holds at once on every node).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(key) = api_key(req) else {
            return Box::pin(ready(authenticate(req)));
        };
        let engine = req.app_data::<web::Data<crate::engine::Engine>>().cloned();
        Box::pin(async move {
            let engine = engine
                .ok_or_else(|| AppError::new(ErrorCode::Internal, "engine not configured"))?;
            match engine.verify_api_key(&key).await? {
                Some(user) => Ok(user),
                None => Err(AppError::new(
                    ErrorCode::InvalidToken,
                    "unknown, malformed or revoked API key",
                )),
            }
        })
    }
}
