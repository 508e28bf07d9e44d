//! `CommitQueue`: the async front of the single database writer, doing group commit.
//!
//! Rooms, the presence registry and REST handlers send [`Commit`] with a group of writes.
//! While one batch is being written, new groups wait here; when it finishes, everything
//! that arrived meanwhile goes out as the next batch — one transaction, one fsync. A `Commit`
//! is answered only after its batch has committed, which is what lets a `send` ack mean
//! "durably stored". Groups commit in arrival order, so per-room seqs come out in order.
//!
//! Pacing (`HERALD_COMMIT_INTERVAL_MS`): a batch starts no sooner than the interval after the
//! previous one started. Each commit costs an fsync, hundreds of microseconds of CPU on a
//! virtual disk whatever it carries; under steady traffic (a room's messages every few
//! milliseconds) commits then carry several messages each instead of one or two. A write
//! arriving after a quiet interval commits at once.
//!
//! The queue is bounded (`HERALD_COMMIT_QUEUE_MAX` groups): when the writer falls behind,
//! a new group is refused at once with [`PersistError::Overloaded`] and a `retry_after_ms`
//! estimated from the batches ahead of it, instead of growing memory and latency without
//! limit. A refused group was never queued, so nothing acknowledged is ever dropped.
//!
//! It sends only to the writer `Database` and never calls back into the engine.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::database::{Database, WriteBatch};
use crate::db::models::{WriteOp, WriteOutcome};
use crate::error::PersistError;
use crate::metrics::METRICS;

type Reply = oneshot::Sender<Result<Vec<WriteOutcome>, PersistError>>;

pub struct CommitQueue {
    writer: Addr<Database>,
    waiting: Vec<(Vec<WriteOp>, Reply)>,
    in_flight: bool,
    /// When the batch in flight was sent, for estimating how long a refused writer waits.
    in_flight_since: Option<Instant>,
    max_batch: usize,
    /// Most groups waiting; more are refused with `Overloaded`.
    max_queue: usize,
    /// Least time between the starts of two batches (see the module docs).
    interval: Duration,
    /// When the last batch started.
    last_start: Option<Instant>,
    /// The timer that starts the next batch once the interval has passed.
    paced: Option<SpawnHandle>,
    /// Notified when the queue is empty and nothing is in flight (shutdown drain).
    drained: Vec<oneshot::Sender<()>>,
    stats: CommitStats,
}

/// Counters for `/v1/admin/stats` and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CommitStats {
    pub batches: u64,
    pub groups: u64,
    pub failed_batches: u64,
    /// Groups refused because the queue was full.
    pub refused_groups: u64,
    /// Batches whose merged attempt failed and that were rewritten group by group.
    pub per_group_batches: u64,
    pub last_batch_groups: usize,
    pub max_batch_groups: usize,
    pub last_batch_ms: f64,
    /// The durations of every batch added up: with `batches`, successive readings give the
    /// mean commit latency over any interval (the admin dashboard's chart).
    pub total_batch_ms: f64,
    pub queue_depth: usize,
}

impl CommitQueue {
    pub fn new(
        writer: Addr<Database>,
        max_batch: usize,
        max_queue: usize,
        interval: Duration,
    ) -> Self {
        CommitQueue {
            writer,
            waiting: Vec::new(),
            in_flight: false,
            in_flight_since: None,
            max_batch,
            max_queue: max_queue.max(1),
            interval,
            last_start: None,
            paced: None,
            drained: Vec::new(),
            stats: CommitStats::default(),
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.paced.is_some() {
            return;
        }
        if self.waiting.is_empty() {
            for tx in self.drained.drain(..) {
                let _ = tx.send(());
            }
            return;
        }
        let started = Instant::now();
        let due = self.last_start.map(|t| t + self.interval);
        if let Some(wait) = due.and_then(|d| d.checked_duration_since(started)) {
            if !wait.is_zero() && self.waiting.len() < self.max_batch {
                self.paced = Some(ctx.run_later(wait, |act, ctx| {
                    act.paced = None;
                    act.flush(ctx);
                }));
                return;
            }
        }
        let n = self.waiting.len().min(self.max_batch);
        let (groups, replies): (Vec<_>, Vec<_>) = self.waiting.drain(..n).unzip();
        self.in_flight = true;
        self.last_start = Some(started);
        self.in_flight_since = Some(started);
        let size = groups.len();
        self.writer
            .send(WriteBatch { groups })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.in_flight = false;
                act.in_flight_since = None;
                act.stats.batches += 1;
                act.stats.groups += size as u64;
                act.stats.last_batch_groups = size;
                act.stats.max_batch_groups = act.stats.max_batch_groups.max(size);
                act.stats.last_batch_ms = started.elapsed().as_secs_f64() * 1000.0;
                act.stats.total_batch_ms += act.stats.last_batch_ms;
                METRICS.batch_groups.observe(size as f64);
                METRICS
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                if let Err(e) = &res {
                    // A persistence failure is logged by the writer; this is the writer gone.
                    log::warn!("commit batch of {size} groups not written: {e}");
                }
                match res.map_err(PersistError::from).and_then(|r| r) {
                    Ok(batch) => {
                        if batch.per_group {
                            act.stats.per_group_batches += 1;
                            METRICS.commit_per_group_batches.inc();
                        }
                        for (tx, r) in replies.into_iter().zip(batch.results) {
                            // A dropped receiver means the asker went away; the data is stored anyway.
                            let _ = tx.send(r);
                        }
                    }
                    Err(e) => {
                        act.stats.failed_batches += 1;
                        METRICS.commit_failures.inc();
                        for tx in replies {
                            let _ = tx.send(Err(e.clone()));
                        }
                    }
                }
                act.flush(ctx);
                METRICS.commit_queue_depth.set(act.waiting.len() as i64);
            })
            .spawn(ctx);
    }

    /// How long a refused writer should wait: the batches ahead of it times the time a batch
    /// takes now (the slower of the last one and the one in flight), within sane bounds.
    fn retry_after_ms(&self) -> u64 {
        let per_batch_ms = self
            .in_flight_since
            .map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0)
            .max(self.stats.last_batch_ms)
            .max(1.0);
        let ahead = self.waiting.len().div_ceil(self.max_batch.max(1)) + 1;
        ((ahead as f64 * per_batch_ms) as u64).clamp(MIN_RETRY_AFTER_MS, MAX_RETRY_AFTER_MS)
    }
}

/// Bounds of the `retry_after_ms` hint of a refused write.
const MIN_RETRY_AFTER_MS: u64 = 50;
const MAX_RETRY_AFTER_MS: u64 = 10_000;

impl Actor for CommitQueue {
    type Context = Context<Self>;
}

/// Sent by rooms, the presence registry and REST handlers: store these writes together and
/// answer once they are committed.
#[derive(Message)]
#[rtype(result = "Result<Vec<WriteOutcome>, PersistError>")]
pub struct Commit {
    pub ops: Vec<WriteOp>,
}

impl Handler<Commit> for CommitQueue {
    type Result = ResponseFuture<Result<Vec<WriteOutcome>, PersistError>>;

    fn handle(&mut self, msg: Commit, ctx: &mut Context<Self>) -> Self::Result {
        if self.waiting.len() >= self.max_queue {
            self.stats.refused_groups += 1;
            METRICS.commit_refused.inc();
            let retry_after_ms = self.retry_after_ms();
            return Box::pin(async move { Err(PersistError::Overloaded { retry_after_ms }) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push((msg.ops, tx));
        self.flush(ctx);
        METRICS.commit_queue_depth.set(self.waiting.len() as i64);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(PersistError::Unavailable("commit queue stopped".into())))
        })
    }
}

/// Sent at shutdown: answers once every queued write is committed (or failed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for CommitQueue {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        self.flush(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Sent by the stats route.
#[derive(Message)]
#[rtype(result = "CommitStats")]
pub struct GetCommitStats;

impl Handler<GetCommitStats> for CommitQueue {
    type Result = MessageResult<GetCommitStats>;
    fn handle(&mut self, _: GetCommitStats, _: &mut Context<Self>) -> Self::Result {
        let mut s = self.stats.clone();
        s.queue_depth = self.waiting.len();
        MessageResult(s)
    }
}
