//! `NotificationSocket`: one actor per connection of the seed-compatible notification socket
//! (`/ws/notifications/?token=`), speaking exactly the existing mobile protocol of SPEC
//! section 3: `{"type":"connection_ack"}` first, then `notification` and `unread_count`
//! frames; it accepts `mark_as_read` (`{"data":{"id"}}`) and `mark_all_as_read`, whose new
//! count arrives as `unread_count` on every device. A bad token still completes the upgrade
//! (mobile clients cannot read a 401 body): the socket sends
//! `{"type":"error","error":"Authentication failed"}` and closes with 4001.
//!
//! Token expiry works as on the native socket (the timing is [`ClientSession`]'s): at `exp`
//! plus the leeway the socket sends `{"type":"error","error":"Token expired; ..."}`, and
//! without a fresh token within `HERALD_TOKEN_GRACE_MS` it closes with 4001. A fresh token
//! comes in band, `{"type":"auth","data":{"token":"<JWT>"}}` (same user), answered by
//! `{"type":"auth_ok","data":{"expires_at":"<RFC 3339>"}}`; reconnecting with a new token (what
//! the seed's client does) works as well. Every error keeps the seed's shape,
//! `{"type":"error","error":"<message>"}`, and leaves the socket open.
//!
//! It registers with the [`NotificationCenter`](super::notification_center::NotificationCenter)
//! like a native session does; with `session.rs` and the WebSocket routes, the only code that
//! knows actix-web-actors.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws;
use serde_json::{json, Value};

use super::client_session::ClientSession;
use super::notification_center::unread_frame;
use super::session::{Deliver, LastHeard, OutboxGauge, SessionControl, SessionHandle, SessionInfo};
use crate::auth::AuthenticatedUser;
use crate::domain::{now_millis, rfc3339, SessionId};
use crate::engine::SessionPort;
use crate::protocol::close_code;
use crate::rate::{RateClass, RequestLimiter, Verdict};

use super::room_supervisor::AdmissionTicket;
use crate::unread::UnreadCounts;
use crate::ws_wire::Wire;
use crate::wsframe::{self, FrameAssembler, Incoming};

pub struct NotificationSocket {
    id: SessionId,
    /// `None` when the token was refused: the socket reports it and closes.
    auth: Option<AuthenticatedUser>,
    /// Everything this socket may ask of the engine.
    port: SessionPort,
    last_heard: Instant,
    /// The same, shared with the session's handle (see [`LastHeard`]).
    heard: Arc<LastHeard>,
    device: Option<crate::domain::DeviceId>,
    slow: Arc<OutboxGauge>,
    frames: FrameAssembler,
    /// Where frames are written (compressed when negotiated).
    wire: Wire,
    /// Every frame type is rate-limited; a client that keeps hitting it is closed (1008).
    limiter: RequestLimiter,
    /// `mark_as_read` requests waiting for the database (capped like any session's).
    pending: usize,
    /// This socket's place under the per-user and per-address caps, given back on drop.
    _ticket: Option<AdmissionTicket>,
    /// The token-expiry warning and close timers, re-armed by each accepted `auth`.
    expiry_timers: Vec<SpawnHandle>,
    /// Always empty: the seed protocol has no rooms, so no `room_unread` frames; it exists
    /// because [`ClientSession`] (shared for its expiry timers) asks for one.
    no_room_unread: UnreadCounts,
}

fn error_frame(message: &str) -> String {
    json!({"type": "error", "error": message}).to_string()
}

impl NotificationSocket {
    pub fn new(auth: Option<AuthenticatedUser>, port: SessionPort) -> Self {
        NotificationSocket {
            id: SessionId::next(),
            auth,
            last_heard: Instant::now(),
            heard: LastHeard::now(),
            device: None,
            slow: Arc::new(OutboxGauge::new(port.settings().outbox_bytes)),
            frames: FrameAssembler::new(64 * 1024),
            wire: Wire::default(),
            limiter: RequestLimiter::new(&port.settings().limits),
            pending: 0,
            _ticket: None,
            port,
            expiry_timers: Vec::new(),
            no_room_unread: UnreadCounts::default(),
        }
    }

    /// The device the client named (`device_id`), shown with its session.
    pub fn with_device(mut self, device: Option<crate::domain::DeviceId>) -> Self {
        self.device = device;
        self
    }

    /// The connection's wire (see [`Wire::attach`]).
    pub fn with_wire(mut self, wire: Wire) -> Self {
        self.wire = wire;
        self
    }

    pub fn with_ticket(mut self, ticket: Option<AdmissionTicket>) -> Self {
        self._ticket = ticket;
        self
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(auth) = &self.auth else { return };
        let parsed = serde_json::from_str::<Value>(text);
        // `auth` verifies a signature: it has the auth bucket, like on the native socket.
        let class = match &parsed {
            Ok(v) if v["type"] == "auth" => RateClass::Auth,
            _ => RateClass::Other,
        };
        let max_inflight = self.port.settings().limits.max_inflight;
        let mut verdict = self.limiter.check_class(class);
        if verdict == Verdict::Allowed && self.pending >= max_inflight {
            verdict = self.limiter.refused();
        }
        match verdict {
            Verdict::Allowed => {}
            Verdict::Limited => {
                return self
                    .wire
                    .text(ctx, error_frame("Too many requests; slow down"))
            }
            Verdict::Abusive => {
                self.wire
                    .text(ctx, error_frame("Rate limit exceeded repeatedly"));
                return wsframe::close(
                    &self.wire,
                    ctx,
                    close_code::POLICY,
                    "rate limit exceeded repeatedly",
                );
            }
        }
        let frame: Value = match parsed {
            Ok(v @ Value::Object(_)) => v,
            _ => return self.wire.text(ctx, error_frame("Invalid JSON")),
        };
        let id = match frame["type"].as_str() {
            Some("mark_as_read") => match frame["data"]["id"]
                .as_str()
                .or_else(|| frame["id"].as_str())
            {
                Some(id) if valid_notification_id(id) => Some(id.to_owned()),
                Some(_) => return self.wire.text(ctx, error_frame("Invalid notification id")),
                None => {
                    return self
                        .wire
                        .text(ctx, error_frame("mark_as_read needs data.id"))
                }
            },
            Some("mark_all_as_read") => None,
            Some("ping") => return self.wire.text(ctx, json!({"type": "pong"}).to_string()),
            Some("auth") => return self.refresh(&frame, ctx),
            _ => return self.wire.text(ctx, error_frame("Unknown message type")),
        };
        let port = self.port.clone();
        let user = auth.user_id.clone();
        // The new count reaches this socket (and the user's other devices) as `unread_count`.
        self.pending += 1;
        async move { port.mark_notifications_read(&user, id).await }
            .into_actor(self)
            .map(|res, act, ctx| {
                act.pending -= 1;
                if let Err(e) = res {
                    act.wire.text(ctx, error_frame(&e.to_string()));
                }
            })
            .spawn(ctx);
    }

    /// `{"type":"auth","data":{"token"}}`: a fresh token for the same user replaces the old
    /// one and re-arms the expiry timers.
    fn refresh(&mut self, frame: &Value, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(current) = &self.auth else { return };
        let Some(token) = frame["data"]["token"].as_str() else {
            return self.wire.text(ctx, error_frame("auth needs data.token"));
        };
        match self.port.refresh_auth(current, token) {
            Ok(fresh) => {
                let expires_at = rfc3339(fresh.expires_at);
                self.auth = Some(fresh);
                self.arm_expiry(ctx);
                self.wire.text(
                    ctx,
                    json!({"type": "auth_ok", "data": {"expires_at": expires_at}}).to_string(),
                );
            }
            Err(e) => self.wire.text(
                ctx,
                error_frame(&format!("Authentication failed: {}", e.message)),
            ),
        }
    }
}

/// Notification ids are UUIDs; anything else cannot name one (the REST route applies the
/// same rule).
fn valid_notification_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl ClientSession for NotificationSocket {
    type Ctx = ws::WebsocketContext<Self>;

    fn token_expires_at(&self) -> Option<i64> {
        self.auth.as_ref().map(|a| a.expires_at)
    }
    fn leeway_and_grace(&self) -> (std::time::Duration, std::time::Duration) {
        let auth = &self.port.settings().auth;
        (auth.leeway, auth.refresh_grace)
    }
    fn expiry_timers(&mut self) -> &mut Vec<SpawnHandle> {
        &mut self.expiry_timers
    }
    fn warn_token_expired(&mut self, grace: std::time::Duration, ctx: &mut Self::Ctx) {
        self.wire.text(
            ctx,
            error_frame(&format!(
                "Token expired; send auth with a fresh token within {} ms",
                grace.as_millis()
            )),
        );
    }
    fn end_expired(&mut self, ctx: &mut Self::Ctx) {
        wsframe::close(&self.wire, ctx, close_code::AUTH_FAILED, "token expired");
    }
    fn unread(&mut self) -> &mut UnreadCounts {
        &mut self.no_room_unread
    }
    fn send_unread(&mut self, _: crate::protocol::EncodedFrame, _: &mut Self::Ctx) {}
}

impl Actor for NotificationSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(auth) = &self.auth else {
            self.wire.text(ctx, error_frame("Authentication failed"));
            wsframe::close(
                &self.wire,
                ctx,
                close_code::AUTH_FAILED,
                "Authentication failed",
            );
            return;
        };
        ctx.set_mailbox_capacity(self.port.settings().outbox_frames);
        self.wire
            .text(ctx, json!({"type": "connection_ack"}).to_string());
        let interval = self.port.settings().heartbeat_interval;
        wsframe::heartbeat(ctx, interval, |act| act.last_heard, |_| {});
        let handle = SessionHandle::new(SessionInfo {
            id: self.id,
            user: auth.user_id.clone(),
            deliver: ctx.address().recipient(),
            inbox: None,
            control: ctx.address().recipient(),
            slow: self.slow.clone(),
            connected_at: now_millis(),
            remote_addr: None,
            user_agent: None,
            last_heard: self.heard.clone(),
            device: self.device.clone(),
        });
        self.port.subscribe_notifications(handle);
        let port = self.port.clone();
        let user = auth.user_id.clone();
        async move { port.notification_unread(&user).await }
            .into_actor(self)
            .map(|res, act: &mut Self, ctx| match res {
                Ok(n) => act.wire.frame(ctx, &unread_frame(n)),
                Err(e) => log::warn!("notification socket: unread count unavailable: {e}"),
            })
            .spawn(ctx);
        self.arm_expiry(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let Some(auth) = &self.auth {
            self.port.unsubscribe_notifications(self.id, &auth.user_id);
        }
        Running::Stop
    }
}

impl Handler<Deliver> for NotificationSocket {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.slow.taken(msg.frame.len());
        if self.slow.is_slow() {
            wsframe::close(&self.wire, ctx, close_code::SLOW_CONSUMER, "slow consumer");
            return;
        }
        if !msg.frame.is_empty() {
            self.wire.frame(ctx, &msg.frame);
        }
    }
}

impl Handler<SessionControl> for NotificationSocket {
    type Result = ();
    fn handle(&mut self, msg: SessionControl, ctx: &mut Self::Context) {
        if let SessionControl::Close { code, reason } = msg {
            wsframe::close(&self.wire, ctx, code, reason);
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for NotificationSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        self.heard.heard();
        match wsframe::answer_control(self.wire.read(&mut self.frames, msg), &self.wire, ctx) {
            Some(Incoming::Text(t)) => self.on_text(&t, ctx),
            Some(Incoming::Binary(_)) => self
                .wire
                .text(ctx, error_frame("Binary frames are not supported")),
            _ => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
