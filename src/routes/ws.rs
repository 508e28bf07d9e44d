//! WebSocket routes. `GET /v1/ws`: authenticates the handshake (401 with a JSON body before any upgrade) and
//! starts a [`WsSession`]. With `session.rs`, the only file that knows actix-web-actors.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use std::net::IpAddr;

use crate::actors::session::WsSession;
use crate::admission::{client_ip, Refusal};
use crate::auth::authenticate_socket;
use crate::engine::{Engine, Resume};
use crate::error::AppError;
use crate::metrics::METRICS;
use crate::ws_wire::Wire;

/// Largest message on the notification socket (its frames are small JSON objects).
const NOTIFICATION_FRAME_BYTES: usize = 64 * 1024;

use super::openapi::ErrorBody;

/// `GET /v1/ws`.
#[utoipa::path(
    get,
    path = "/v1/ws",
    operation_id = "websocket",
    tag = "sockets",
    description = "The WebSocket upgrade to the native protocol (docs/protocol.md). The token \
        comes as `?token=` or in the Authorization header.",
    params(("token" = Option<String>, Query, description = "The JWT (browsers cannot set headers on an upgrade).")),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket."),
        (status = 401, description = "No valid token (invalid_token, token_expired).", body = ErrorBody),
        (status = 403, description = "Origin not allowed (forbidden).", body = ErrorBody),
        (status = 422, description = "Not a WebSocket upgrade, or a bad resume parameter (invalid_data).", body = ErrorBody),
        (status = 429, description = "Session or connection limit reached (limit_exceeded).", body = ErrorBody),
        (status = 503, description = "The database is unavailable (unavailable).", body = ErrorBody),
    ),
)]
pub async fn native(
    req: HttpRequest,
    stream: web::Payload,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&req, &engine)?;
    let ip = admit_address(&req, &engine)?;
    let user = authenticate_socket(&req)?;
    let resume = resume_of(&req, &engine)?;
    let ticket = engine
        .admit(&user.user_id, ip)
        .await
        .map_err(AppError::from)?;
    let session = WsSession::new(
        user,
        engine.session_port(),
        remote_address(&req, ip),
        user_agent(&req),
        ticket,
        resume,
        Wire::attach(&req, engine.settings.max_frame_bytes),
    );
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(engine.settings.max_frame_bytes)
        // Answered only when offered (with the token as `herald.bearer.<JWT>`).
        .protocols(&[crate::auth::WS_PROTOCOL])
        .start()
        .map_err(|e| {
            AppError::new(
                crate::error::ErrorCode::InvalidData,
                format!("WebSocket handshake failed: {e}"),
            )
            .into()
        })
}

/// Where the client left off, from the handshake query: `device_id=<id>` (its stored
/// positions) and `since=<room>:<seq>,...` (the seq after the room id's last colon), which
/// wins where both name a room. 400 on a malformed value.
fn resume_of(req: &HttpRequest, engine: &Engine) -> Result<Resume, AppError> {
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map_err(|e| AppError::new(crate::error::ErrorCode::InvalidData, e.to_string()))?;
    let since = match query.get("since") {
        Some(s) => crate::protocol::parse_since(s, engine.settings.limits.max_rooms_per_user)
            .map_err(|e| AppError::new(crate::error::ErrorCode::InvalidData, e.to_string()))?,
        None => Default::default(),
    };
    let device = match query.get("device_id") {
        Some(d) => Some(
            crate::domain::DeviceId::parse(d)
                .map_err(|e| AppError::new(crate::error::ErrorCode::InvalidData, e.to_string()))?,
        ),
        None => None,
    };
    Ok(Resume { since, device })
}

/// The client's address (through trusted proxies), after taking one new connection from its
/// bucket: 429 with `Retry-After` when the address opens connections too fast.
pub fn admit_address(req: &HttpRequest, engine: &Engine) -> Result<Option<IpAddr>, AppError> {
    let ip = client_ip(req, &engine.settings.trusted_proxies);
    engine.gate.check_ip(ip).map_err(refused)?;
    Ok(ip)
}

/// A refused connection as an HTTP error (429, `rate_limited`, with `Retry-After` when
/// waiting helps).
pub fn refused(r: Refusal) -> AppError {
    METRICS.refused.with_label_values(&[r.metric()]).inc();
    let e = AppError::new(crate::error::ErrorCode::RateLimited, r.to_string());
    match r.retry_after() {
        Some(wait) => e.with_retry_after(wait),
        None => e,
    }
}

/// What admin views show as the session's address: the client address, with the peer's
/// port when the peer is the client.
pub fn remote_address(req: &HttpRequest, ip: Option<IpAddr>) -> Option<String> {
    match (req.peer_addr(), ip) {
        (Some(peer), Some(ip)) if peer.ip() == ip => Some(peer.to_string()),
        (_, Some(ip)) => Some(ip.to_string()),
        (peer, None) => peer.map(|p| p.to_string()),
    }
}

/// The `User-Agent`, cut to 256 characters.
pub fn user_agent(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// `GET /ws/notifications/?token=`: the seed-compatible notification socket. The upgrade
/// completes even with a bad token; the socket itself reports the failure (SPEC section 3).
#[utoipa::path(
    get,
    path = "/ws/notifications/",
    operation_id = "notification_socket",
    tag = "sockets",
    description = "The seed-compatible notification socket (docs/notifications.md). Also served \
        at `/ws/notifications` (no trailing slash).",
    params(("token" = Option<String>, Query, description = "The JWT; a bad one is reported on the socket.")),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket."),
        (status = 403, description = "Origin not allowed (forbidden).", body = ErrorBody),
        (status = 422, description = "Not a WebSocket upgrade (invalid_data).", body = ErrorBody),
        (status = 429, description = "Session or connection limit reached (limit_exceeded).", body = ErrorBody),
    ),
)]
pub async fn notifications(
    req: HttpRequest,
    stream: web::Payload,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&req, &engine)?;
    let ip = admit_address(&req, &engine)?;
    let device = resume_of(&req, &engine)?.device;
    let user = authenticate_socket(&req).ok();
    // Counted under the same caps as every session of the user; a bad token is reported on
    // the socket (SPEC section 3) and holds no place.
    let ticket = match &user {
        Some(u) => Some(engine.admit(&u.user_id, ip).await.map_err(AppError::from)?),
        None => None,
    };
    let socket =
        crate::actors::notification_socket::NotificationSocket::new(user, engine.session_port())
            .with_ticket(ticket)
            .with_device(device)
            .with_wire(Wire::attach(&req, NOTIFICATION_FRAME_BYTES));
    ws::WsResponseBuilder::new(socket, &req, stream)
        .frame_size(NOTIFICATION_FRAME_BYTES)
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
#[utoipa::path(
    get,
    path = "/v1/ws/echo",
    operation_id = "websocket_echo",
    tag = "sockets",
    description = "Diagnostic WebSocket echo, only with HERALD_DIAGNOSTICS=1; no token.",
    responses(
        (status = 101, description = "Switching Protocols: the echo WebSocket."),
        (status = 404, description = "Diagnostics are off (not_found).", body = ErrorBody),
    ),
)]
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
        crate::actors::echo_session::EchoSession::new(max, Wire::attach(&req, max)),
        &req,
        stream,
    )
    .frame_size(max)
    .start()
}
