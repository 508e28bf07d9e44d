//! How the engine reaches a session of any kind (`WsSession`, `SocketIoSession`,
//! `NotificationSocket`): the shared [`SessionHandle`] and its bounded delivery
//! ([`OutboxGauge`], [`DeliverOutcome`]), liveness ([`LastHeard`]), and the two messages every
//! session handles, [`Deliver`] and [`SessionControl`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::inbox::InboxRoute;
use crate::domain::{ReceiptStatus, RoomId, SessionId, UserId};
use crate::protocol::EncodedFrame;

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
    /// `user` blocked (`hidden`) or unblocked this session's user: hide them from (or show
    /// them again in) the `room_presence` and `typing` frames of shared rooms.
    Hide { user: UserId, hidden: bool },
}

/// What a session lost to a full outbox, whether it is gone, and (for a session without an
/// inbox slot, which counts its own, see `inbox.rs`) its actor mailbox in bytes: frames are
/// counted when queued and when the session takes them, so a mailbox never holds more than
/// `limit` bytes of frames (broadcast frames are shared, but a session that does not take
/// them keeps them alive).
///
/// A frame that does not fit is dropped, not queued: the `message` frames dropped are
/// remembered per room (highest seq) so that the session catches them up from the database
/// at its next turn (see [`crate::stream`]); others (typing, presence diffs) are only counted.
#[derive(Debug, Default)]
pub struct OutboxGauge {
    slow: AtomicBool,
    /// The session stopped (its inbox slot is gone): rooms drop it.
    closed: AtomicBool,
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
    pub(super) fn add(&self, n: usize) -> bool {
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

    /// The session stopped: nothing more is delivered to it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Whether frames were dropped since the session last [took](Self::take_lost) them.
    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }

    /// Records a dropped frame; true the first time since the session last looked (the
    /// caller then makes sure the session gets a turn).
    pub(super) fn drop_frame(&self, meta: Option<&Arc<FrameMeta>>) -> bool {
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

/// Which way an admitted frame goes (see [`SessionHandle::admit`]).
pub enum Admitted<'a> {
    /// To the session's slot on its worker, batched with the other recipients there.
    Inbox(&'a InboxRoute),
    /// Through the actor mailbox.
    Mailbox,
    /// Not delivered.
    Not(DeliverOutcome),
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
    /// Where frames go when the session has no inbox (test probes).
    pub deliver: Recipient<Deliver>,
    /// The session's slot on its worker thread, which rooms batch their frames to.
    pub inbox: Option<InboxRoute>,
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
        match self.admit(frame, meta) {
            Admitted::Inbox(route) => {
                route.deliver(frame.clone(), meta.cloned());
                DeliverOutcome::Queued
            }
            Admitted::Mailbox => self.to_mailbox(frame, meta),
            Admitted::Not(outcome) => outcome,
        }
    }

    /// The first half of a delivery: whether the session is there and has room, and which
    /// way the frame goes. Through the inbox, room means its worker is within its bound (the
    /// slot's own bounds are checked on the worker); through the mailbox, the bytes fit and
    /// are then counted. A room fanning out calls this per recipient and sends one
    /// [`Batch`](super::inbox::Batch) per worker.
    pub fn admit(&self, frame: &EncodedFrame, meta: Option<&Arc<FrameMeta>>) -> Admitted<'_> {
        if self.slow.is_closed() {
            return Admitted::Not(DeliverOutcome::Gone);
        }
        match &self.inbox {
            Some(route) if route.worker.is_full() => Admitted::Not(self.dropped(meta)),
            Some(route) => Admitted::Inbox(route),
            None if !self.slow.add(frame.len()) => Admitted::Not(self.dropped(meta)),
            None => Admitted::Mailbox,
        }
    }

    /// Sends an admitted frame through the actor mailbox (sessions without an inbox).
    pub fn to_mailbox(
        &self,
        frame: &EncodedFrame,
        meta: Option<&Arc<FrameMeta>>,
    ) -> DeliverOutcome {
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
            match &self.inbox {
                Some(route) => route.deliver(EncodedFrame::default(), None),
                None => self.deliver.do_send(Deliver {
                    frame: EncodedFrame::default(),
                    meta: None,
                }),
            }
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
#[cfg(test)]
mod tests {
    use super::{Deliver, DeliverOutcome, FrameMeta, SessionControl, SessionHandle, SessionInfo};
    use super::{LastHeard, OutboxGauge};
    use crate::actors::session::inbox::{self, InboxLimits};
    use crate::domain::{RoomId, SessionId, UserId};
    use crate::protocol::EncodedFrame;
    use actix::prelude::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Stands in for a session's actor: a handle needs its addresses, this test none of
    /// what it would do.
    struct Nobody;
    impl Actor for Nobody {
        type Context = Context<Self>;
    }
    impl Handler<Deliver> for Nobody {
        type Result = ();
        fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
    }
    impl Handler<SessionControl> for Nobody {
        type Result = ();
        fn handle(&mut self, _: SessionControl, _: &mut Context<Self>) {}
    }

    #[actix_web::test]
    async fn a_worker_past_its_bound_gets_no_frame_and_the_session_catches_up() {
        // Arrange: a session whose worker has more than its bound waiting (the drain task
        // runs only when the test awaits).
        let gauge = Arc::new(OutboxGauge::new(1 << 20));
        let limits = InboxLimits {
            max_frames: 16,
            max_bytes: 1 << 20,
            gather: Duration::ZERO,
            worker_bytes: 1000,
        };
        let (route, _frames) = inbox::open(gauge.clone(), limits);
        let nobody = Nobody.start();
        let handle = SessionHandle::new(SessionInfo {
            id: SessionId::next(),
            user: UserId::parse("u").unwrap(),
            deliver: nobody.clone().recipient(),
            inbox: Some(route.clone()),
            control: nobody.recipient(),
            slow: gauge.clone(),
            connected_at: 0,
            remote_addr: None,
            user_agent: None,
            last_heard: LastHeard::now(),
            device: None,
        });
        let big = EncodedFrame::from_data("event", &format!("{:?}", "x".repeat(1200)))
            .unwrap_or_default();
        route.deliver(big.clone(), None);
        assert!(route.worker.is_full());

        // Act: a room's message for the session.
        let room = RoomId::parse("public:r").unwrap();
        let meta = Arc::new(FrameMeta::Message {
            room: room.clone(),
            seq: 9,
            from: UserId::parse("v").unwrap(),
        });
        let outcome = handle.deliver(&big, Some(&meta));

        // Assert: dropped, and recorded so that the session reads seq 9 from the database.
        assert_eq!(outcome, DeliverOutcome::Dropped);
        assert!(gauge.is_slow());
        let (lost, _) = gauge.take_lost();
        assert_eq!(lost.get(&room), Some(&9));
    }

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
