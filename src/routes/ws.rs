//! WebSocket routes. `GET /v1/ws`: authenticates the handshake (401 with a JSON body before any upgrade) and
//! starts a [`WsSession`]. With `session.rs`, the only file that knows actix-web-actors.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use crate::actors::session::WsSession;
use crate::auth::authenticate_socket;
use crate::engine::Engine;
use crate::error::AppError;

pub async fn native(
    req: HttpRequest,
    stream: web::Payload,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&req, &engine)?;
    let user = authenticate_socket(&req)?;
    let remote = req.peer_addr().map(|a| a.to_string());
    engine
        .admit(&user.user_id, remote.clone())
        .await
        .map_err(AppError::from)?;
    let agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    let session = WsSession::new(user, engine.get_ref().clone(), remote, agent);
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(engine.settings.max_frame_bytes)
        .start()
        .map_err(|e| {
            AppError::new(
                crate::error::ErrorCode::InvalidData,
                format!("WebSocket handshake failed: {e}"),
            )
            .into()
        })
}

/// `GET /ws/notifications/?token=`: the seed-compatible notification socket. The upgrade
/// completes even with a bad token; the socket itself reports the failure (SPEC section 3).
pub async fn notifications(
    req: HttpRequest,
    stream: web::Payload,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&req, &engine)?;
    let user = authenticate_socket(&req).ok();
    let socket =
        crate::actors::notification_socket::NotificationSocket::new(user, engine.get_ref().clone());
    ws::WsResponseBuilder::new(socket, &req, stream)
        .frame_size(64 * 1024)
        .start()
        .map_err(|e| {
            AppError::new(
                crate::error::ErrorCode::InvalidData,
                format!("WebSocket handshake failed: {e}"),
            )
            .into()
        })
}

/// Browser upgrades must come from an allowed origin (when an allow-list is configured);
/// clients that send no `Origin` (native apps, servers) are not browsers and pass.
pub fn check_origin(req: &HttpRequest, engine: &Engine) -> Result<(), AppError> {
    let allowed = &engine.settings.allowed_origins;
    if allowed.is_empty() {
        return Ok(());
    }
    match req
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""))
    {
        None => Ok(()),
        Some(origin) if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) => Ok(()),
        Some(origin) => Err(AppError::new(
            crate::error::ErrorCode::Forbidden,
            format!("origin {origin:?} is not allowed"),
        )),
    }
}

/// `GET /v1/ws/echo` (only with `HERALD_DIAGNOSTICS=1`): echoes messages back, for RFC 6455
/// conformance suites; 404 otherwise.
pub async fn echo(
    req: HttpRequest,
    stream: web::Payload,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, actix_web::Error> {
    if !engine.settings.diagnostics {
        return Err(AppError::new(crate::error::ErrorCode::NotFound, "no such route").into());
    }
    let max = engine.settings.max_frame_bytes;
    ws::WsResponseBuilder::new(
        crate::actors::echo_session::EchoSession::new(max),
        &req,
        stream,
    )
    .frame_size(max)
    .start()
}
