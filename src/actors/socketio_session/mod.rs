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
//! Sends to: the engine through its `SessionPort` (as a native session does), its WebSocket
//! transport, the
//! `EioRegistry` (on stop).
//!
//! Files: this one holds the actor, its state, packet handling, events, its lifecycle and
//! what the engine sends it (`Deliver`, `SessionControl`); `connect.rs` the Socket.IO
//! `CONNECT` handshake; `transport.rs` the messages of its transports (polls, posts, the
//! WebSocket upgrade); `wire.rs` how the shared session behaviours (requests, token expiry,
//! unread counts, room streams) are written on the Socket.IO wire.

use super::client_session::ClientSession;
use super::continuity::{new_streams, StreamSession};
use super::inflight::InFlight;
use super::requests::RequestSession;
use crate::stream::RoomStreams;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::eio_registry::{EioRegistry, RemoveEio, SaveRecovery};
use super::room_supervisor::AdmissionTicket;
use super::session::inbox::{self, Delivered, InboxRoute};
use super::session::{Deliver, LastHeard, OutboxGauge, SessionControl, SessionHandle, SessionInfo};
use crate::auth::AuthenticatedUser;
use crate::config::Settings;
use crate::domain::{now_millis, SessionId};
use crate::engine::SessionPort;
use crate::error::ErrorCode;
use crate::metrics::METRICS;
use crate::protocol::{self, ParseLimits};
use crate::rate::RequestLimiter;
use crate::recovery::RecoveryLog;
use crate::socketio::{self as sio, eio, SioType};
use crate::unread::UnreadCounts;

mod connect;
mod transport;
mod wire;

pub use transport::{
    AttachWebSocket, ClaimUpgrade, EioPackets, Poll, PollError, ProbeAbandoned, ProbeReceived,
    TransportClosed,
};

/// How soon a session whose WebSocket transport was full looks again.
const TRANSPORT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

// The transport's side of the hand-over lives with it (`EioWebSocket`).
pub use super::eio_websocket::{OutPacket, PacketSender};

enum Transport {
    /// Long-polling: packets wait in `queue` for the next GET; `waiting` is a GET in progress.
    Polling {
        queue: VecDeque<String>,
        waiting: Option<oneshot::Sender<Vec<String>>>,
    },
    /// `batch`: the packets of this turn, handed over together at its end (see
    /// [`SocketIoSession::flush_packets`]).
    WebSocket {
        out: PacketSender,
        batch: Vec<OutPacket>,
    },
    /// A WebSocket-only session before its socket attached.
    Pending,
}

impl Transport {
    fn websocket(out: PacketSender) -> Self {
        Transport::WebSocket {
            out,
            batch: Vec::new(),
        }
    }
}

pub struct SocketIoSession {
    sid: String,
    id: SessionId,
    /// Everything this session may ask of the engine.
    port: SessionPort,
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
    /// The event names the client speaks (`HERALD_SIO_EVENTS`, or its CONNECT `auth.events`).
    vocabulary: sio::Vocabulary,
    /// Users who blocked this user: hidden from presence and typing (see `HiddenUsers`).
    hidden: protocol::HiddenUsers,
    /// The session's slot on its worker, made with its first handle.
    inbox: Option<InboxRoute>,
}

impl SocketIoSession {
    pub fn new(
        sid: String,
        port: SessionPort,
        registry: Addr<EioRegistry>,
        websocket: bool,
        remote_addr: Option<String>,
        user_agent: Option<String>,
        ip: Option<std::net::IpAddr>,
    ) -> Self {
        let settings = port.settings();
        let limiter = RequestLimiter::new(&settings.limits);
        let outbox = Arc::new(OutboxGauge::new(settings.outbox_bytes));
        let streams = new_streams(settings);
        let vocabulary = settings.sio_events;
        SocketIoSession {
            sid,
            id: SessionId::next(),
            port,
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
            vocabulary,
            hidden: protocol::HiddenUsers::default(),
            inbox: None,
            remote_addr,
            user_agent,
            connected_at: now_millis(),
            ip,
            ticket: None,
            queued_bytes: 0,
            upgrade_claimed: false,
            streams,
            transport_full: false,
            device: None,
            recovery: None,
        }
    }

    /// The Engine.IO `open` packet for this session.
    pub fn open_packet(s: &Settings, sid: &str, upgrades: &[&str]) -> String {
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
    fn send_packet(&mut self, packet: impl Into<OutPacket>, ctx: &mut Context<Self>) -> bool {
        let packet = packet.into();
        let cap = self.port.settings().outbox_frames;
        match &mut self.transport {
            Transport::WebSocket { out, batch } => {
                if out.has_room(batch.len() + 1) {
                    batch.push(packet);
                    if batch.len() == 1 {
                        // Runs after this turn's deliveries (actix polls the future spawned
                        // here once the inbox stream has yielded).
                        ctx.spawn(
                            actix::fut::ready(())
                                .map(|(), act: &mut Self, ctx| act.flush_packets(ctx)),
                        );
                    }
                    return true;
                }
                METRICS.slow_consumers.inc();
                if !self.transport_full {
                    self.transport_full = true;
                    // Look again shortly: the transport's queue drains as the peer reads.
                    ctx.run_later(TRANSPORT_RETRY, |act, ctx| {
                        act.transport_full = false;
                        act.next_page(ctx);
                    });
                }
                false
            }
            Transport::Polling { queue, waiting } => {
                let packet = packet.into_text();
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
                    || self.queued_bytes + packet.len() > self.port.settings().outbox_bytes
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

    /// Hands this turn's packets to the WebSocket transport; a transport that has ended ends
    /// the session.
    fn flush_packets(&mut self, ctx: &mut Context<Self>) {
        if let Transport::WebSocket { out, batch } = &mut self.transport {
            if !batch.is_empty() && !out.send(std::mem::take(batch)) {
                ctx.stop();
            }
        }
    }

    /// Sends a Socket.IO packet (the `socketio` encoders include the Engine.IO `4` prefix).
    fn emit(&mut self, packet: String, ctx: &mut Context<Self>) {
        self.send_packet(packet, ctx);
    }

    /// Closes the Engine.IO session (and with it the Herald session).
    fn shutdown(&mut self, ctx: &mut Context<Self>) {
        match &mut self.transport {
            Transport::WebSocket { out, batch } => {
                let mut last = std::mem::take(batch);
                last.extend([eio::CLOSE.to_string().into(), OutPacket::End]);
                out.send(last);
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

    fn handle_handle(&mut self, ctx: &mut Context<Self>) -> Option<SessionHandle> {
        let auth = self.auth.as_ref()?;
        let route = match &self.inbox {
            Some(r) => r.clone(),
            None => {
                let (route, frames) = inbox::open(
                    self.slow.clone(),
                    inbox::InboxLimits::from_settings(self.port.settings()),
                );
                ctx.add_stream(frames);
                self.inbox = Some(route.clone());
                route
            }
        };
        Some(SessionHandle::new(SessionInfo {
            id: self.id,
            user: auth.user_id.clone(),
            deliver: ctx.address().recipient(),
            inbox: Some(route),
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
        let depth = self.port.settings().limits.max_json_depth;
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
            self.port.touch(self.id, &auth.user_id);
        }
        let limits = ParseLimits::from_settings(self.port.settings());
        // The client's aliases, then Herald's own events, then a custom event for the room
        // its payload names: nothing is dropped unanswered.
        let request = match self.vocabulary.incoming(&name, payload) {
            Ok((kind, data)) => protocol::parse_request_data(kind, data, limits),
            Err(payload) if protocol::REQUEST_TYPES.contains(&name.as_str()) => {
                protocol::parse_request_data(&name, payload, limits)
            }
            Err(payload) => protocol::parse_socketio_custom_event(&name, payload, limits),
        };
        let request = match request {
            Ok(r) => r,
            Err((code, message)) => return self.fail(&ack_id, code, &message, ctx),
        };
        self.handle_request(ack_id, request, ctx);
    }
}

impl Actor for SocketIoSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.port.settings().outbox_frames);
        // An Engine.IO handshake needs no token: a session that has not sent its Socket.IO
        // CONNECT within the handshake deadline holds nothing for longer.
        ctx.run_later(self.port.settings().handshake_timeout, |act, ctx| {
            if act.auth.is_none() && !act.connecting {
                log::info!("socket.io {}: no CONNECT in time", act.sid);
                METRICS.preauth_timeouts.inc();
                act.shutdown(ctx);
            }
        });
        let interval = self.port.settings().sio_ping_interval;
        let timeout = self.port.settings().sio_ping_timeout;
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
            self.port.close_session(self.id, &auth.user_id);
        }
        if let Transport::WebSocket { out, batch } = &mut self.transport {
            let mut last = std::mem::take(batch);
            last.push(OutPacket::End);
            out.send(last);
        }
        Running::Stop
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

/// Frames rooms batched to this session's worker (see `session::inbox`).
impl StreamHandler<Delivered> for SocketIoSession {
    fn handle(&mut self, frames: Delivered, ctx: &mut Context<Self>) {
        if self.auth.is_none() {
            return;
        }
        if let Transport::WebSocket { batch, .. } = &mut self.transport {
            // Room for the turn's packets at once (the batch is handed over empty-handed).
            batch.reserve(frames.len());
        }
        self.on_delivered(frames, ctx);
        self.unread_with_deliveries(ctx);
    }
    /// The inbox ends only when the session does.
    fn finished(&mut self, _: &mut Context<Self>) {}
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
            SessionControl::Hide { user, hidden } => self.hidden.set(user, hidden),
        }
    }
}
