//! Write gathering: a busy connection's broadcast frames wait for its worker's next flush, so
//! one `writev` carries several of them.
//!
//! On loopback and on real networks alike, most of the cost of a delivery is its system call
//! (and, on loopback, the receiver's TCP processing done in the sender's context). A session
//! in a busy room gets a frame every few milliseconds; written one by one, each is its own
//! `writev`. Here a connection that wrote less than `window` ago holds its next broadcast
//! frames until the worker thread's flush, which wakes every holding connection at once: one
//! timer per worker thread (armed only while some connection holds), never one per
//! connection (a per-connection delay was measured and cost what it saved).
//!
//! A connection that has been quiet for `window` writes at once, so a message in a quiet
//! room is not delayed at all; replies to the client's own requests (acks, errors, pongs)
//! and the close frame are never held, so request/response exchanges see no added latency.
//! A held frame waits at most `window`.

use std::cell::RefCell;
use std::task::Waker;
use std::time::Duration;

use actix_web::rt::time::{sleep, Instant};

/// The worker thread's flush: the connections holding frames, and whether the timer that
/// releases them is armed.
#[derive(Default)]
struct WorkerFlush {
    /// Incremented at every flush: a connection that held in an earlier generation writes.
    generation: u64,
    holding: Vec<Waker>,
    armed: bool,
}

thread_local! {
    static FLUSH: RefCell<WorkerFlush> = RefCell::new(WorkerFlush::default());
}

/// One connection's side of write gathering.
#[derive(Debug)]
pub struct Gather {
    window: Duration,
    last_write: Option<Instant>,
    /// The flush generation this connection is holding for.
    held_in: Option<u64>,
}

impl Gather {
    /// `window` zero turns gathering off.
    pub fn new(window: Duration) -> Self {
        Gather {
            window,
            last_write: None,
            held_in: None,
        }
    }

    /// Whether the frames queued now should wait for the worker's flush. `urgent`: the
    /// queue holds a frame that must not wait (a reply, a control frame, the end).
    pub fn hold(&mut self, urgent: bool, waker: &Waker) -> bool {
        if self.window.is_zero() || urgent {
            self.held_in = None;
            return false;
        }
        if let Some(held) = self.held_in {
            let now_generation = FLUSH.with(|f| f.borrow().generation);
            if now_generation != held {
                self.held_in = None;
                return false;
            }
            return true;
        }
        let Some(last) = self.last_write else {
            return false;
        };
        if last.elapsed() >= self.window {
            return false;
        }
        self.held_in = Some(FLUSH.with(|f| {
            let mut f = f.borrow_mut();
            f.holding.push(waker.clone());
            if !f.armed {
                f.armed = true;
                actix_web::rt::spawn(flush_after(self.window));
            }
            f.generation
        }));
        true
    }

    /// The connection wrote its queue.
    pub fn wrote(&mut self) {
        if !self.window.is_zero() {
            self.last_write = Some(Instant::now());
            self.held_in = None;
        }
    }
}

/// Waits `window`, then wakes every connection holding frames on this worker thread.
async fn flush_after(window: Duration) {
    sleep(window).await;
    let holding = FLUSH.with(|f| {
        let mut f = f.borrow_mut();
        f.generation += 1;
        f.armed = false;
        std::mem::take(&mut f.holding)
    });
    crate::metrics::METRICS.ws_write_flushes.inc();
    for w in holding {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::Gather;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[actix_web::test]
    async fn a_busy_connection_holds_until_the_flush_and_a_quiet_one_writes_at_once() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut g = Gather::new(Duration::from_millis(20));
        assert!(!g.hold(false, &waker), "never wrote: write now");
        g.wrote();
        assert!(!g.hold(true, &waker), "urgent frames never wait");
        assert!(g.hold(false, &waker), "wrote just now: hold");
        assert!(g.hold(false, &waker), "still held before the flush");
        actix_web::rt::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake for the flush");
        assert!(!g.hold(false, &waker), "flushed: write now");
        g.wrote();
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        assert!(
            !g.hold(false, &waker),
            "quiet for the window: write at once"
        );
        let mut off = Gather::new(Duration::ZERO);
        off.wrote();
        assert!(!off.hold(false, &waker), "gathering off");
    }
}
