//! Rate-paced publishers with pipelined acks matched by `ref`, and draining the deliveries
//! still in flight after the publishing phase.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::time::{interval, sleep, MissedTickBehavior};

use crate::client::{Conn, Reply, Stamp, STAMP_DIGITS};

use super::book::TAG;
use super::{Ctx, Progress, SharedBook};
/// Where a publisher sends.
#[derive(Clone)]
pub enum Target {
    Room(String),
    To(String),
}

/// One publishing connection.
pub struct Publisher {
    pub conn: Conn,
    pub target: Target,
}

/// How publishers behave.
#[derive(Clone, Copy)]
pub struct PubOptions {
    /// Unacked sends allowed per connection; beyond it a send is skipped (`throttled`).
    pub max_inflight: usize,
    /// Extra bytes of body text.
    pub pad: usize,
    pub ack_timeout: Duration,
    /// Send a `client_msg_id` (the server then checks it for retries in the commit).
    pub client_msg_id: bool,
}

impl Publisher {
    /// Sends one tagged text message without waiting; its ack is awaited in a spawned task.
    /// Returns false when the connection is closed.
    pub fn publish(
        &self,
        book: &SharedBook,
        progress: &Rc<Progress>,
        run: &str,
        opts: PubOptions,
    ) -> bool {
        let (id, origin) = {
            let mut b = book.borrow_mut();
            let id = b.acked.len();
            b.acked.push(false);
            b.received.push(0);
            (id, b.origin)
        };
        // Children of --procs say who sent (` s=<k>`) and keep client_msg_ids apart.
        let (tag_origin, cmid) = match origin {
            Some(k) => (format!(" s={k}"), format!("{run}-{k}-{id}")),
            None => (String::new(), format!("{run}-{id}")),
        };
        let cmid = if opts.client_msg_id {
            format!(r#","client_msg_id":"{cmid}""#)
        } else {
            String::new()
        };
        let target = match &self.target {
            Target::Room(r) => format!(r#""room":"{r}""#),
            Target::To(u) => format!(r#""to":"{u}""#),
        };
        let r = self.conn.next_ref();
        let pad = pad(opts.pad);
        let sent_at = Instant::now();
        // The driver writes the send time over the zeros as the frame goes to the socket.
        let zeros = "0".repeat(STAMP_DIGITS);
        let frame = format!(
            r#"{{"type":"send","ref":{r},"data":{{{target},"kind":"text","body":{{"text":"{TAG}{zeros} id={id}{tag_origin} {pad}"}}{cmid}}}}}"#
        );
        let stamp = Stamp {
            offset: frame.find(TAG).map_or(0, |i| i + TAG.len()),
            at: Rc::new(Cell::new(0)),
        };
        let written_at = stamp.at.clone();
        let rx = match self.conn.request_raw(r, frame, Some(stamp)) {
            Ok(rx) => rx,
            Err(_) => {
                book.borrow_mut().send_closed += 1;
                return false;
            }
        };
        {
            let mut b = book.borrow_mut();
            b.sent += 1;
            b.first_send.get_or_insert(sent_at);
            b.last_send = Some(sent_at);
        }
        Progress::add(&progress.sent, 1);
        let book = book.clone();
        let progress = progress.clone();
        let conn = self.conn.clone();
        actix_web::rt::spawn(async move {
            let res = tokio::time::timeout(opts.ack_timeout, rx).await;
            let mut b = book.borrow_mut();
            if id < b.base {
                return; // a warm-up message answered after the measurement began
            }
            match res {
                Ok(Ok(Reply::Ack(data, at))) => {
                    if data.get("duplicate") == Some(&Value::Bool(true)) {
                        // A client_msg_id was reused: nothing new was stored.
                        b.duplicate_acks += 1;
                    }
                    b.acks += 1;
                    if let Some(first) = b.first_send {
                        let sec = first.elapsed().as_secs() as usize;
                        if b.acks_per_second.len() <= sec {
                            b.acks_per_second.resize(sec + 1, 0);
                        }
                        b.acks_per_second[sec] += 1;
                    }
                    match written_at.get() {
                        0 => b.ack_lat.record(sent_at.elapsed()),
                        w => b.ack_lat.record_nanos(at.saturating_sub(w)),
                    }
                    b.last_ack = Some(Instant::now());
                    if let Some(a) = b.acked.get_mut(id) {
                        *a = true;
                    }
                    Progress::add(&progress.acked, 1);
                }
                Ok(Ok(Reply::Error { code, .. })) => {
                    *b.ack_errors.entry(code).or_default() += 1;
                    Progress::add(&progress.errors, 1);
                }
                Ok(Err(_)) => {
                    b.send_closed += 1;
                    Progress::add(&progress.errors, 1);
                }
                Err(_) => {
                    conn.forget(r);
                    b.ack_timeouts += 1;
                    Progress::add(&progress.errors, 1);
                }
            }
        });
        true
    }
}

/// Most padding bytes a body gets (Herald's default text limit is 64 KiB).
pub const MAX_PAD: usize = 60_000;

/// `n` bytes of body padding (plain ASCII: no JSON escaping needed).
fn pad(n: usize) -> &'static str {
    static PAD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let p = PAD.get_or_init(|| "x".repeat(MAX_PAD));
    &p[..n.min(MAX_PAD)]
}

/// Sends `rate` messages per second in total for `secs`, round-robin over `pubs`, skipping a
/// publisher whose in-flight count is at `max_inflight`. Returns the publishing time.
pub async fn publish_for(
    ctx: &Ctx,
    pubs: &[Publisher],
    rate: f64,
    secs: Duration,
    opts: PubOptions,
    book: &SharedBook,
) -> Duration {
    let started = Instant::now();
    if pubs.is_empty() || rate <= 0.0 {
        return Duration::ZERO;
    }
    let mut tick = interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut issued: u64 = 0;
    let mut next = 0usize;
    let total = (rate * secs.as_secs_f64()).round() as u64;
    while issued < total && started.elapsed() < secs && ctx.aborted().is_none() {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64)
            .min(total)
            .saturating_sub(issued);
        for _ in 0..due {
            issued += 1;
            // Find a publisher with room in its window.
            let mut sent = false;
            for _ in 0..pubs.len() {
                let p = &pubs[next];
                next = (next + 1) % pubs.len();
                if p.conn.is_open() && p.conn.in_flight() < opts.max_inflight {
                    sent = p.publish(book, &ctx.progress, &ctx.run_id, opts);
                    if sent {
                        break;
                    }
                }
            }
            if !sent {
                book.borrow_mut().throttled += 1;
            }
        }
    }
    started.elapsed()
}

/// After publishing: waits until every ack is in and every acked message reached
/// `receivers` sessions, or `limit` passes.
pub async fn drain(ctx: &Ctx, book: &SharedBook, receivers: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit && ctx.aborted().is_none() {
        let done = {
            let b = book.borrow();
            let settled =
                b.acks + b.ack_errors.values().sum::<u64>() + b.ack_timeouts + b.send_closed
                    >= b.sent;
            settled && b.loss(receivers).1 >= b.loss(receivers).0
        };
        if done {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// With `--procs`: waits until no delivery has arrived for `quiet` (the other children's last
/// messages still on their way), or `limit` passes. Returns at once in a single process.
pub async fn quiet_deliveries(ctx: &Ctx, book: &SharedBook, quiet: Duration, limit: Duration) {
    if !ctx.shard.is_child() {
        return;
    }
    let started = Instant::now();
    let mut last = book.borrow().deliveries;
    let mut since = Instant::now();
    while started.elapsed() < limit && ctx.aborted().is_none() && since.elapsed() < quiet {
        sleep(Duration::from_millis(20)).await;
        let now = book.borrow().deliveries;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}
