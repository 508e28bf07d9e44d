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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws;
use serde_json::Value;

use crate::auth::AuthenticatedUser;
use crate::domain::{now_millis, rfc3339, ReceiptStatus, RoomId, SessionId, UserId};
use crate::engine::Engine;
use crate::error::ErrorCode;
use crate::metrics::METRICS;
use crate::protocol::{
    self, close_code, ClientRequest, ConnectionAck, EncodedFrame, ErrorBody, ParseLimits,
    ServerFrame,
};
use crate::rate::{RequestLimiter, ABUSE_MESSAGE};
use crate::unread::UnreadCounts;
use crate::wsframe::{self, FrameAssembler, Incoming};

use super::client_session::ClientSession;
use super::continuity::{new_streams, StreamSession};
use super::inflight::InFlight;
use super::requests::{RequestParts, RequestSession};
use super::room_supervisor::AdmissionTicket;
use crate::engine::Resume;
use crate::stream::RoomStreams;

/// Sent by rooms and the presence registry to a session: one encoded server frame, shared by
/// all recipients, and what it is about when the session keeps count of it.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frame: EncodedFrame,
    pub meta: Option<Arc<FrameMeta>>,
}

/// What a delivered frame is about, for the session's unread bookkeeping. Built once per
/// broadcast and shared (an `Arc` clone per recipient, no per-recipient allocation).
#[derive(Debug)]
pub enum FrameMeta {
    Message {
        room: RoomId,
        seq: i64,
        /// The sender.
        from: UserId,
    },
    Receipt {
        room: RoomId,
        user: UserId,
        seq: i64,
        status: ReceiptStatus,
    },
}

/// Sent by the room supervisor and the presence registry to steer a session.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub enum SessionControl {
    /// The session no longer receives a room's traffic (leave, removal): it drops its
    /// local state of the room (unread counts, stream). The supervisor tells the presence
    /// registry itself, once per user. (There is no `Subscribed`: a room new to a session's
    /// streams starts at its first live frame.)
    Unsubscribed { room: RoomId },
    /// As `Unsubscribed`, because the room could not be loaded from the database (it gave up
    /// after `room_load_retry`): the client is told with an `unavailable` error naming the
    /// room, and gets the room again by reconnecting.
    RoomUnavailable { room: RoomId, reason: String },
    /// Close the connection with this code and reason.
    Close { code: u16, reason: String },
}

/// A session's mailbox in bytes: frames are counted when queued and when the session takes
/// them, so a mailbox never holds more than `limit` bytes of frames (broadcast frames are
/// shared, but a session that does not take them keeps them alive).
///
/// A frame that does not fit is dropped, not queued: the `message` frames dropped are
/// remembered per room (highest seq) so that the session catches them up from the database
/// at its next turn (see [`crate::stream`]); others (typing, presence diffs) are only counted.
#[derive(Debug, Default)]
pub struct OutboxGauge {
    slow: AtomicBool,
    bytes: AtomicUsize,
    limit: usize,
    /// Room → highest seq of a dropped `message` frame, since the session last looked.
    lost: std::sync::Mutex<HashMap<RoomId, i64>>,
    /// Other frames dropped since the session last looked.
    lost_other: AtomicUsize,
}

impl OutboxGauge {
    pub fn new(limit: usize) -> Self {
        OutboxGauge {
            limit,
            ..OutboxGauge::default()
        }
    }

    /// Counts `n` more bytes queued; false (and nothing counted) past the limit.
    fn add(&self, n: usize) -> bool {
        let before = self.bytes.fetch_add(n, Ordering::Relaxed);
        if self.limit > 0 && before + n > self.limit && before > 0 {
            self.bytes.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The session took a frame of `n` bytes from its mailbox.
    pub fn taken(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Whether frames were dropped since the session last [took](Self::take_lost) them.
    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }

    /// Records a dropped frame; true the first time since the session last looked (the
    /// caller then makes sure the session gets a turn).
    fn drop_frame(&self, meta: Option<&Arc<FrameMeta>>) -> bool {
        match meta.map(|m| &**m) {
            Some(FrameMeta::Message { room, seq, .. }) => {
                // Poisoning cannot leave the map inconsistent (single inserts): go on.
                let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
                let e = lost.entry(room.clone()).or_insert(*seq);
                *e = (*e).max(*seq);
            }
            _ => {
                self.lost_other.fetch_add(1, Ordering::Relaxed);
            }
        }
        !self.slow.swap(true, Ordering::Relaxed)
    }

    /// The session's turn: what was dropped since it last looked (message seqs per room, and
    /// the count of other frames).
    pub fn take_lost(&self) -> (HashMap<RoomId, i64>, usize) {
        // The flag first: a drop racing with this either lands in the map taken below, or
        // sets the flag again and wakes the session once more.
        self.slow.store(false, Ordering::Relaxed);
        let lost = std::mem::take(&mut *self.lost.lock().unwrap_or_else(|p| p.into_inner()));
        (lost, self.lost_other.swap(0, Ordering::Relaxed))
    }
}

/// When a session last heard from its client (any frame, pong or packet), shared by the
/// session and every handle to it. A socket whose peer stopped reading and answering (a
/// "zombie") stays registered until the heartbeat drops it; this is how others tell it apart
/// from a live one meanwhile. An `Arc` rather than a plain field because some sessions
/// (Socket.IO) make more than one handle; updating it is one relaxed store.
#[derive(Debug)]
pub struct LastHeard(AtomicI64);

impl LastHeard {
    /// Starts as "heard now" (the handshake is the client's first word).
    pub fn now() -> Arc<Self> {
        Arc::new(LastHeard(AtomicI64::new(monotonic_millis())))
    }

    /// The client was heard from just now.
    pub fn heard(&self) {
        self.0.store(monotonic_millis(), Ordering::Relaxed);
    }

    /// How long the client has been silent.
    pub fn silent_for(&self) -> std::time::Duration {
        let ms = monotonic_millis() - self.0.load(Ordering::Relaxed);
        std::time::Duration::from_millis(ms.max(0) as u64)
    }
}

/// Milliseconds on a monotonic clock (since first use): wall-clock jumps must not make every
/// session look silent, or a silent one look alive.
fn monotonic_millis() -> i64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}

/// What happened to a frame handed to [`SessionHandle::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverOutcome {
    Queued,
    /// The outbox was full: the frame was dropped (a `message` frame is caught up from the
    /// database by the session). The session stays subscribed.
    Dropped,
    /// The session is gone; drop it.
    Gone,
}

/// How other actors reach a session (a real `WsSession` or a test probe). Shared: the
/// supervisor, the session's rooms, the presence registry and the notification center each
/// hold one, so a clone is a reference count, not a copy (memory per connection).
#[derive(Clone)]
pub struct SessionHandle(Arc<SessionInfo>);

/// What a [`SessionHandle`] gives access to.
pub struct SessionInfo {
    pub id: SessionId,
    pub user: UserId,
    pub deliver: Recipient<Deliver>,
    pub control: Recipient<SessionControl>,
    /// The session's mailbox in bytes, and what was dropped because it was full.
    pub slow: Arc<OutboxGauge>,
    pub connected_at: i64,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    /// When the client was last heard from (see [`SessionHandle::is_answering`]).
    pub last_heard: Arc<LastHeard>,
    /// The device the client named (`device_id`): its receipts move the device's positions.
    pub device: Option<crate::domain::DeviceId>,
}

impl std::ops::Deref for SessionHandle {
    type Target = SessionInfo;
    fn deref(&self) -> &SessionInfo {
        &self.0
    }
}

impl SessionHandle {
    pub fn new(info: SessionInfo) -> Self {
        SessionHandle(Arc::new(info))
    }

    /// Queues a frame without ever blocking or growing the outbox past its capacity, in
    /// frames or in bytes.
    pub fn deliver(&self, frame: &EncodedFrame, meta: Option<&Arc<FrameMeta>>) -> DeliverOutcome {
        if !self.slow.add(frame.len()) {
            return self.dropped(meta);
        }
        match self.deliver.try_send(Deliver {
            frame: frame.clone(),
            meta: meta.cloned(),
        }) {
            Ok(()) => DeliverOutcome::Queued,
            Err(SendError::Full(_)) => {
                self.slow.taken(frame.len());
                self.dropped(meta)
            }
            Err(SendError::Closed(_)) => {
                self.slow.taken(frame.len());
                DeliverOutcome::Gone
            }
        }
    }

    /// Records the dropped frame and makes sure the session gets a turn to catch up.
    fn dropped(&self, meta: Option<&Arc<FrameMeta>>) -> DeliverOutcome {
        // do_send ignores the capacity on purpose: it guarantees the session one more turn,
        // in which it takes what was dropped. Only once until it has looked, so the mailbox
        // never holds more than its bounds plus this one empty message.
        if self.slow.drop_frame(meta) {
            self.deliver.do_send(Deliver {
                frame: EncodedFrame::default(),
                meta: None,
            });
        }
        DeliverOutcome::Dropped
    }

    /// Whether the client has been heard from within `max_silence`: a session whose peer
    /// stopped answering pings does not count as the user being reachable.
    pub fn is_answering(&self, max_silence: std::time::Duration) -> bool {
        self.last_heard.silent_for() <= max_silence
    }

    pub fn send_control(&self, c: SessionControl) {
        // Control messages are rare and must not be lost to a full outbox.
        self.control.do_send(c);
    }
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionHandle({}, {})", self.id, self.user)
    }
}

/// The native protocol session.
pub struct WsSession {
    id: SessionId,
    auth: AuthenticatedUser,
    engine: Engine,
    last_heard: Instant,
    /// Reassembles fragmented messages.
    frames: FrameAssembler,
    slow: Arc<OutboxGauge>,
    remote_addr: Option<String>,
    user_agent: Option<String>,
    connected_at: i64,
    unread: UnreadCounts,
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
        engine: Engine,
        remote_addr: Option<String>,
        user_agent: Option<String>,
        ticket: AdmissionTicket,
        resume: Resume,
    ) -> Self {
        let engine_limits = engine.settings.limits.clone();
        let streams = new_streams(&engine);
        let frames = FrameAssembler::new(engine.settings.max_frame_bytes);
        let outbox = Arc::new(OutboxGauge::new(engine.settings.outbox_bytes));
        WsSession {
            id: SessionId::next(),
            auth,
            engine,
            last_heard: Instant::now(),
            frames,
            slow: outbox,
            remote_addr,
            user_agent,
            connected_at: now_millis(),
            unread: UnreadCounts::default(),
            last_touch: None,
            limiter: RequestLimiter::new(&engine_limits),
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
        self.engine
            .presence
            .do_send(crate::actors::presence_registry::Touch {
                session: self.id,
                user: self.auth.user_id.clone(),
            });
    }

    /// The handle other actors reach this session by: made once, then shared.
    fn session_handle(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> SessionHandle {
        if let Some(h) = &self.handle {
            return h.clone();
        }
        let h = SessionHandle::new(SessionInfo {
            id: self.id,
            user: self.auth.user_id.clone(),
            deliver: ctx.address().recipient(),
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
        wsframe::close(ctx, code, reason);
    }

    fn heartbeat(&self, ctx: &mut ws::WebsocketContext<Self>) {
        let interval = self.engine.settings.heartbeat_interval;
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
        let limits = ParseLimits::from_settings(&self.engine.settings);
        match protocol::parse_client_frame(text, limits) {
            Ok(frame) => {
                if !matches!(frame.request, ClientRequest::Ping) {
                    self.touch();
                }
                self.handle_request(frame.reference, frame.request, ctx)
            }
            Err(e) => send_error(ctx, e.reference.as_ref(), e.code, &e.message),
        }
    }
}

/// Writes an `error` frame and counts it.
fn send_error(
    ctx: &mut ws::WebsocketContext<WsSession>,
    reference: Option<&Value>,
    code: ErrorCode,
    message: &str,
) {
    METRICS.errors.with_label_values(&[code.as_str()]).inc();
    ctx.text(
        ServerFrame::error(reference, code, message)
            .encode()
            .into_native(),
    );
}

impl RequestSession for WsSession {
    type Reference = Option<Value>;

    fn request_parts(&mut self) -> Option<RequestParts<'_, Self>> {
        Some(RequestParts {
            engine: &self.engine,
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
        ctx.text(ack.encode().into_native());
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
        ctx.text(error.encode().into_native());
    }
    fn write_pong(&mut self, reference: &Option<Value>, ctx: &mut Self::Ctx) {
        let pong = ServerFrame::Pong {
            reference: reference.as_ref(),
        };
        ctx.text(pong.encode().into_native());
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
        let auth = &self.engine.settings.auth;
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
        send_error(ctx, None, ErrorCode::TokenExpired, &msg);
    }
    fn end_expired(&mut self, ctx: &mut Self::Ctx) {
        self.close(ctx, close_code::AUTH_FAILED, "token expired");
    }
    fn unread(&mut self) -> &mut UnreadCounts {
        &mut self.unread
    }
    fn send_unread(&mut self, frame: EncodedFrame, ctx: &mut Self::Ctx) {
        ctx.text(frame.into_native());
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        METRICS.connections.inc();
        METRICS.connections_total.inc();
        ctx.set_mailbox_capacity(self.engine.settings.outbox_frames);
        let ack = ServerFrame::ConnectionAck(ConnectionAck {
            heartbeat_interval_ms: self.engine.settings.heartbeat_interval.as_millis() as u64,
            protocol: protocol::PROTOCOL_VERSION,
            server_time: rfc3339(now_millis()),
            server_version: env!("CARGO_PKG_VERSION"),
            session_id: self.id.to_string(),
            user_id: &self.auth.user_id,
        });
        ctx.text(ack.encode().into_native());
        self.heartbeat(ctx);
        self.arm_expiry(ctx);
        let handle = self.session_handle(ctx);
        let engine = self.engine.clone();
        let resume = self.resume.take().unwrap_or_default();
        // Registration is the one place the session waits: requests and room frames that
        // arrive meanwhile are processed only once the session knows where each room's
        // stream starts.
        ctx.wait(
            async move { engine.open_session(handle, resume).await }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(start) => {
                        act.unread.seed(&start.rooms);
                        for f in start.frames {
                            ctx.text(f.into_native());
                        }
                        act.start_streams(start.replay, ctx);
                    }
                    Err(e) => {
                        log::warn!(
                            "session {} of {}: registration failed: {e}",
                            act.id,
                            act.auth.user_id
                        );
                        send_error(ctx, None, e.code(), &e.to_string());
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
        self.engine.close_session(self.id, &self.auth.user_id);
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

impl StreamSession for WsSession {
    fn streams(&mut self) -> &mut RoomStreams {
        &mut self.streams
    }
    fn engine(&self) -> &Engine {
        &self.engine
    }
    fn outbox(&self) -> &Arc<OutboxGauge> {
        &self.slow
    }
    fn count_unread(&mut self, meta: &FrameMeta) -> bool {
        self.unread.apply(&self.auth.user_id, meta)
    }
    /// Always taken: past its byte bound the transport stops polling this session, which
    /// then waits (and its rooms' frames are dropped and caught up later).
    fn write_native(&mut self, frame: EncodedFrame, ctx: &mut Self::Ctx) -> bool {
        ctx.text(frame.into_native());
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
                ctx.text(error.encode().into_native());
                self.forget_room(room);
            }
            SessionControl::Close { code, reason } => self.close(ctx, code, &reason),
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        if let Some(h) = &self.handle {
            h.last_heard.heard();
        }
        match wsframe::answer_control(self.frames.push(msg), ctx) {
            Some(Incoming::Text(text)) => self.on_text(&text, ctx),
            Some(Incoming::Binary(_)) => send_error(
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

#[cfg(test)]
mod tests {
    use super::{LastHeard, OutboxGauge};

    #[test]
    fn a_session_is_answering_until_it_has_been_silent_too_long() {
        let heard = LastHeard::now();
        assert!(heard.silent_for() < std::time::Duration::from_secs(1));
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(heard.silent_for() >= std::time::Duration::from_millis(30));
        heard.heard();
        assert!(heard.silent_for() < std::time::Duration::from_millis(30));
    }

    #[test]
    fn the_mailbox_is_bounded_in_bytes_and_overflows_once() {
        let g = OutboxGauge::new(100);
        // One frame larger than the bound alone still fits an empty mailbox.
        assert!(g.add(150));
        g.taken(150);
        assert!(g.add(60));
        assert!(g.add(40));
        assert!(!g.add(1), "past the bound");
        g.taken(60);
        assert!(g.add(50));
        assert!(g.drop_frame(None), "first drop wakes the session");
        assert!(!g.drop_frame(None), "only once until it looks");
        assert!(g.is_slow());
        assert_eq!(g.take_lost().1, 2);
        assert!(!g.is_slow());
    }
}
