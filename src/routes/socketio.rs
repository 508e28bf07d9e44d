//! `/socket.io/`: Engine.IO v4 over HTTP long-polling (GET polls, POST sends) and WebSocket
//! (fresh, or upgrading a polling session). Errors use Engine.IO's JSON error shape
//! (`{"code","message"}`, HTTP 400) that the official clients understand.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use serde_json::json;

use crate::actors::eio_registry::{LookupEio, RegisterEio};
use crate::actors::eio_websocket::EioWebSocket;
use crate::actors::socketio_session::{ClaimUpgrade, EioPackets, Poll, PollError, SocketIoSession};
use crate::engine::Engine;
use crate::socketio;
use crate::ws_wire::Wire;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EioQuery {
    /// The Engine.IO protocol version; only `4`.
    #[serde(rename = "EIO")]
    eio: Option<String>,
    /// `polling` or `websocket`.
    transport: Option<String>,
    /// The Engine.IO session id (after the handshake).
    sid: Option<String>,
}

/// Engine.IO's error body, `{"code","message"}`.
#[derive(utoipa::ToSchema)]
pub struct EioErrorBody {
    /// Engine.IO error code: 0 unknown transport, 1 unknown session id, 3 bad request,
    /// 4 forbidden, 5 unsupported protocol version.
    pub code: u8,
    pub message: String,
}

fn eio_error(code: u8, message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "code": code, "message": message }))
}

fn text(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=UTF-8")
        .body(body)
}

/// Starts a session for a new Engine.IO handshake, if the caps on sessions that have not
/// authenticated yet admit it (checked and counted in one step by the registry, before the
/// session runs).
async fn new_session(
    engine: &Engine,
    req: &HttpRequest,
    websocket: bool,
) -> Result<(String, actix::Addr<SocketIoSession>), HttpResponse> {
    let ip = match super::ws::admit_address(req, engine) {
        Ok(ip) => ip,
        Err(e) => return Err(refusal(e)),
    };
    let sid = uuid::Uuid::new_v4().simple().to_string();
    use actix::AsyncContext as _;
    let ctx = actix::Context::<SocketIoSession>::new();
    let addr = ctx.address();
    let registered = engine
        .eio
        .send(RegisterEio {
            sid: sid.clone(),
            addr: addr.clone(),
            ip,
        })
        .await;
    match registered {
        Ok(Ok(())) => {}
        Ok(Err(r)) => return Err(refusal(super::ws::refused(r))),
        Err(_) => return Err(eio_error(0, "server shutting down")),
    }
    let session = SocketIoSession::new(
        sid.clone(),
        engine.session_port(),
        engine.eio.clone(),
        websocket,
        super::ws::remote_address(req, ip),
        super::ws::user_agent(req),
        ip,
    );
    ctx.run(session);
    Ok((sid, addr))
}

/// A refused handshake in Engine.IO's error shape, with the HTTP status and `Retry-After`
/// of the refusal.
fn refusal(e: crate::error::AppError) -> HttpResponse {
    use actix_web::ResponseError;
    let res = e.error_response();
    res.set_body(actix_web::body::BoxBody::new(
        json!({"code": 5, "message": e.message}).to_string(),
    ))
}

/// `GET /socket.io/?EIO=4&transport=...[&sid=...]`.
#[utoipa::path(
    get,
    path = "/socket.io/",
    operation_id = "socketio_get",
    tag = "sockets",
    description = "Socket.IO (Engine.IO v4, docs/socketio.md): the handshake, a long poll, or \
        the WebSocket upgrade. The token comes in the Socket.IO CONNECT packet. Also served at \
        `/socket.io` (no trailing slash).",
    params(EioQuery),
    responses(
        (status = 101, description = "Switching Protocols: the Engine.IO WebSocket."),
        (status = 200, description = "Engine.IO packets (text/plain).", body = String, content_type = "text/plain; charset=UTF-8"),
        (status = 400, description = "Engine.IO error (bad version, transport or sid).", body = EioErrorBody),
        (status = 403, description = "Origin not allowed.", body = EioErrorBody),
        (status = 429, description = "Too many sessions or connections.", body = EioErrorBody),
    ),
)]
pub async fn get(
    req: HttpRequest,
    stream: web::Payload,
    q: web::Query<EioQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, actix_web::Error> {
    if q.eio.as_deref() != Some("4") {
        return Ok(eio_error(5, "Unsupported protocol version"));
    }
    if let Err(e) = super::ws::check_origin(&req, &engine) {
        return Ok(HttpResponse::Forbidden().json(json!({"code": 4, "message": e.message})));
    }
    let outbox = engine.settings.outbox_frames;
    let max = engine.settings.sio_max_payload;
    match (q.transport.as_deref(), q.sid.clone()) {
        (Some("polling"), None) => {
            let (sid, _) = match new_session(&engine, &req, false).await {
                Ok(s) => s,
                Err(refused) => return Ok(refused),
            };
            Ok(text(SocketIoSession::open_packet(
                &engine.settings,
                &sid,
                &["websocket"],
            )))
        }
        (Some("polling"), Some(sid)) => {
            let Some(addr) = engine.eio.send(LookupEio { sid }).await.ok().flatten() else {
                return Ok(eio_error(1, "Session ID unknown"));
            };
            let (reply, packets) = tokio::sync::oneshot::channel();
            match addr.send(Poll { reply }).await {
                Ok(Ok(())) => {}
                Ok(Err(PollError::Overlap)) => {
                    return Ok(eio_error(3, "Bad request: overlapping polls"))
                }
                Ok(Err(PollError::WrongTransport)) => {
                    return Ok(eio_error(3, "Bad request: the session was upgraded"))
                }
                Err(_) => return Ok(eio_error(1, "Session ID unknown")),
            }
            // At most until the next ping is due; then (or if the session ends) a noop lets
            // the client poll again.
            let wait = engine.settings.sio_ping_interval + engine.settings.sio_ping_timeout;
            let packets = match actix_web::rt::time::timeout(wait, packets).await {
                Ok(Ok(p)) => p,
                _ => vec![socketio::eio::NOOP.to_string()],
            };
            Ok(text(socketio::join_payload(&packets)))
        }
        (Some("websocket"), Some(sid)) => {
            let Some(addr) = engine.eio.send(LookupEio { sid }).await.ok().flatten() else {
                return Ok(eio_error(1, "Session ID unknown"));
            };
            // One upgrade per session: a second one cannot take over a live transport.
            if !matches!(addr.send(ClaimUpgrade).await, Ok(true)) {
                return Ok(eio_error(
                    3,
                    "Bad request: the session is already upgrading or upgraded",
                ));
            }
            let probe = EioWebSocket::new(
                addr,
                true,
                outbox,
                max,
                engine.settings.handshake_timeout,
                Wire::attach(&req, max),
            );
            ws::WsResponseBuilder::new(probe, &req, stream)
                .frame_size(max)
                .start()
        }
        (Some("websocket"), None) => {
            let (_, addr) = match new_session(&engine, &req, true).await {
                Ok(s) => s,
                Err(refused) => return Ok(refused),
            };
            let socket = EioWebSocket::new(
                addr,
                false,
                outbox,
                max,
                engine.settings.handshake_timeout,
                Wire::attach(&req, max),
            );
            ws::WsResponseBuilder::new(socket, &req, stream)
                .frame_size(max)
                .start()
        }
        _ => Ok(eio_error(0, "Transport unknown")),
    }
}

/// `POST /socket.io/?EIO=4&transport=polling&sid=...`: packets from the client.
#[utoipa::path(
    post,
    path = "/socket.io/",
    operation_id = "socketio_post",
    tag = "sockets",
    description = "Socket.IO long polling: packets from the client (docs/socketio.md). Also \
        served at `/socket.io` (no trailing slash).",
    params(EioQuery),
    request_body(content = String, description = "Engine.IO payload.", content_type = "text/plain"),
    responses(
        (status = 200, description = "`ok` (text/html, as Engine.IO servers answer).", body = String, content_type = "text/html"),
        (status = 400, description = "Engine.IO error (bad version, transport, sid or payload).", body = EioErrorBody),
        (status = 413, description = "Payload too large.", body = EioErrorBody),
    ),
)]
pub async fn post(
    q: web::Query<EioQuery>,
    body: web::Bytes,
    engine: web::Data<Engine>,
) -> HttpResponse {
    if q.eio.as_deref() != Some("4") {
        return eio_error(5, "Unsupported protocol version");
    }
    if q.transport.as_deref() != Some("polling") {
        return eio_error(0, "Transport unknown");
    }
    let Some(sid) = q.sid.clone() else {
        return eio_error(1, "Session ID unknown");
    };
    if body.len() > engine.settings.sio_max_payload {
        return HttpResponse::PayloadTooLarge()
            .json(json!({"code": 3, "message": "payload too large"}));
    }
    let Ok(body) = std::str::from_utf8(&body) else {
        return eio_error(3, "Bad request: payload is not UTF-8");
    };
    let Some(addr) = engine.eio.send(LookupEio { sid }).await.ok().flatten() else {
        return eio_error(1, "Session ID unknown");
    };
    let packets = socketio::split_payload(body).map(str::to_owned).collect();
    addr.do_send(EioPackets { packets });
    HttpResponse::Ok().content_type("text/html").body("ok")
}
