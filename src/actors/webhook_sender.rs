//! `WebhookSender`: drains the webhook outbox (`webhook_events`, docs/webhooks.md).
//!
//! Every `poll` it reads one page of due pending events (at most `batch_size` rows: the outbox
//! is never loaded whole) and starts deliveries while fewer than `concurrency` are in flight.
//! A delivery POSTs the event's JSON body, signed, to every endpoint subscribed to its type
//! that has not acknowledged it yet. When all answered 2xx the row is deleted; otherwise the
//! failure, the endpoints that did acknowledge, and the next attempt time (exponential backoff
//! with jitter) are recorded, or, once the event is older than `give_up_after` (counted from
//! its creation or last re-drive), it becomes `dead` until an admin re-drives it.
//!
//! An event stays "in flight" here until the write recording its outcome committed, so the
//! next page cannot hand it out again meanwhile. A crash loses nothing: the row is still
//! pending and is sent again after the restart (at least once; receivers deduplicate on the
//! event id).
//!
//! This actor alone holds an HTTP client: sending is its whole job, and keeping it off the
//! rooms and the notification center keeps webhooks off the send path.
//!
//! Sends to: the database readers (`ReadWebhooks`), the commit queue (outcomes).
//! Started by the engine only when an endpoint is configured.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use actix::prelude::*;
use prometheus::{IntCounter, IntGauge};

use crate::actors::commit_queue::Commit;
use crate::actors::database::ReadWebhooks;
use crate::actors::store::Store;
use crate::config::{WebhookEndpoint, WebhookSettings};
use crate::db::models::{
    WebhookAnswer, WebhookEventRow, WebhookRead, WebhookStats, WebhookWrite, WriteOp,
};
use crate::domain::{now_millis, Millis};
use crate::error::PersistError;
use crate::webhook::{self, EventType};

/// The webhook figures on `/metrics` (registered in the server's registry on first use).
pub struct WebhookMetrics {
    /// Pending events in the outbox (queue depth).
    pub pending: IntGauge,
    /// Dead events awaiting a re-drive.
    pub dead: IntGauge,
    /// Age in seconds of the oldest pending event (0 when none).
    pub oldest_age_seconds: IntGauge,
    /// POSTs made (one per event and endpoint).
    pub attempts: IntCounter,
    /// POSTs that failed (error, timeout, non-2xx answer).
    pub failures: IntCounter,
    /// Events moved to the dead-letter state.
    pub dead_lettered: IntCounter,
}

pub static WEBHOOK_METRICS: LazyLock<WebhookMetrics> = LazyLock::new(|| {
    let r = &crate::metrics::METRICS.registry;
    let gauge = |name: &str, help: &str| {
        let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
        let _ = r.register(Box::new(g.clone()));
        g
    };
    let counter = |name: &str, help: &str| {
        let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
        let _ = r.register(Box::new(c.clone()));
        c
    };
    WebhookMetrics {
        pending: gauge(
            "webhook_queue_depth",
            "Pending webhook events in the outbox.",
        ),
        dead: gauge(
            "webhook_dead_events",
            "Dead webhook events awaiting a re-drive.",
        ),
        oldest_age_seconds: gauge(
            "webhook_oldest_pending_age_seconds",
            "Age of the oldest pending webhook event.",
        ),
        attempts: counter("webhook_attempts_total", "Webhook POSTs made."),
        failures: counter("webhook_failures_total", "Webhook POSTs that failed."),
        dead_lettered: counter(
            "webhook_dead_lettered_total",
            "Webhook events given up (dead letter).",
        ),
    }
});

/// Updates the outbox gauges from `s`.
pub fn record_stats(s: &WebhookStats, now: Millis) {
    let m = &*WEBHOOK_METRICS;
    m.pending.set(s.pending);
    m.dead.set(s.dead);
    m.oldest_age_seconds
        .set(s.oldest_pending_at.map_or(0, |t| (now - t).max(0) / 1000));
}

pub struct WebhookSender {
    store: Store,
    settings: WebhookSettings,
    client: awc::Client,
    /// Events being delivered (until their outcome is committed).
    in_flight: HashSet<String>,
    /// A page read is under way.
    reading: bool,
    /// When an unreadable outbox was last logged: before the start-up migrations ran (they
    /// are retried while the engine runs) every poll would fail, and one line per 10 s says
    /// as much as fifty.
    warned_at: Option<std::time::Instant>,
}

impl WebhookSender {
    pub fn new(store: Store, settings: WebhookSettings) -> Self {
        // The per-request timeout is set on each request; this is the connector's bound.
        let client = awc::Client::builder()
            .timeout(settings.timeout)
            .disable_redirects()
            .finish();
        LazyLock::force(&WEBHOOK_METRICS);
        WebhookSender {
            store,
            settings,
            client,
            in_flight: HashSet::new(),
            reading: false,
            warned_at: None,
        }
    }

    /// The delay before attempt `attempts + 1`: `base · 2^(attempts-1)`, capped at `max`,
    /// with "equal jitter" (a uniform draw in its upper half) so that retries of many events
    /// failed together spread out, while each delay stays at least as long as the previous
    /// one's lower bound.
    fn backoff(&self, attempts: i64) -> Duration {
        let base = self.settings.backoff_base.as_millis() as u64;
        let max = self.settings.backoff_max.as_millis() as u64;
        let shift = (attempts - 1).clamp(0, 32) as u32;
        let exp = base.saturating_mul(1u64 << shift).min(max).max(1);
        // uuid v4 draws from the OS generator: randomness without another dependency.
        let r = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u64;
        Duration::from_millis(exp / 2 + (exp - exp / 2) * r / 1_000_000)
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.reading || self.in_flight.len() >= self.settings.concurrency {
            return;
        }
        self.reading = true;
        let read = self.store.reader.send(ReadWebhooks {
            query: WebhookRead::Due {
                now: now_millis(),
                limit: self.settings.batch_size as i64,
            },
        });
        read.into_actor(self)
            .map(|res, act, ctx| {
                act.reading = false;
                let rows = match res.map_err(PersistError::from).and_then(|r| r) {
                    Ok(WebhookAnswer::Events(rows)) => rows,
                    Ok(other) => {
                        log::warn!("webhook outbox: unexpected answer {other:?}");
                        return;
                    }
                    Err(e) => {
                        if act
                            .warned_at
                            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
                        {
                            act.warned_at = Some(std::time::Instant::now());
                            log::warn!("webhook outbox unreadable: {e}");
                        }
                        return;
                    }
                };
                for row in rows {
                    if act.in_flight.len() >= act.settings.concurrency {
                        break;
                    }
                    if act.in_flight.insert(row.id.clone()) {
                        act.deliver(row, ctx);
                    }
                }
            })
            .spawn(ctx);
    }

    /// Sends `row` to the endpoints that still owe an acknowledgement, then records the
    /// outcome.
    fn deliver(&mut self, row: WebhookEventRow, ctx: &mut Context<Self>) {
        let kind = EventType::parse(&row.event_type).ok();
        let done: HashSet<&str> = row.delivered().collect();
        let targets: Vec<WebhookEndpoint> = self
            .settings
            .endpoints
            .iter()
            .filter(|e| kind.is_some_and(|k| e.subscribes(k)) && !done.contains(e.name.as_str()))
            .cloned()
            .collect();
        let body = webhook::body(&row);
        let event_id = row.id.clone();
        let timeout = self.settings.timeout;
        let client = self.client.clone();
        let posts = targets.into_iter().map(move |e| {
            let client = client.clone();
            let body = body.clone();
            let event_id = event_id.clone();
            async move {
                let ts = now_millis() / 1000;
                let sig = webhook::signature(e.secret.expose(), ts, &body);
                WEBHOOK_METRICS.attempts.inc();
                let res = client
                    .post(&e.url)
                    .timeout(timeout)
                    .insert_header(("content-type", "application/json"))
                    .insert_header(("x-herald-timestamp", ts.to_string()))
                    .insert_header(("x-herald-signature", sig))
                    .insert_header(("x-herald-event-id", event_id))
                    .send_body(body)
                    .await;
                let outcome = match res {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("{}: HTTP {}", e.name, r.status().as_u16())),
                    Err(err) => Err(format!("{}: {err}", e.name)),
                };
                if outcome.is_err() {
                    WEBHOOK_METRICS.failures.inc();
                }
                (e.name, outcome)
            }
        });
        futures_util::future::join_all(posts)
            .into_actor(self)
            .then(move |results, act, _| {
                let mut delivered: Vec<String> = row.delivered().map(str::to_owned).collect();
                let mut errors = Vec::new();
                for (name, r) in results {
                    match r {
                        Ok(()) => delivered.push(name),
                        Err(e) => errors.push(e),
                    }
                }
                let now = now_millis();
                let write = if errors.is_empty() {
                    WebhookWrite::Delivered { id: row.id.clone() }
                } else {
                    let attempts = row.attempts + 1;
                    let dead =
                        now - row.retry_from >= act.settings.give_up_after.as_millis() as i64;
                    let error = errors.join("; ");
                    if dead {
                        WEBHOOK_METRICS.dead_lettered.inc();
                        log::warn!(
                            "webhook event {} is dead after {attempts} attempts: {error}",
                            row.id
                        );
                    } else {
                        log::debug!(
                            "webhook event {} attempt {attempts} failed: {error}",
                            row.id
                        );
                    }
                    WebhookWrite::Failed {
                        id: row.id.clone(),
                        at: now,
                        next_attempt_at: now + act.backoff(attempts).as_millis() as i64,
                        delivered_to: delivered.join(","),
                        error,
                        dead,
                    }
                };
                let commit = act.store.commits.send(Commit {
                    ops: vec![WriteOp::Webhooks(write)],
                });
                let id = row.id;
                async move {
                    if let Err(e) = commit.await.map_err(PersistError::from).and_then(|r| r) {
                        // The row keeps its old state: it is simply sent again.
                        log::warn!("webhook event {id}: outcome not recorded: {e}");
                    }
                    id
                }
                .into_actor(act)
            })
            .map(|id, act, _| {
                act.in_flight.remove(&id);
            })
            .spawn(ctx);
    }

    fn refresh_stats(&self, ctx: &mut Context<Self>) {
        self.store
            .reader
            .send(ReadWebhooks {
                query: WebhookRead::Stats,
            })
            .into_actor(self)
            .map(|res, _, _| {
                if let Ok(Ok(WebhookAnswer::Stats(s))) = res {
                    record_stats(&s, now_millis());
                }
            })
            .spawn(ctx);
    }
}

impl Actor for WebhookSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.poll, |act, ctx| act.poll(ctx));
        let every = self.settings.poll.max(Duration::from_secs(1));
        ctx.run_interval(every, |act, ctx| act.refresh_stats(ctx));
    }
}
