//! The book of sent, acked and received messages that loss and latency are computed from,
//! the tags message bodies carry (`hb1 t=<nanos> id=<n>`), and the receiving handler.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use crate::client::{Event, Handler};
use crate::stats::{unix_nanos, Lat};

use super::Progress;
/// `{"type":"xyz",...}` → `xyz` (the server always writes `type` first).
pub fn frame_type(text: &str) -> &str {
    text.strip_prefix(r#"{"type":""#)
        .and_then(|r| r.split('"').next())
        .unwrap_or("?")
}

/// The marker every bench message body starts with.
pub(super) const TAG: &str = "hb1 t=";

/// Reads `(sent_at_nanos, id, origin)` from a `message` frame written by
/// [`Publisher::publish`](super::Publisher::publish); `origin` is the sending child's shard
/// (` s=<k>` after the id, only written by children of `--procs`).
pub fn parse_tag(text: &str) -> Option<(u64, u64, Option<u32>)> {
    let rest = &text[text.find(TAG)? + TAG.len()..];
    let (t, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("id=")?;
    let id = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    let origin = rest[id.len()..]
        .strip_prefix(" s=")
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok());
    Some((t.parse().ok()?, id.parse().ok()?, origin))
}

/// Everything known about the messages of one run, indexed by message id.
#[derive(Default)]
pub struct Book {
    /// Messages with a lower id were sent before the measurement (warm-up) and are ignored.
    pub base: usize,
    pub acked: Vec<bool>,
    pub received: Vec<u32>,
    pub sent: u64,
    pub acks: u64,
    pub ack_lat: Lat,
    pub ack_errors: BTreeMap<String, u64>,
    pub ack_timeouts: u64,
    pub send_closed: u64,
    /// Acks flagged `duplicate` (should stay 0: every client_msg_id is unique).
    pub duplicate_acks: u64,
    /// Sends skipped because every publisher had `max_inflight` unacked messages.
    pub throttled: u64,
    pub deliveries: u64,
    /// This process's shard with `--procs` (written into every tag), else `None`.
    pub origin: Option<u32>,
    /// Deliveries of messages sent by other children of `--procs` (counted in `deliveries`).
    pub foreign: u64,
    /// Bench-tagged deliveries whose id was never sent (should stay 0).
    pub unknown: u64,
    /// Send → the message's bytes reached the receiving socket (kernel timestamp).
    pub delivery_lat: Lat,
    /// Send → the bench processed the frame (adds the bench's own scheduling delay).
    pub delivery_app_lat: Lat,
    pub first_send: Option<Instant>,
    pub last_send: Option<Instant>,
    pub last_delivery: Option<Instant>,
    pub last_ack: Option<Instant>,
    /// Acks per second since the first send (index = second).
    pub acks_per_second: Vec<u64>,
    /// Non-message frames seen by receivers, by type.
    pub other_frames: BTreeMap<String, u64>,
    /// Close codes seen by handlers (unsolicited).
    pub closes: BTreeMap<String, u64>,
}

pub type SharedBook = Rc<RefCell<Book>>;

impl Book {
    /// A book for a process that is shard `origin` of a `--procs` run (`None`: alone).
    pub fn new_shared(origin: Option<u32>) -> SharedBook {
        Rc::new(RefCell::new(Book {
            origin,
            ..Book::default()
        }))
    }

    /// Forgets everything measured so far (warm-up); ids keep counting up, so ids (and
    /// `client_msg_id`s) stay unique and late warm-up frames are recognised and ignored.
    pub fn begin_measurement(&mut self) {
        let base = self.acked.len();
        *self = Book {
            base,
            origin: self.origin,
            acked: std::mem::take(&mut self.acked),
            received: std::mem::take(&mut self.received),
            ..Book::default()
        };
    }

    /// Loss figures over acked messages when each should reach `receivers` sessions:
    /// (expected, received of those, duplicates, loss fraction).
    pub fn loss(&self, receivers: u64) -> (u64, u64, u64, Option<f64>) {
        let mut expected = 0u64;
        let mut got = 0u64;
        let mut dup = 0u64;
        for (id, &acked) in self.acked.iter().enumerate().skip(self.base) {
            let r = u64::from(self.received.get(id).copied().unwrap_or(0));
            dup += r.saturating_sub(receivers);
            if acked {
                expected += receivers;
                got += r.min(receivers);
            }
        }
        let loss = (expected > 0).then(|| 1.0 - got as f64 / expected as f64);
        (expected, got, dup, loss)
    }

    pub fn ack_errors_text(&self) -> String {
        let mut parts: Vec<String> = self
            .ack_errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.ack_timeouts > 0 {
            parts.push(format!("timeout={}", self.ack_timeouts));
        }
        if self.duplicate_acks > 0 {
            parts.push(format!("duplicate_acks={}", self.duplicate_acks));
        }
        if self.send_closed > 0 {
            parts.push(format!("conn_closed={}", self.send_closed));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A handler that records bench messages into `book` and counts everything else.
pub fn receiver(book: SharedBook, progress: Rc<Progress>) -> Handler {
    Box::new(move |ev| match ev {
        Event::Text(text, rx_ns) => {
            let kind = frame_type(text);
            if kind == "message" {
                if let Some((t, id, origin)) = parse_tag(text) {
                    let now = unix_nanos();
                    let mut b = book.borrow_mut();
                    if origin != b.origin {
                        // Another child's message: counted and timed, checked by the parent.
                        b.foreign += 1;
                        b.deliveries += 1;
                        b.delivery_app_lat.record_nanos(now.saturating_sub(t));
                        if let Some(rx) = rx_ns {
                            b.delivery_lat.record_nanos(rx.saturating_sub(t));
                        }
                        b.last_delivery = Some(Instant::now());
                        Progress::add(&progress.received, 1);
                        return;
                    }
                    if (id as usize) < b.base {
                        return;
                    }
                    match b.received.get_mut(id as usize) {
                        Some(r) => {
                            *r += 1;
                            b.deliveries += 1;
                            b.delivery_app_lat.record_nanos(now.saturating_sub(t));
                            if let Some(rx) = rx_ns {
                                b.delivery_lat.record_nanos(rx.saturating_sub(t));
                            }
                            b.last_delivery = Some(Instant::now());
                            Progress::add(&progress.received, 1);
                        }
                        None => b.unknown += 1,
                    }
                    return;
                }
            }
            *book
                .borrow_mut()
                .other_frames
                .entry(kind.to_owned())
                .or_default() += 1;
        }
        Event::Closed(info) => {
            if !info.by_us {
                let key = match (info.code, &info.error) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(_)) => "error".to_owned(),
                    (None, None) => "unknown".to_owned(),
                };
                *book.borrow_mut().closes.entry(key).or_default() += 1;
            }
        }
    })
}
