//! `WsSession`: one actor per native WebSocket connection (actix-web-actors).
//!
//! It owns the connection's heartbeat, reassembles fragmented messages, parses frames into
//! typed requests (`protocol`), and turns each into a message to the
//! [`RoomSupervisor`](super::room_supervisor::RoomSupervisor) or the
//! [`PresenceRegistry`](super::presence_registry::PresenceRegistry); replies come back as
//! `ack`/`error` frames carrying the request's `ref`. Rooms and the registry push frames to it
//! with [`Deliver`] (already encoded, shared by all recipients) and control it with
//! [`SessionControl`].
//!
//! Its mailbox has a fixed capacity (the outbox): senders use `try_send` through
//! [`SessionHandle::deliver`], and frames for a session that cannot keep up are dropped
//! instead of slowing the room or growing memory; the session catches the dropped `message`
//! frames up from the database (see [`crate::stream`] and [`super::continuity`]).
//!
//! Files: this one holds `WsSession`; `handle.rs` what rooms, the registry and the
//! notification center hold to reach any kind of session (`SessionHandle`, `Deliver`,
//! `SessionControl`, the outbox gauge).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws;
use serde_json::Value;

use crate::auth::AuthenticatedUser;
use crate::domain::{now_millis, rfc3339, RoomId, SessionId};
use crate::engine::SessionPort;
use crate::error::ErrorCode;
use crate::metrics::METRICS;
use crate::protocol::{
    self, close_code, ClientRequest, ConnectionAck, EncodedFrame, ErrorBody, ParseLimits,
    ServerFrame,
};
use crate::rate::{RequestLimiter, ABUSE_MESSAGE};
use crate::unread::UnreadCounts;
use crate::ws_wire::Wire;
use crate::wsframe::{self, FrameAssembler, Incoming};

use super::client_session::ClientSession;
use super::continuity::{new_streams, StreamSession};
use super::inflight::InFlight;
use super::requests::{RequestParts, RequestSession};
use super::room_supervisor::AdmissionTicket;
use crate::engine::Resume;
use crate::stream::RoomStreams;
use inbox::Delivered;

pub mod handle;
pub mod inbox;

pub use handle::{
    Deliver, DeliverOutcome, FrameMeta, LastHeard, OutboxGauge, SessionControl, SessionHandle,
    SessionInfo,
};

/// The native protocol session.
pub struct WsSession {
    id: SessionId,
    auth: AuthenticatedUser,
    /// Everything this session may ask of the engine.
    port: SessionPort,
    last_heard: Instant,
    /// Reassembles fragmented messages.
    frames: FrameAssembler,
    /// Where data frames are written (compressed when negotiated).
    wire: Wire,
    slow: Arc<OutboxGauge>,
    remote_addr: Option<String>,
    user_agent: Option<String>,
    connected_at: i64,
    unread: UnreadCounts,
    /// Users who blocked this user: hidden from presence and typing (see `HiddenUsers`).
    hidden: crate::protocol::HiddenUsers,
    /// When activity was last reported to the presence registry.
    last_touch: Option<Instant>,
    limiter: RequestLimiter,
    /// The token-expiry timers (warning, then close), replaced on `auth`.
    expiry_timers: Vec<SpawnHandle>,
    /// Requests waiting for the engine's answer.
    inflight: InFlight<Self>,
    handle: Option<SessionHandle>,
    /// Per-room continuity of the `message` frames (replay, live, catch-up).
    streams: RoomStreams,
    /// Where the client said it left off (handshake query), until the session opens.
    resume: Option<Resume>,
    device: Option<crate::domain::DeviceId>,
    /// This session's place under the per-user and per-address caps, given back on drop.
    _ticket: AdmissionTicket,
}

/// Client activity is reported to presence at most this often per session.
pub const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl WsSession {
    pub fn new(
        auth: AuthenticatedUser,
        port: SessionPort,
        remote_addr: Option<String>,
        user_agent: Option<String>,
        ticket: AdmissionTicket,
        resume: Resume,
        wire: Wire,
    ) -> Self {
        let settings = port.settings();
        let limiter = RequestLimiter::new(&settings.limits);
        let streams = new_streams(settings);
        let frames = FrameAssembler::new(settings.max_frame_bytes);
        let outbox = Arc::new(OutboxGauge::new(settings.outbox_bytes));
        WsSession {
            id: SessionId::next(),
            auth,
            port,
            last_heard: Instant::now(),
            frames,
            wire,
            slow: outbox,
            remote_addr,
            user_agent,
            connected_at: now_millis(),
            unread: UnreadCounts::default(),
            hidden: crate::protocol::HiddenUsers::default(),
            last_touch: None,
            limiter,
            expiry_timers: Vec::new(),
            inflight: InFlight::default(),
            handle: None,
            streams,
            device: resume.device.clone(),
            resume: Some(resume),
            _ticket: ticket,
        }
    }

    /// Reports client activity (auto-away, last-seen), throttled.
    fn touch(&mut self) {
        if self.last_touch.is_some_and(|t| t.elapsed() < TOUCH_EVERY) {
            return;
        }
        self.last_touch = Some(Instant::now());
        self.port.touch(self.id, &self.auth.user_id);
    }

    /// The handle other actors reach this session by: made once, then shared.
    fn session_handle(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> SessionHandle {
        if let Some(h) = &self.handle {
            return h.clone();
        }
        let (route, frames) = inbox::open(
            self.slow.clone(),
            inbox::InboxLimits::from_settings(self.port.settings()),
        );
        ctx.add_stream(frames);
        let h = SessionHandle::new(SessionInfo {
            id: self.id,
            user: self.auth.user_id.clone(),
            deliver: ctx.address().recipient(),
            inbox: Some(route),
            control: ctx.address().recipient(),
            slow: self.slow.clone(),
            connected_at: self.connected_at,
            remote_addr: self.remote_addr.clone(),
            user_agent: self.user_agent.clone(),
            last_heard: LastHeard::now(),
            device: self.device.clone(),
        });
        self.handle = Some(h.clone());
        h
    }

    fn close(&self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        wsframe::close(&self.wire, ctx, code, reason);
    }

    fn heartbeat(&self, ctx: &mut ws::WebsocketContext<Self>) {
        let interval = self.port.settings().heartbeat_interval;
        wsframe::heartbeat(
            ctx,
            interval,
            |act| act.last_heard,
            |act| {
                log::info!(
                    "session {} of {}: heartbeat timeout",
                    act.id,
                    act.auth.user_id
                )
            },
        );
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let limits = ParseLimits::from_settings(self.port.settings());
        match protocol::parse_client_frame(text, limits) {
            Ok(frame) => {
                if !matches!(frame.request, ClientRequest::Ping) {
                    self.touch();
                }
                self.handle_request(frame.reference, frame.request, ctx)
            }
            Err(e) => send_error(&self.wire, ctx, e.reference.as_ref(), e.code, &e.message),
        }
    }
}

/// Writes an `error` frame and counts it.
fn send_error(
    wire: &Wire,
    ctx: &mut ws::WebsocketContext<WsSession>,
    reference: Option<&Value>,
    code: ErrorCode,
    message: &str,
) {
    METRICS.errors.with_label_values(&[code.as_str()]).inc();
    wire.frame(ctx, &ServerFrame::error(reference, code, message).encode());
}

impl RequestSession for WsSession {
    type Reference = Option<Value>;

    fn request_parts(&mut self) -> Option<RequestParts<'_, Self>> {
        Some(RequestParts {
            port: &self.port,
            auth: &self.auth,
            limiter: &mut self.limiter,
            inflight: &self.inflight,
        })
    }
    fn set_auth(&mut self, fresh: AuthenticatedUser) {
        self.auth = fresh;
    }
    fn request_handle(&mut self, ctx: &mut Self::Ctx) -> Option<SessionHandle> {
        Some(self.session_handle(ctx))
    }
    fn write_ack(&mut self, reference: &Option<Value>, data: &Value, ctx: &mut Self::Ctx) {
        let ack = ServerFrame::Ack {
            reference: reference.as_ref(),
            data,
        };
        self.wire.frame(ctx, &ack.encode());
    }
    fn write_error(
        &mut self,
        reference: &Option<Value>,
        code: ErrorCode,
        message: &str,
        retry_after_ms: Option<u64>,
        ctx: &mut Self::Ctx,
    ) {
        let error = ServerFrame::Error {
            reference: reference.as_ref(),
            body: ErrorBody {
                code: code.as_str(),
                error: message.into(),
                retry_after_ms,
                room: None,
            },
        };
        self.wire.frame(ctx, &error.encode());
    }
    fn write_pong(&mut self, reference: &Option<Value>, ctx: &mut Self::Ctx) {
        let pong = ServerFrame::Pong {
            reference: reference.as_ref(),
        };
        self.wire.frame(ctx, &pong.encode());
    }
    fn close_abusive(&mut self, ctx: &mut Self::Ctx) {
        self.close(ctx, close_code::POLICY, ABUSE_MESSAGE);
    }
}

impl ClientSession for WsSession {
    type Ctx = ws::WebsocketContext<Self>;

    fn token_expires_at(&self) -> Option<i64> {
        Some(self.auth.expires_at)
    }
    fn leeway_and_grace(&self) -> (std::time::Duration, std::time::Duration) {
        let auth = &self.port.settings().auth;
        (auth.leeway, auth.refresh_grace)
    }
    fn expiry_timers(&mut self) -> &mut Vec<SpawnHandle> {
        &mut self.expiry_timers
    }
    fn warn_token_expired(&mut self, grace: std::time::Duration, ctx: &mut Self::Ctx) {
        let msg = format!(
            "token expired; send auth with a fresh token within {} ms",
            grace.as_millis()
        );
        send_error(&self.wire, ctx, None, ErrorCode::TokenExpired, &msg);
    }
    fn end_expired(&mut self, ctx: &mut Self::Ctx) {
        self.close(ctx, close_code::AUTH_FAILED, "token expired");
    }
    fn unread(&mut self) -> &mut UnreadCounts {
        &mut self.unread
    }
    fn delivery_gather(&self) -> std::time::Duration {
        self.port.settings().ws_write_gather
    }
    fn send_unread(&mut self, frame: EncodedFrame, ctx: &mut Self::Ctx) {
        self.wire.frame(ctx, &frame);
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        METRICS.connections.inc();
        METRICS.connections_total.inc();
        ctx.set_mailbox_capacity(self.port.settings().outbox_frames);
        let ack = ServerFrame::ConnectionAck(ConnectionAck {
            heartbeat_interval_ms: self.port.settings().heartbeat_interval.as_millis() as u64,
            protocol: protocol::PROTOCOL_VERSION,
            server_time: rfc3339(now_millis()),
            server_version: env!("CARGO_PKG_VERSION"),
            // Unique in the cluster: `<node>:<n>` in cluster mode, as admin views show it.
            session_id: match self.port.node_id() {
                Some(node) => format!("{node}:{}", self.id),
                None => self.id.to_string(),
            },
            user_id: &self.auth.user_id,
        });
        self.wire.frame(ctx, &ack.encode());
        self.heartbeat(ctx);
        self.arm_expiry(ctx);
        let handle = self.session_handle(ctx);
        let port = self.port.clone();
        let resume = self.resume.take().unwrap_or_default();
        // Registration is the one place the session waits: requests and room frames that
        // arrive meanwhile are processed only once the session knows where each room's
        // stream starts.
        ctx.wait(
            async move { port.open_session(handle, resume).await }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(start) => {
                        act.unread.seed(&start.rooms);
                        act.hidden = crate::protocol::HiddenUsers::new(start.blocked_by);
                        for f in start.frames {
                            act.wire.frame(ctx, &f);
                        }
                        act.start_streams(start.replay, ctx);
                    }
                    Err(e) => {
                        log::warn!(
                            "session {} of {}: registration failed: {e}",
                            act.id,
                            act.auth.user_id
                        );
                        send_error(&act.wire, ctx, None, e.code(), &e.to_string());
                        act.close(
                            ctx,
                            close_code::TRY_AGAIN_LATER,
                            "storage unavailable, try again later",
                        );
                    }
                }),
        );
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        METRICS.connections.dec();
        self.port.close_session(self.id, &self.auth.user_id);
        // The handle holds this session's own address.
        self.handle = None;
        Running::Stop
    }
}

impl Handler<Deliver> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.on_deliver(msg, ctx);
    }
}

/// Frames rooms batched to this session's worker (see [`inbox`]).
impl StreamHandler<Delivered> for WsSession {
    fn handle(&mut self, frames: Delivered, ctx: &mut Self::Context) {
        // Room for the turn's frames at once (an idle connection's queue has none).
        self.wire.reserve(frames.len());
        self.on_delivered(frames, ctx);
        self.unread_with_deliveries(ctx);
    }
    /// The inbox ends only when the session does.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl StreamSession for WsSession {
    fn streams(&mut self) -> &mut RoomStreams {
        &mut self.streams
    }
    fn port(&self) -> &SessionPort {
        &self.port
    }
    fn outbox(&self) -> &Arc<OutboxGauge> {
        &self.slow
    }
    fn hidden(&self) -> &crate::protocol::HiddenUsers {
        &self.hidden
    }
    fn count_unread(&mut self, meta: &FrameMeta) -> bool {
        self.unread.apply(&self.auth.user_id, meta)
    }
    /// Always taken: past its byte bound the transport stops polling this session, which
    /// then waits (and its rooms' frames are dropped and caught up later).
    fn write_native(&mut self, frame: EncodedFrame, ctx: &mut Self::Ctx) -> bool {
        self.wire.frame(ctx, &frame);
        true
    }
}

impl WsSession {
    /// The session no longer receives `room`'s traffic.
    fn forget_room(&mut self, room: RoomId) {
        self.unread.rooms.remove(&room);
        self.streams.forget(&room);
    }
}

impl Handler<SessionControl> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: SessionControl, ctx: &mut Self::Context) {
        match msg {
            SessionControl::Unsubscribed { room } => self.forget_room(room),
            SessionControl::RoomUnavailable { room, reason } => {
                METRICS.errors.with_label_values(&["unavailable"]).inc();
                let error = ServerFrame::room_error(&room, ErrorCode::Unavailable, &reason);
                self.wire.frame(ctx, &error.encode());
                self.forget_room(room);
            }
            SessionControl::Close { code, reason } => self.close(ctx, code, &reason),
            SessionControl::Hide { user, hidden } => self.hidden.set(user, hidden),
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        if let Some(h) = &self.handle {
            h.last_heard.heard();
        }
        match wsframe::answer_control(self.wire.read(&mut self.frames, msg), &self.wire, ctx) {
            Some(Incoming::Text(text)) => self.on_text(&text, ctx),
            Some(Incoming::Binary(_)) => send_error(
                &self.wire,
                ctx,
                None,
                ErrorCode::BinaryUnsupported,
                "binary frames are not part of the protocol; send JSON text frames",
            ),
            _ => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
