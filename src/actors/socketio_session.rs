//! `SocketIoSession`: one actor per Engine.IO session, speaking Socket.IO v5 on the main
//! namespace and acting as a Herald session like any other (same rooms, presence,
//! notifications, persistence and limits).
//!
//! The session outlives its transports: it starts on HTTP long-polling (polls drain its
//! outbound queue, posts feed it packets) or directly on a WebSocket, and may be upgraded
//! from polling to a WebSocket ([`EioWebSocket`](super::eio_websocket::EioWebSocket)), after
//! which packets flow over the socket. It pings every `pingInterval` and drops a client that
//! has not answered within `pingTimeout`.
//!
//! Socket.IO mapping: a client event named like a native frame type (`join`, `send`, ...) with
//! the frame's `data` as payload is carried out as that request; the reply goes to the
//! acknowledgement callback as `{"ok":true,...}` or `{"ok":false,"code","error"}`. Native
//! server frames are emitted as events of the same name.
//!
//! Sends to: the engine's actors (as a native session does), its WebSocket transport, the
//! `EioRegistry` (on stop).

use super::client_session::ClientSession;
use super::continuity::{new_streams, StreamSession};
use super::inflight::InFlight;
use super::requests::{RequestParts, RequestSession};
use crate::engine::Resume;
use crate::stream::RoomStreams;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::eio_registry::{EioAuthenticated, EioRegistry, RemoveEio, SaveRecovery, TakeRecovery};
use super::room_supervisor::AdmissionTicket;
use super::session::{Deliver, LastHeard, OutboxGauge, SessionControl, SessionHandle, SessionInfo};
use crate::auth::AuthenticatedUser;
use crate::domain::{now_millis, SessionId};
use crate::engine::Engine;
use crate::error::ErrorCode;
use crate::metrics::METRICS;
use crate::protocol::{self, EncodedFrame, ParseLimits};
use crate::rate::RequestLimiter;
use crate::recovery::RecoveryLog;
use crate::socketio::{self as sio, eio, SioType};
use crate::unread::UnreadCounts;

/// How soon a session whose WebSocket transport was full looks again.
const TRANSPORT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Sent by the session to its WebSocket transport: one Engine.IO packet.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct EioOut {
    pub packet: String,
}

enum Transport {
    /// Long-polling: packets wait in `queue` for the next GET; `waiting` is a GET in progress.
    Polling {
        queue: VecDeque<String>,
        waiting: Option<oneshot::Sender<Vec<String>>>,
    },
    WebSocket {
        out: Recipient<EioOut>,
    },
    /// A WebSocket-only session before its socket attached.
    Pending,
}

pub struct SocketIoSession {
    sid: String,
    id: SessionId,
    engine: Engine,
    registry: Addr<EioRegistry>,
    transport: Transport,
    /// Set after a successful Socket.IO CONNECT.
    auth: Option<AuthenticatedUser>,
    connecting: bool,
    /// An upgrade probe arrived: polls are answered with a noop at once until it completes.
    probing: bool,
    last_pong: Instant,
    /// When any packet last came from the client, shared with every handle this session
    /// makes (see [`LastHeard`]).
    heard: Arc<LastHeard>,
    slow: Arc<OutboxGauge>,
    limiter: RequestLimiter,
    expiry_timers: Vec<SpawnHandle>,
    /// Requests waiting for the engine's answer.
    inflight: InFlight<Self>,
    unread: UnreadCounts,
    remote_addr: Option<String>,
    user_agent: Option<String>,
    connected_at: i64,
    /// The client address the per-address caps count.
    ip: Option<std::net::IpAddr>,
    /// This session's place under the per-user and per-address caps, once connected.
    ticket: Option<AdmissionTicket>,
    /// Bytes of the packets waiting in the polling queue.
    queued_bytes: usize,
    /// An upgrade request holds the session's one upgrade (see [`ClaimUpgrade`]).
    upgrade_claimed: bool,
    /// Per-room continuity of the `message` events (replay, live, catch-up).
    streams: RoomStreams,
    /// The WebSocket transport refused a packet lately: replay pages wait until it drains.
    transport_full: bool,
    /// The device the client named in its CONNECT `auth` (`device_id`).
    device: Option<crate::domain::DeviceId>,
    /// The recovery `pid` given to the client and the log of its message events.
    recovery: Option<(String, RecoveryLog)>,
}

impl SocketIoSession {
    pub fn new(
        sid: String,
        engine: Engine,
        registry: Addr<EioRegistry>,
        websocket: bool,
        remote_addr: Option<String>,
        user_agent: Option<String>,
        ip: Option<std::net::IpAddr>,
    ) -> Self {
        let limiter = RequestLimiter::new(&engine.settings.limits);
        let outbox = Arc::new(OutboxGauge::new(engine.settings.outbox_bytes));
        let engine_for_streams = engine.clone();
        SocketIoSession {
            sid,
            id: SessionId::next(),
            engine,
            registry,
            transport: if websocket {
                Transport::Pending
            } else {
                Transport::Polling {
                    queue: VecDeque::new(),
                    waiting: None,
                }
            },
            auth: None,
            connecting: false,
            probing: false,
            last_pong: Instant::now(),
            heard: LastHeard::now(),
            slow: outbox,
            limiter,
            expiry_timers: Vec::new(),
            inflight: InFlight::default(),
            unread: UnreadCounts::default(),
            remote_addr,
            user_agent,
            connected_at: now_millis(),
            ip,
            ticket: None,
            queued_bytes: 0,
            upgrade_claimed: false,
            streams: new_streams(&engine_for_streams),
            transport_full: false,
            device: None,
            recovery: None,
        }
    }

    /// The Engine.IO `open` packet for this session.
    pub fn open_packet(engine: &Engine, sid: &str, upgrades: &[&str]) -> String {
        let s = &engine.settings;
        sio::open_packet(
            sid,
            upgrades,
            s.sio_ping_interval.as_millis() as u64,
            s.sio_ping_timeout.as_millis() as u64,
            s.sio_max_payload,
        )
    }

    /// Queues one Engine.IO packet on the transport; false when the transport is full and
    /// the packet was dropped (a `message` event is then caught up later, see
    /// [`StreamSession`]). A client that stops taking packets altogether is ended by the ping
    /// timeout (polling) or the socket's write deadline (WebSocket).
    fn send_packet(&mut self, packet: String, ctx: &mut Context<Self>) -> bool {
        let cap = self.engine.settings.outbox_frames;
        match &mut self.transport {
            Transport::WebSocket { out } => match out.try_send(EioOut { packet }) {
                Ok(()) => true,
                Err(SendError::Full(_)) => {
                    METRICS.slow_consumers.inc();
                    if !self.transport_full {
                        self.transport_full = true;
                        // Look again shortly: the socket's mailbox drains as the peer reads.
                        ctx.run_later(TRANSPORT_RETRY, |act, ctx| {
                            act.transport_full = false;
                            act.next_page(ctx);
                        });
                    }
                    false
                }
                Err(SendError::Closed(_)) => {
                    ctx.stop();
                    false
                }
            },
            Transport::Polling { queue, waiting } => {
                if let Some(tx) = waiting.take() {
                    // A poll that ended meanwhile (timeout, client gone) gets nothing: the
                    // packets wait for the next one.
                    queue.push_back(packet);
                    match tx.send(queue.drain(..).collect()) {
                        Ok(()) => self.queued_bytes = 0,
                        Err(packets) => {
                            self.queued_bytes = packets.iter().map(String::len).sum();
                            queue.extend(packets);
                        }
                    }
                    return true;
                }
                if queue.len() >= cap
                    || self.queued_bytes + packet.len() > self.engine.settings.outbox_bytes
                {
                    // The client is not polling fast enough: bounded like any outbox.
                    METRICS.slow_consumers.inc();
                    return false;
                }
                self.queued_bytes += packet.len();
                queue.push_back(packet);
                true
            }
            Transport::Pending => false,
        }
    }

    /// Sends a Socket.IO packet (the `socketio` encoders include the Engine.IO `4` prefix).
    fn emit(&mut self, packet: String, ctx: &mut Context<Self>) {
        self.send_packet(packet, ctx);
    }

    /// Closes the Engine.IO session (and with it the Herald session).
    fn shutdown(&mut self, ctx: &mut Context<Self>) {
        match &mut self.transport {
            Transport::WebSocket { out } => {
                let _ = out.try_send(EioOut {
                    packet: eio::CLOSE.to_string(),
                });
                out.do_send(EioOut {
                    packet: String::new(),
                });
            }
            Transport::Polling { waiting, .. } => {
                if let Some(tx) = waiting.take() {
                    let _ = tx.send(vec![eio::CLOSE.to_string()]);
                }
            }
            Transport::Pending => {}
        }
        ctx.stop();
    }

    fn handle_handle(&self, ctx: &mut Context<Self>) -> Option<SessionHandle> {
        let auth = self.auth.as_ref()?;
        Some(SessionHandle::new(SessionInfo {
            id: self.id,
            user: auth.user_id.clone(),
            deliver: ctx.address().recipient(),
            control: ctx.address().recipient(),
            slow: self.slow.clone(),
            connected_at: self.connected_at,
            remote_addr: self.remote_addr.clone(),
            user_agent: self.user_agent.clone(),
            last_heard: self.heard.clone(),
            device: self.device.clone(),
        }))
    }

    fn on_packet(&mut self, packet: &str, ctx: &mut Context<Self>) {
        self.heard.heard();
        let mut chars = packet.chars();
        match chars.next() {
            Some(eio::PONG) => self.last_pong = Instant::now(),
            Some(eio::PING) => {
                self.send_packet(format!("{}{}", eio::PONG, &packet[1..]), ctx);
            }
            Some(eio::CLOSE) => self.shutdown(ctx),
            Some(eio::MESSAGE) => self.on_message(&packet[1..], ctx),
            Some(eio::NOOP) | Some(eio::UPGRADE) => {}
            _ => log::debug!("socket.io {}: unknown engine.io packet", self.sid),
        }
    }

    fn on_message(&mut self, data: &str, ctx: &mut Context<Self>) {
        let depth = self.engine.settings.limits.max_json_depth;
        if protocol::json_depth_exceeds(data, depth) {
            let err = json!({"ok": false, "code": ErrorCode::TooLarge.as_str(), "error": format!("JSON nested deeper than {depth}")});
            return self.emit(sio::event("error", &err), ctx);
        }
        let p = match sio::decode(data) {
            Ok(p) => p,
            Err(sio::SioError::Binary) => {
                let err = json!({"ok": false, "code": ErrorCode::BinaryUnsupported.as_str(), "error": sio::SioError::Binary.to_string()});
                return self.emit(sio::event("error", &err), ctx);
            }
            Err(e) => {
                let err = json!({"ok": false, "code": ErrorCode::InvalidJson.as_str(), "error": e.to_string()});
                return self.emit(sio::event("error", &err), ctx);
            }
        };
        if p.namespace != "/" {
            return self.emit(sio::connect_error(&p.namespace, "Invalid namespace"), ctx);
        }
        match p.kind {
            SioType::Connect => self.on_connect(p.data, ctx),
            SioType::Disconnect => self.shutdown(ctx),
            SioType::Event => self.on_event(p.ack_id, p.data, ctx),
            _ => {}
        }
    }

    fn on_connect(&mut self, data: Option<Value>, ctx: &mut Context<Self>) {
        if self.auth.is_some() || self.connecting {
            return;
        }
        let token = data
            .as_ref()
            .and_then(|d| d["token"].as_str())
            .unwrap_or("");
        let auth = match self.engine.keys.verify(token) {
            Ok(a) => a,
            Err(e) => {
                return self.emit(
                    sio::connect_error("/", &format!("Authentication failed: {e}")),
                    ctx,
                )
            }
        };
        let mut resume = match resume_of(data.as_ref(), &self.engine) {
            Ok(r) => r,
            Err(e) => return self.emit(sio::connect_error("/", &e), ctx),
        };
        self.device = resume.device.clone();
        // Connection-state recovery: the official client presents the `pid` we gave it and
        // the offset of the last event it received.
        let field = |k: &str| data.as_ref().and_then(|d| d.get(k));
        let pid = field("pid")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty() && p.len() <= 64)
            .map(str::to_owned);
        let offset = field("offset")
            .and_then(Value::as_str)
            .and_then(|o| o.parse::<u64>().ok());
        let offsets = pid.is_some() || field("recovery") == Some(&Value::Bool(true));
        self.auth = Some(auth);
        self.connecting = true;
        METRICS.connections.inc();
        METRICS.connections_total.inc();
        let Some(handle) = self.handle_handle(ctx) else {
            return;
        };
        let engine = self.engine.clone();
        let ip = self.ip;
        let registry = self.registry.clone();
        // Like a native session, requests wait until the session is registered everywhere.
        let open = async move {
            let ticket = engine.admit(&handle.user, ip).await?;
            let taken = match &pid {
                Some(p) => registry
                    .send(TakeRecovery {
                        pid: p.clone(),
                        user: handle.user.clone(),
                    })
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            // Exact positions from the log, unless the client also gave explicit ones.
            let recovered = taken.and_then(|log| {
                let positions = log.positions_at(offset)?;
                Some((pid.clone()?, log.last_offset(), positions))
            });
            if let Some((_, _, positions)) = &recovered {
                for (room, seq) in positions {
                    resume.since.entry(room.clone()).or_insert(*seq);
                }
            }
            engine
                .open_session(handle, resume)
                .await
                .map(|s| (ticket, s, recovered))
        };
        ctx.wait(open.into_actor(self).map(move |res, act, ctx| {
            act.connecting = false;
            match res {
                Ok((ticket, start, recovered)) => {
                    act.ticket = Some(ticket);
                    act.registry.do_send(EioAuthenticated {
                        sid: act.sid.clone(),
                    });
                    // The same pid tells the client its state was recovered (`recovered`);
                    // a new one that it was not.
                    let (pid, after) = match recovered {
                        Some((pid, after, _)) => (pid, after),
                        None => (uuid::Uuid::new_v4().simple().to_string(), 0),
                    };
                    let mut log = RecoveryLog::new(after, Default::default(), offsets);
                    for r in &start.replay {
                        log.set_base(&r.room, r.position);
                    }
                    act.emit(sio::connect_ok(&act.id.to_string(), &pid), ctx);
                    act.recovery = Some((pid, log));
                    act.arm_expiry(ctx);
                    act.unread.seed(&start.rooms);
                    for f in start.frames {
                        act.emit(sio::frame_event(&f), ctx);
                    }
                    act.start_streams(start.replay, ctx);
                }
                Err(e) => {
                    act.emit(sio::connect_error("/", &e.to_string()), ctx);
                    act.shutdown(ctx);
                }
            }
        }));
    }

    fn on_event(&mut self, ack_id: Option<u64>, data: Option<Value>, ctx: &mut Context<Self>) {
        let Some(auth) = self.auth.clone() else {
            return self.fail(
                &ack_id,
                ErrorCode::InvalidToken,
                "connect with a token first",
                ctx,
            );
        };
        let args = match data {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => {
                return self.fail(
                    &ack_id,
                    ErrorCode::InvalidData,
                    "an event needs a name",
                    ctx,
                )
            }
        };
        let Some(name) = args[0].as_str().map(str::to_owned) else {
            return self.fail(
                &ack_id,
                ErrorCode::InvalidData,
                "the event name must be a string",
                ctx,
            );
        };
        let payload = args.get(1).cloned().unwrap_or_else(|| json!({}));
        if !matches!(name.as_str(), "ping") {
            self.engine
                .presence
                .do_send(crate::actors::presence_registry::Touch {
                    session: self.id,
                    user: auth.user_id.clone(),
                });
        }
        let limits = ParseLimits::from_settings(&self.engine.settings);
        let request = match protocol::parse_request_data(&name, payload, limits) {
            Ok(r) => r,
            Err((code, message)) => return self.fail(&ack_id, code, &message, ctx),
        };
        self.handle_request(ack_id, request, ctx);
    }
}

impl RequestSession for SocketIoSession {
    type Reference = Option<u64>;

    fn request_parts(&mut self) -> Option<RequestParts<'_, Self>> {
        Some(RequestParts {
            engine: &self.engine,
            auth: self.auth.as_ref()?,
            limiter: &mut self.limiter,
            inflight: &self.inflight,
        })
    }
    fn set_auth(&mut self, fresh: AuthenticatedUser) {
        self.auth = Some(fresh);
    }
    fn request_handle(&mut self, ctx: &mut Context<Self>) -> Option<SessionHandle> {
        self.handle_handle(ctx)
    }
    /// The acknowledgement gets the ack's data with `"ok": true` (an object's fields, else
    /// as `data`); without a callback nothing is sent.
    fn write_ack(&mut self, ack_id: &Option<u64>, data: &Value, ctx: &mut Context<Self>) {
        let Some(id) = *ack_id else {
            return;
        };
        let payload = match data {
            Value::Object(m) => {
                let mut m = m.clone();
                m.insert("ok".into(), Value::Bool(true));
                Value::Object(m)
            }
            other => json!({"ok": true, "data": other}),
        };
        self.emit(sio::ack(id, &payload), ctx);
    }
    /// `{"ok":false,"code","error"[,"retry_after_ms"]}` to the acknowledgement callback, or
    /// as an `error` event without one.
    fn write_error(
        &mut self,
        ack_id: &Option<u64>,
        code: ErrorCode,
        message: &str,
        retry_after_ms: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        let mut payload = json!({"ok": false, "code": code.as_str(), "error": message});
        if let Some(ms) = retry_after_ms {
            payload["retry_after_ms"] = json!(ms);
        }
        match ack_id {
            Some(id) => self.emit(sio::ack(*id, &payload), ctx),
            None => self.emit(sio::event("error", &payload), ctx),
        }
    }
    fn write_pong(&mut self, ack_id: &Option<u64>, ctx: &mut Context<Self>) {
        self.write_ack(ack_id, &json!({}), ctx);
    }
    fn close_abusive(&mut self, ctx: &mut Context<Self>) {
        self.shutdown(ctx);
    }
}

impl ClientSession for SocketIoSession {
    type Ctx = Context<Self>;

    fn token_expires_at(&self) -> Option<i64> {
        self.auth.as_ref().map(|a| a.expires_at)
    }
    fn leeway_and_grace(&self) -> (std::time::Duration, std::time::Duration) {
        let auth = &self.engine.settings.auth;
        (auth.leeway, auth.refresh_grace)
    }
    fn expiry_timers(&mut self) -> &mut Vec<SpawnHandle> {
        &mut self.expiry_timers
    }
    /// As on the native socket, as an `error` event.
    fn warn_token_expired(&mut self, grace: std::time::Duration, ctx: &mut Context<Self>) {
        let err = json!({
            "ok": false,
            "code": ErrorCode::TokenExpired.as_str(),
            "error": format!(
                "token expired; send auth with a fresh token within {} ms",
                grace.as_millis()
            ),
        });
        self.emit(sio::event("error", &err), ctx);
    }
    fn end_expired(&mut self, ctx: &mut Context<Self>) {
        self.emit(sio::DISCONNECT.to_string(), ctx);
        self.shutdown(ctx);
    }
    fn unread(&mut self) -> &mut UnreadCounts {
        &mut self.unread
    }
    fn send_unread(&mut self, frame: EncodedFrame, ctx: &mut Context<Self>) {
        self.emit(sio::frame_event(&frame), ctx);
    }
}

impl Actor for SocketIoSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.engine.settings.outbox_frames);
        // An Engine.IO handshake needs no token: a session that has not sent its Socket.IO
        // CONNECT within the handshake deadline holds nothing for longer.
        ctx.run_later(self.engine.settings.handshake_timeout, |act, ctx| {
            if act.auth.is_none() && !act.connecting {
                log::info!("socket.io {}: no CONNECT in time", act.sid);
                METRICS.preauth_timeouts.inc();
                act.shutdown(ctx);
            }
        });
        let interval = self.engine.settings.sio_ping_interval;
        let timeout = self.engine.settings.sio_ping_timeout;
        ctx.run_interval(interval, move |act, ctx| {
            if act.last_pong.elapsed() > interval + timeout {
                log::info!("socket.io {}: ping timeout", act.sid);
                return act.shutdown(ctx);
            }
            act.send_packet(eio::PING.to_string(), ctx);
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.registry.do_send(RemoveEio {
            sid: self.sid.clone(),
        });
        if let (Some((pid, log)), Some(auth)) = (self.recovery.take(), &self.auth) {
            self.registry.do_send(SaveRecovery {
                pid,
                user: auth.user_id.clone(),
                log,
            });
        }
        if let Some(auth) = &self.auth {
            METRICS.connections.dec();
            self.engine.close_session(self.id, &auth.user_id);
        }
        if let Transport::WebSocket { out } = &self.transport {
            out.do_send(EioOut {
                packet: String::new(),
            });
        }
        Running::Stop
    }
}

/// Sent by a transport: Engine.IO packets from the client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EioPackets {
    pub packets: Vec<String>,
}

impl Handler<EioPackets> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, msg: EioPackets, ctx: &mut Context<Self>) {
        for p in msg.packets {
            self.on_packet(&p, ctx);
        }
    }
}

/// Why a poll was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    /// Another GET is already waiting (the protocol allows one).
    Overlap,
    /// The session is on a WebSocket now.
    WrongTransport,
}

/// Sent by the polling route for a GET: `reply` gets the queued packets at once, or the next
/// ones when there are none. The route owns the receiving end and its timeout, so a GET that
/// ends early (the client gave up, the timeout passed) closes it, and packets that find it
/// closed wait in the queue for the next GET instead of being lost.
#[derive(Message)]
#[rtype(result = "Result<(), PollError>")]
pub struct Poll {
    pub reply: oneshot::Sender<Vec<String>>,
}

impl Handler<Poll> for SocketIoSession {
    type Result = Result<(), PollError>;
    fn handle(&mut self, msg: Poll, ctx: &mut Context<Self>) -> Self::Result {
        let Transport::Polling { queue, waiting } = &mut self.transport else {
            return Err(PollError::WrongTransport);
        };
        // A poll whose request already ended does not count as waiting.
        if waiting.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return Err(PollError::Overlap);
        }
        if self.probing && queue.is_empty() {
            let _ = msg.reply.send(vec![eio::NOOP.to_string()]);
            return Ok(());
        }
        if !queue.is_empty() {
            match msg.reply.send(queue.drain(..).collect()) {
                Ok(()) => {
                    self.queued_bytes = 0;
                    // Room again: a replay waiting for it goes on.
                    self.next_page(ctx);
                }
                Err(packets) => queue.extend(packets),
            }
            return Ok(());
        }
        *waiting = Some(msg.reply);
        Ok(())
    }
}

/// Sent by the WebSocket transport: it received the `2probe` of an upgrade; a waiting poll is
/// answered with a noop so the client can finish it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeReceived;

impl Handler<ProbeReceived> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, _: ProbeReceived, _: &mut Context<Self>) {
        self.probing = true;
        if let Transport::Polling { waiting, .. } = &mut self.transport {
            if let Some(tx) = waiting.take() {
                let _ = tx.send(vec![eio::NOOP.to_string()]);
            }
        }
    }
}

/// Sent by the WebSocket transport when it takes over: after an upgrade (`5`) or at once for a
/// WebSocket-only session (which then gets its `open` packet over it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachWebSocket {
    pub out: Recipient<EioOut>,
}

impl Handler<AttachWebSocket> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, msg: AttachWebSocket, ctx: &mut Context<Self>) {
        if matches!(self.transport, Transport::WebSocket { .. }) {
            // The live socket stays; the newcomer is closed (ClaimUpgrade keeps this rare).
            let _ = msg.out.try_send(EioOut {
                packet: String::new(),
            });
            return;
        }
        self.probing = false;
        let previous =
            std::mem::replace(&mut self.transport, Transport::WebSocket { out: msg.out });
        match previous {
            Transport::Pending => {
                let open = Self::open_packet(&self.engine, &self.sid, &[]);
                self.send_packet(open, ctx);
            }
            Transport::Polling { mut queue, waiting } => {
                if let Some(tx) = waiting {
                    let _ = tx.send(vec![eio::NOOP.to_string()]);
                }
                self.queued_bytes = 0;
                for p in queue.drain(..) {
                    self.send_packet(p, ctx);
                }
            }
            Transport::WebSocket { .. } => {}
        }
    }
}

/// Sent by the WebSocket transport when its connection ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TransportClosed;

impl Handler<TransportClosed> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, _: TransportClosed, ctx: &mut Context<Self>) {
        match self.transport {
            Transport::WebSocket { .. } | Transport::Pending => ctx.stop(),
            Transport::Polling { .. } => {}
        }
    }
}

/// Sent by a WebSocket transport that ends before its upgrade completed: polling goes on as
/// before (polls are answered normally again, not with a noop).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeAbandoned;

impl Handler<ProbeAbandoned> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, _: ProbeAbandoned, _: &mut Context<Self>) {
        self.probing = false;
        self.upgrade_claimed = false;
    }
}

/// Asked by the route before it accepts an upgrade request naming this session: true for
/// the first one while the session is on polling, false for any other (one upgrade at a
/// time, and never over a live WebSocket).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct ClaimUpgrade;

impl Handler<ClaimUpgrade> for SocketIoSession {
    type Result = bool;
    fn handle(&mut self, _: ClaimUpgrade, _: &mut Context<Self>) -> bool {
        if self.upgrade_claimed || !matches!(self.transport, Transport::Polling { .. }) {
            return false;
        }
        self.upgrade_claimed = true;
        true
    }
}

impl Handler<Deliver> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if self.auth.is_none() {
            self.slow.taken(msg.frame.len());
            return;
        }
        self.on_deliver(msg, ctx);
    }
}

impl StreamSession for SocketIoSession {
    fn streams(&mut self) -> &mut RoomStreams {
        &mut self.streams
    }
    fn engine(&self) -> &Engine {
        &self.engine
    }
    fn outbox(&self) -> &Arc<OutboxGauge> {
        &self.slow
    }
    fn count_unread(&mut self, meta: &super::session::FrameMeta) -> bool {
        match &self.auth {
            Some(a) => self.unread.apply(&a.user_id, meta),
            None => false,
        }
    }
    fn write_message(
        &mut self,
        frame: EncodedFrame,
        room: &crate::domain::RoomId,
        seq: i64,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some((_, log)) = &mut self.recovery else {
            return self.write_native(frame, ctx);
        };
        let offset = log.sent(room, seq);
        let packet = if log.offsets {
            sio::frame_event_with_offset(&frame, offset)
        } else {
            sio::frame_event(&frame)
        };
        let written = self.send_packet(packet, ctx);
        if !written {
            // Not sent after all: a later offset must not claim it was received.
            if let Some((_, log)) = &mut self.recovery {
                log.unsend(offset);
            }
        }
        written
    }

    fn write_native(&mut self, frame: EncodedFrame, ctx: &mut Context<Self>) -> bool {
        // The event is the shared encoding plus its name: one small allocation per
        // Socket.IO recipient, no re-parse.
        self.send_packet(sio::frame_event(&frame), ctx)
    }
    fn ready_for_page(&self) -> bool {
        match &self.transport {
            Transport::WebSocket { .. } => !self.transport_full,
            // Half the bound: a page never finds the queue nearly full.
            Transport::Polling { .. } => self.queued_bytes < self.engine.settings.outbox_bytes / 2,
            Transport::Pending => false,
        }
    }
}

/// Where the client left off, from its CONNECT payload (`auth`): `since` as an object of
/// room → last seq held.
fn resume_of(auth: Option<&Value>, engine: &Engine) -> Result<Resume, String> {
    let mut resume = Resume::default();
    if let Some(d) = auth.and_then(|a| a.get("device_id")) {
        let d = d.as_str().ok_or("auth.device_id must be a string")?;
        resume.device = Some(crate::domain::DeviceId::parse(d).map_err(|e| e.to_string())?);
    }
    let Some(since) = auth.and_then(|a| a.get("since")) else {
        return Ok(resume);
    };
    let Some(map) = since.as_object() else {
        return Err("auth.since must be an object of room ids to seqs".into());
    };
    if map.len() > engine.settings.limits.max_rooms_per_user {
        return Err(format!(
            "auth.since names more than {} rooms",
            engine.settings.limits.max_rooms_per_user
        ));
    }
    for (room, seq) in map {
        let room = crate::domain::RoomId::parse(room).map_err(|e| e.to_string())?;
        let seq = seq
            .as_i64()
            .filter(|s| *s >= 0)
            .ok_or_else(|| format!("auth.since[{room}] must be a seq (a non-negative integer)"))?;
        resume.since.insert(room, seq);
    }
    Ok(resume)
}

impl Handler<SessionControl> for SocketIoSession {
    type Result = ();
    fn handle(&mut self, msg: SessionControl, ctx: &mut Context<Self>) {
        if self.auth.is_none() {
            return;
        }
        match msg {
            SessionControl::Unsubscribed { room } => {
                self.unread.rooms.remove(&room);
                self.streams.forget(&room);
            }
            SessionControl::RoomUnavailable { room, reason } => {
                let err = json!({"ok": false, "code": ErrorCode::Unavailable.as_str(), "error": reason, "room": room});
                self.unread.rooms.remove(&room);
                self.streams.forget(&room);
                self.emit(sio::event("error", &err), ctx);
            }
            SessionControl::Close { reason, .. } => {
                self.emit(
                    sio::event("disconnect_reason", &json!({ "reason": reason })),
                    ctx,
                );
                self.emit(sio::DISCONNECT.to_string(), ctx);
                self.shutdown(ctx);
            }
        }
    }
}
