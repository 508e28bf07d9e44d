//! How deliveries reach a session on its worker thread: one message per worker per
//! broadcast instead of one actor message per recipient.
//!
//! Rooms live on the system arbiter and sessions on the HTTP workers. An actix message per
//! recipient costs a boxed envelope, a mailbox push and a cross-thread wake-up, per delivery:
//! in the 1,000 × 500 fan-out profile that was a fifth of the server's CPU. Here each worker
//! thread has a [`WorkerInbox`]: a room sends it one [`Batch`] naming the recipients on that
//! worker, and the worker's drain task (on the same thread as the sessions) appends the
//! shared frame to each recipient's [`Slot`], a plain queue, and wakes the session's task
//! locally. The session takes its frames as a stream ([`InboxStream`], added to the actor's
//! context): everything queued at once, in its own turn, so they go out in one write.
//!
//! Gathering (`HERALD_WS_WRITE_GATHER_MS`): a session's turn costs more than the frame it
//! handles (actix polls the whole context at each wake-up), and each turn ends in a system
//! call. So a busy session, one whose frames come more than two per window and more than
//! 100 a second, and that was woken less than the window ago, is not woken again; it waits
//! on its worker's release list ([`hold`]) until its window has passed, then takes what
//! came meanwhile in one turn.
//!
//! A room's message goes to a worker as one batch naming a shared list of slots (the room's
//! subscribers there, kept by the room between membership changes), so fanning out costs the
//! room one send per worker, not work per recipient; the sender's own slot is named as the
//! batch's `except` and gets the frame's meta alone (its stream moves past the seq).
//!
//! Bounds: a slot holds at most `outbox_frames` frames and `outbox_bytes` bytes, counted on
//! the worker thread as frames are queued and taken. Past either bound the frame is dropped
//! and recorded (`OutboxGauge::drop_frame`), and the session catches the room's messages up
//! from the database at its next turn, exactly as with a full mailbox. The batches waiting
//! for a worker are bounded too (`HERALD_WORKER_INBOX_BYTES`, counted per batch): past it,
//! rooms drop and record new frames for that worker's sessions in the same way.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::stream::Stream;
use tokio::sync::mpsc;

use super::handle::{Deliver, FrameMeta, OutboxGauge};
use crate::protocol::EncodedFrame;

/// One frame for some of the sessions of one worker.
pub struct Batch {
    pub frame: EncodedFrame,
    pub meta: Option<Arc<FrameMeta>>,
    /// Shared between the batches of a room's messages while its subscribers stay the same.
    pub to: Arc<[SlotId]>,
    /// One of `to` that gets an empty frame with the meta instead (the sender of a message).
    pub except: Option<SlotId>,
}

impl Batch {
    /// What the batch counts for against its worker's bound: the frame (shared with other
    /// workers' batches, but held until each worker is done) and the batch itself.
    fn weight(&self) -> usize {
        self.frame.len() + std::mem::size_of::<Batch>()
    }
}

/// What bounds a session's slot and its worker's inbox (from the settings).
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    /// Frames queued in one slot (`HERALD_OUTBOX_FRAMES`).
    pub max_frames: usize,
    /// Bytes of frames queued in one slot (`HERALD_OUTBOX_BYTES`).
    pub max_bytes: usize,
    /// How long a busy session's frames wait for the worker's release (zero: never).
    pub gather: Duration,
    /// Bytes of batches waiting for the worker (`HERALD_WORKER_INBOX_BYTES`).
    pub worker_bytes: usize,
}

impl InboxLimits {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        InboxLimits {
            max_frames: s.outbox_frames,
            max_bytes: s.outbox_bytes,
            gather: s.ws_write_gather,
            worker_bytes: s.worker_inbox_bytes,
        }
    }
}

/// A session's slot on its worker: index and generation (a reused index is another slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId {
    index: u32,
    generation: u32,
}

impl SlotId {
    /// Its place in the worker's slot table.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// The sending side of a worker's inbox; rooms hold it through the sessions' handles.
#[derive(Debug)]
pub struct WorkerInbox {
    tx: mpsc::UnboundedSender<Batch>,
    /// Bytes of the batches sent and not yet handed to the slots (see [`Batch::weight`]).
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl WorkerInbox {
    /// Hands a batch to the worker (its drain task wakes once for it).
    pub fn send(&self, batch: Batch) {
        self.waiting.fetch_add(batch.weight(), Ordering::Relaxed);
        // A closed inbox means the worker's runtime is gone, and its sessions with it.
        let _ = self.tx.send(batch);
    }

    /// The worker is further behind than its bound: new frames for its sessions are dropped
    /// (and recorded, so that their messages are caught up) until it catches up.
    pub fn is_full(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > self.max_waiting
    }
}

/// How a room reaches one session through its worker's inbox.
#[derive(Debug, Clone)]
pub struct InboxRoute {
    pub worker: Arc<WorkerInbox>,
    pub slot: SlotId,
}

impl InboxRoute {
    /// Hands one frame to this session alone (a batch of one).
    pub fn deliver(&self, frame: EncodedFrame, meta: Option<Arc<FrameMeta>>) {
        self.worker.send(Batch {
            frame,
            meta,
            to: Arc::new([self.slot]),
            except: None,
        });
    }
}

/// A session's queue on its worker thread.
struct Slot {
    /// Shared with the worker's other recipients of the same frame: one reference count
    /// on the worker's own thread per recipient, instead of two atomic ones on counts
    /// that both workers touch at once.
    queue: RefCell<VecDeque<Rc<Deliver>>>,
    waker: RefCell<Option<Waker>>,
    gauge: Arc<OutboxGauge>,
    /// Bytes of the frames queued (counted here, on the worker's own thread).
    bytes: Cell<usize>,
    max_bytes: usize,
    max_frames: usize,
    /// How long a busy session's frames wait for the worker's release (zero: never).
    gather: Duration,
    /// When the session was last woken for its frames.
    last_wake: Cell<Option<Instant>>,
    /// Waiting for the worker's release (see [`hold`]).
    held: Cell<bool>,
    /// How many frames the session took last time: the next queue starts that large.
    last_taken: Cell<usize>,
    /// When the last frame came, and the running average of the time between frames (each
    /// gap counted as at most the window; it starts there): whether frames come more than
    /// two per window.
    last_push: Cell<Option<Instant>>,
    gap: Cell<Duration>,
}

impl Slot {
    fn push(self: &Rc<Self>, deliver: &Rc<Deliver>, now: Instant) {
        let mut queue = self.queue.borrow_mut();
        let len = deliver.frame.len();
        let bytes = self.bytes.get();
        // One frame larger than the bound alone still fits an empty slot.
        let full = queue.len() >= self.max_frames || (bytes > 0 && bytes + len > self.max_bytes);
        if full && len > 0 {
            if self.gauge.drop_frame(deliver.meta.as_ref()) {
                crate::metrics::METRICS.slow_consumers.inc();
                // The session must get a turn to take what was dropped.
                queue.push_back(Rc::new(Deliver {
                    frame: EncodedFrame::default(),
                    meta: None,
                }));
            } else {
                return;
            }
        } else {
            if queue.capacity() == 0 {
                // Grown once, not doubling from empty at every turn.
                queue.reserve(self.last_taken.get());
            }
            self.bytes.set(bytes + len);
            queue.push_back(deliver.clone());
        }
        drop(queue);
        self.wake(now);
    }

    /// Wakes the session for its frames, unless it is awake already (it takes everything
    /// queued), or it is busy and was woken less than `gather` ago: then the frames wait for
    /// the worker's release, so the session takes them in one turn and writes them in one
    /// call.
    fn wake(self: &Rc<Self>, now: Instant) {
        if !self.gather.is_zero() {
            let gap = self
                .last_push
                .replace(Some(now))
                .map_or(self.gather, |t| now.saturating_duration_since(t))
                .min(self.gather);
            self.gap.set((self.gap.get() * 3 + gap) / 4);
        }
        if self.held.get() {
            return;
        }
        let mut waker = self.waker.borrow_mut();
        if waker.is_none() {
            return;
        }
        // Busy: frames have been coming more than two per window and more than 100 a second
        // (on average over the last few), and the session was woken less than the window
        // ago. A session getting a frame now and then is never held.
        let busy = !self.gather.is_zero()
            && self.gap.get() < (self.gather / 2).min(BUSY_GAP)
            && self
                .last_wake
                .get()
                .is_some_and(|t| now.saturating_duration_since(t) < self.gather);
        if busy {
            self.held.set(true);
            hold(self.clone());
            return;
        }
        self.last_wake.set(Some(now));
        if let Some(w) = waker.take() {
            w.wake();
        }
    }
}

/// Frames closer than this on average (more than 100 a second) make a session busy, whatever
/// the window: a longer window gathers more frames per write for a firehose connection
/// without holding one that gets a few dozen frames a second.
const BUSY_GAP: Duration = Duration::from_millis(10);

/// The slots of this worker thread waiting for their release, and whether its timer runs.
#[derive(Default)]
struct Held {
    slots: Vec<Rc<Slot>>,
    armed: bool,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

/// Puts a busy slot on its worker's release list: one timer per worker thread, running only
/// while a slot waits, never one per session.
fn hold(slot: Rc<Slot>) {
    let tick = release_tick(slot.gather);
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.slots.push(slot);
        if !h.armed {
            h.armed = true;
            actix_web::rt::spawn(release(tick));
        }
    });
}

/// How often the worker looks for slots due: a quarter of the window (at least 1 ms), so
/// a frame waits at most the window and a quarter.
fn release_tick(window: Duration) -> Duration {
    (window / 4).max(Duration::from_millis(1))
}

/// Every `tick` while slots wait: wakes the sessions whose window since their last wake-up
/// has passed. A session's frames thus wait for its own window, not for a shared one: one
/// that gets a frame just before its window ends waits only for the rest of it.
async fn release(tick: Duration) {
    let mut due = Vec::new();
    loop {
        actix_web::rt::time::sleep(tick).await;
        let now = Instant::now();
        let more = HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.slots.retain(|slot| {
                let waited = slot
                    .last_wake
                    .get()
                    .is_none_or(|t| now.saturating_duration_since(t) >= slot.gather);
                if waited {
                    due.push(slot.clone());
                }
                !waited
            });
            h.armed = !h.slots.is_empty();
            h.armed
        });
        if !due.is_empty() {
            crate::metrics::METRICS.ws_write_flushes.inc();
        }
        for slot in due.drain(..) {
            slot.held.set(false);
            slot.last_wake.set(Some(now));
            let waker = slot.waker.borrow_mut().take();
            if let Some(w) = waker {
                w.wake();
            }
        }
        if !more {
            return;
        }
    }
}

/// The slots of one worker thread and the task that fills them.
#[derive(Default)]
struct LocalSlots {
    inbox: Option<Arc<WorkerInbox>>,
    slots: Vec<Option<Rc<Slot>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
}

thread_local! {
    static LOCAL: RefCell<LocalSlots> = RefCell::new(LocalSlots::default());
}

/// Opens a slot for a session on the current thread (an actix worker, or the system thread
/// in tests): its route for the handle, and the stream the session takes its frames from.
pub fn open(gauge: Arc<OutboxGauge>, limits: InboxLimits) -> (InboxRoute, InboxStream) {
    let gather = limits.gather;
    let slot = Rc::new(Slot {
        queue: RefCell::new(VecDeque::new()),
        waker: RefCell::new(None),
        gauge,
        bytes: Cell::new(0),
        max_bytes: limits.max_bytes,
        max_frames: limits.max_frames.max(1),
        gather,
        last_wake: Cell::new(None),
        held: Cell::new(false),
        last_taken: Cell::new(0),
        last_push: Cell::new(None),
        gap: Cell::new(gather),
    });
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let worker = match &l.inbox {
            Some(w) if !w.tx.is_closed() => w.clone(),
            _ => {
                // First session of this thread (or of a new runtime on it): start the drain.
                let (tx, rx) = mpsc::unbounded_channel();
                let w = Arc::new(WorkerInbox {
                    tx,
                    waiting: AtomicUsize::new(0),
                    max_waiting: limits.worker_bytes,
                });
                actix_web::rt::spawn(drain(rx, w.clone()));
                l.inbox = Some(w.clone());
                w
            }
        };
        let index = match l.free.pop() {
            Some(i) => i,
            None => {
                l.slots.push(None);
                l.generations.push(0);
                (l.slots.len() - 1) as u32
            }
        };
        l.slots[index as usize] = Some(slot.clone());
        let id = SlotId {
            index,
            generation: l.generations[index as usize],
        };
        (
            InboxRoute { worker, slot: id },
            InboxStream {
                slot,
                id,
                closed: Cell::new(false),
            },
        )
    })
}

/// Fills the slots of this thread with what rooms sent.
async fn drain(mut rx: mpsc::UnboundedReceiver<Batch>, inbox: Arc<WorkerInbox>) {
    let mut batches = Vec::new();
    while rx.recv_many(&mut batches, 64).await > 0 {
        let now = Instant::now();
        let weight: usize = batches.iter().map(Batch::weight).sum();
        LOCAL.with(|l| {
            let l = l.borrow();
            for b in batches.drain(..) {
                let to = b.to;
                let except = b.except;
                let own = except.map(|_| {
                    Rc::new(Deliver {
                        frame: EncodedFrame::default(),
                        meta: b.meta.clone(),
                    })
                });
                let deliver = Rc::new(Deliver {
                    frame: b.frame,
                    meta: b.meta,
                });
                for id in to.iter() {
                    let slot = match l.slots.get(id.index as usize) {
                        Some(Some(slot)) if l.generations[id.index as usize] == id.generation => {
                            slot
                        }
                        // The session is gone (its room has not heard yet).
                        _ => continue,
                    };
                    match &own {
                        Some(own) if except == Some(*id) => slot.push(own, now),
                        _ => slot.push(&deliver, now),
                    }
                }
            }
        });
        inbox.waiting.fetch_sub(weight, Ordering::Relaxed);
    }
}

/// What a session takes its delivered frames from. Dropping it (the actor stopped) frees
/// the slot and marks the session gone for the rooms.
pub struct InboxStream {
    slot: Rc<Slot>,
    id: SlotId,
    closed: Cell<bool>,
}

/// Every frame queued for a session when it took them: handled in one turn, so they go
/// out in one write (actix would otherwise yield between stream items every 16).
pub struct Delivered(VecDeque<Rc<Deliver>>);

impl Delivered {
    /// How many frames were taken.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for Delivered {
    type Item = Rc<Deliver>;
    type IntoIter = std::collections::vec_deque::IntoIter<Rc<Deliver>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Stream for InboxStream {
    type Item = Delivered;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivered>> {
        let mut queue = self.slot.queue.borrow_mut();
        if !queue.is_empty() {
            // Taken whole: an idle session keeps no queue capacity.
            self.slot.last_taken.set(queue.len());
            self.slot.bytes.set(0);
            return Poll::Ready(Some(Delivered(std::mem::take(&mut *queue))));
        }
        let mut w = self.slot.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for InboxStream {
    fn drop(&mut self) {
        if self.closed.replace(true) {
            return;
        }
        self.slot.gauge.close();
        // A thread-local already torn down (thread exit) has nothing left to free.
        let _ = LOCAL.try_with(|l| {
            let mut l = l.borrow_mut();
            let i = self.id.index as usize;
            if l.generations.get(i) == Some(&self.id.generation) {
                l.slots[i] = None;
                l.generations[i] = l.generations[i].wrapping_add(1);
                l.free.push(self.id.index);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn frame(text: &str) -> EncodedFrame {
        let data = serde_json::to_string(text).unwrap_or_default();
        EncodedFrame::from_data("event", &data).unwrap_or_default()
    }

    /// The next `n` frames the session takes, however many turns they come in.
    async fn frames(s: &mut InboxStream, n: usize) -> Vec<EncodedFrame> {
        let mut out = Vec::new();
        while out.len() < n {
            match s.next().await {
                Some(taken) => out.extend(taken.into_iter().map(|d| d.frame.clone())),
                None => break,
            }
        }
        out
    }

    fn send(route: &InboxRoute, text: &str) {
        route.deliver(frame(text), None);
    }

    fn limits(max_frames: usize, gather: Duration) -> InboxLimits {
        InboxLimits {
            max_frames,
            max_bytes: 1 << 20,
            gather,
            worker_bytes: 1 << 30,
        }
    }

    #[actix_web::test]
    async fn a_batch_reaches_every_named_slot_once_and_in_order() {
        let ga = Arc::new(OutboxGauge::new(1 << 20));
        let gb = Arc::new(OutboxGauge::new(1 << 20));
        let (ra, mut sa) = open(ga, limits(16, Duration::ZERO));
        let (rb, mut sb) = open(gb, limits(16, Duration::ZERO));
        assert!(Arc::ptr_eq(&ra.worker, &rb.worker), "one inbox per thread");
        for text in ["one", "two"] {
            ra.worker.send(Batch {
                frame: frame(text),
                meta: None,
                to: Arc::new([ra.slot, rb.slot]),
                except: None,
            });
        }
        for s in [&mut sa, &mut sb] {
            assert_eq!(frames(s, 2).await, vec![frame("one"), frame("two")]);
        }
    }

    #[actix_web::test]
    async fn past_the_frame_cap_frames_are_dropped_and_recorded_once() {
        let gauge = Arc::new(OutboxGauge::new(1 << 20));
        let (route, mut stream) = open(gauge.clone(), limits(2, Duration::ZERO));
        for text in ["a", "b", "c", "d"] {
            send(&route, text);
        }
        assert_eq!(
            frames(&mut stream, 3).await,
            vec![frame("a"), frame("b"), EncodedFrame::default()],
            "a and b, then one empty frame: a turn"
        );
        assert!(gauge.is_slow());
        assert_eq!(gauge.take_lost().1, 2, "c and d dropped");
    }

    #[actix_web::test]
    async fn past_the_byte_bound_frames_are_dropped_and_taking_frees_the_bytes() {
        let gauge = Arc::new(OutboxGauge::new(1 << 20));
        let size = frame("aaaa").len();
        let bound = InboxLimits {
            max_bytes: size * 2,
            ..limits(100, Duration::ZERO)
        };
        let (route, mut stream) = open(gauge.clone(), bound);
        for text in ["aaaa", "bbbb", "cccc"] {
            send(&route, text);
        }
        assert_eq!(
            frames(&mut stream, 3).await,
            vec![frame("aaaa"), frame("bbbb"), EncodedFrame::default()],
            "two frames fit, the third is dropped: an empty frame for a turn"
        );
        assert_eq!(gauge.take_lost().1, 1);
        // Taken: the bytes are free again.
        send(&route, "dddd");
        send(&route, "eeee");
        assert_eq!(
            frames(&mut stream, 2).await,
            vec![frame("dddd"), frame("eeee")]
        );
        assert!(!gauge.is_slow());
    }

    #[actix_web::test]
    async fn a_shared_batch_gives_its_except_slot_the_meta_alone() {
        let (ra, mut sa) = open(
            Arc::new(OutboxGauge::new(1 << 20)),
            limits(16, Duration::ZERO),
        );
        let (rb, mut sb) = open(
            Arc::new(OutboxGauge::new(1 << 20)),
            limits(16, Duration::ZERO),
        );
        let meta = Arc::new(FrameMeta::Message {
            room: crate::domain::RoomId::parse("public:r").unwrap(),
            seq: 7,
            from: crate::domain::UserId::parse("a").unwrap(),
        });
        let to: Arc<[SlotId]> = Arc::new([ra.slot, rb.slot]);
        ra.worker.send(Batch {
            frame: frame("hello"),
            meta: Some(meta.clone()),
            to: to.clone(),
            except: Some(ra.slot),
        });
        let own = sa.next().await.map(|d| d.into_iter().collect::<Vec<_>>());
        let other = sb.next().await.map(|d| d.into_iter().collect::<Vec<_>>());
        let (Some(own), Some(other)) = (own, other) else {
            panic!("both sessions get a turn");
        };
        assert!(own[0].frame.is_empty(), "the sender gets no frame");
        assert!(own[0].meta.as_ref().is_some_and(|m| Arc::ptr_eq(m, &meta)));
        assert_eq!(other[0].frame, frame("hello"));
        assert!(other[0]
            .meta
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, &meta)));
    }

    #[actix_web::test]
    async fn a_worker_further_behind_than_its_bound_is_full_until_it_drains() {
        let bound = InboxLimits {
            worker_bytes: 1000,
            ..limits(16, Duration::ZERO)
        };
        let (route, mut stream) = open(Arc::new(OutboxGauge::new(1 << 20)), bound);
        let text = |n: usize| "x".repeat(n);
        // The drain runs on this thread only when the test awaits: the batches wait.
        send(&route, &text(400));
        assert!(!route.worker.is_full());
        send(&route, &text(700));
        assert!(route.worker.is_full(), "more than 1,000 bytes wait");
        assert_eq!(
            frames(&mut stream, 2).await,
            vec![frame(&text(400)), frame(&text(700))]
        );
        assert!(!route.worker.is_full(), "handed over: nothing waits");
    }

    #[actix_web::test]
    async fn a_dropped_stream_frees_its_slot_and_marks_the_session_gone() {
        let gauge = Arc::new(OutboxGauge::new(1 << 20));
        let (old, stream) = open(gauge.clone(), limits(4, Duration::ZERO));
        drop(stream);
        assert!(gauge.is_closed());
        let (new, mut stream) = open(
            Arc::new(OutboxGauge::new(1 << 20)),
            limits(4, Duration::ZERO),
        );
        assert_eq!(old.slot.index, new.slot.index, "the index is reused");
        assert_ne!(old.slot, new.slot, "under another generation");
        send(&old, "stale");
        send(&new, "fresh");
        assert_eq!(frames(&mut stream, 1).await, vec![frame("fresh")]);
    }

    /// Counts the wake-ups of a session (polled by hand: the test's own task is polled
    /// whenever any task on its thread is woken).
    struct Wakes(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Polls the stream once as the session: the frames it takes now (none: it waits).
    fn take_now(s: &mut InboxStream, wakes: &Arc<Wakes>) -> Vec<EncodedFrame> {
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        match Pin::new(s).poll_next(&mut cx) {
            Poll::Ready(Some(taken)) => taken.into_iter().map(|d| d.frame.clone()).collect(),
            _ => Vec::new(),
        }
    }

    #[actix_web::test]
    async fn a_busy_session_takes_its_frames_at_the_release_in_one_turn() {
        use actix_web::rt::time::sleep;
        use std::sync::atomic::Ordering::SeqCst;
        let window = Duration::from_millis(100);
        let wakes = Arc::new(Wakes(Default::default()));
        let woken = || wakes.0.load(SeqCst);
        let settle = || sleep(Duration::from_millis(5));
        let (route, mut stream) = open(Arc::new(OutboxGauge::new(1 << 20)), limits(16, window));
        assert!(
            take_now(&mut stream, &wakes).is_empty(),
            "waits from its start"
        );

        // One frame at a time: every frame wakes the session at once.
        send(&route, "a");
        settle().await;
        assert_eq!(woken(), 1, "quiet: woken at once");
        assert_eq!(take_now(&mut stream, &wakes), vec![frame("a")]);
        assert!(take_now(&mut stream, &wakes).is_empty(), "waits again");
        send(&route, "b");
        settle().await;
        assert_eq!(woken(), 2, "took one frame last time: not held");
        assert_eq!(take_now(&mut stream, &wakes), vec![frame("b")]);

        // A burst: frames come faster than two per window and 100 a second: busy.
        let burst = ["c", "d", "d", "d", "d", "d", "d", "d", "d", "d"];
        for f in burst {
            send(&route, f);
        }
        settle().await;
        assert_eq!(take_now(&mut stream, &wakes), burst.map(frame).to_vec());
        assert!(take_now(&mut stream, &wakes).is_empty(), "waits again");
        let before = woken();
        send(&route, "e");
        send(&route, "f");
        sleep(Duration::from_millis(20)).await;
        assert_eq!(
            woken(),
            before,
            "busy, woken less than the window ago: held"
        );
        // Watched in small steps, so what follows is timed from the release.
        for _ in 0..60 {
            if woken() > before {
                break;
            }
            settle().await;
        }
        assert_eq!(woken(), before + 1, "the worker's release woke it once");
        assert_eq!(
            take_now(&mut stream, &wakes),
            vec![frame("e"), frame("f")],
            "both in one turn"
        );
        assert!(take_now(&mut stream, &wakes).is_empty());

        // Quiet for the window: woken at once again.
        sleep(window * 2).await;
        send(&route, "h");
        settle().await;
        assert_eq!(woken(), before + 2, "quiet for the window: woken at once");
        assert_eq!(take_now(&mut stream, &wakes), vec![frame("h")]);
        assert!(take_now(&mut stream, &wakes).is_empty(), "waits again");

        // Frames every 25 ms: more than two per window, but fewer than 100 a second: never
        // held, each one woken at once.
        for (i, f) in ["i", "j", "k", "l", "m", "n"].into_iter().enumerate() {
            sleep(Duration::from_millis(25)).await;
            send(&route, f);
            settle().await;
            assert_eq!(
                woken(),
                before + 3 + i,
                "{f}: a few dozen a second are not held"
            );
            assert_eq!(take_now(&mut stream, &wakes), vec![frame(f)]);
            assert!(take_now(&mut stream, &wakes).is_empty(), "waits again");
        }
    }
}
