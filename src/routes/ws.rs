//! WebSocket routes. `GET /v1/ws`: authenticates the handshake (401 with a JSON body before any upgrade) and
//! starts a [`WsSession`]. With `session.rs`, the only file that knows actix-web-actors.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use crate::actors::session::WsSession;
use crate::auth::authenticate;
use crate::engine::Engine;
use crate::error::AppError;

pub async fn native(
    req: HttpRequest,
    stream: web::Payload,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, actix_web::Error> {
    let user = authenticate(&req)?;
    let remote = req.peer_addr().map(|a| a.to_string());
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
    let user = authenticate(&req).ok();
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
