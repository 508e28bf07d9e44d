//! The webhook outbox as the admin routes see it (docs/webhooks.md): list events, re-drive
//! dead ones, and the figures of `/v1/admin/stats`.

use serde_json::{json, Value};

use super::{persist, Engine};
use crate::actors::commit_queue::Commit;
use crate::actors::database::ReadWebhooks;
use crate::db::models::{
    WebhookAnswer, WebhookEventRow, WebhookRead, WebhookWrite, WriteOp, WriteOutcome,
};
use crate::domain::now_millis;
use crate::error::EngineError;

fn unexpected(what: &impl std::fmt::Debug) -> EngineError {
    EngineError::Internal(format!("unexpected webhook answer: {what:?}"))
}

impl Engine {
    /// `GET /v1/admin/webhooks/events`: events of `state` (any when `None`) after `after`
    /// (an event id), oldest first.
    pub async fn webhook_events(
        &self,
        state: Option<String>,
        after: Option<String>,
        limit: i64,
    ) -> Result<Vec<WebhookEventRow>, EngineError> {
        let query = WebhookRead::List {
            state,
            after,
            limit,
        };
        match persist(self.store.reader.send(ReadWebhooks { query }).await)? {
            WebhookAnswer::Events(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Re-drives one event (`id`) or every dead one: pending again, due now, with a new
    /// give-up window. Answers how many events were re-driven.
    pub async fn redrive_webhooks(&self, id: Option<String>) -> Result<i64, EngineError> {
        let ops = vec![WriteOp::Webhooks(WebhookWrite::Redrive {
            id,
            at: now_millis(),
        })];
        match persist(self.store.commits.send(Commit { ops }).await)?.pop() {
            Some(WriteOutcome::Count(n)) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    /// The outbox figures for `/v1/admin/stats` (and the `/metrics` gauges, refreshed here
    /// too); with no endpoint configured, only `enabled: false`.
    pub async fn webhook_stats(&self) -> Result<Value, EngineError> {
        if self.settings.webhooks.endpoints.is_empty() {
            return Ok(json!({"enabled": false}));
        }
        let query = WebhookRead::Stats;
        let s = match persist(self.store.reader.send(ReadWebhooks { query }).await)? {
            WebhookAnswer::Stats(s) => s,
            other => return Err(unexpected(&other)),
        };
        let now = now_millis();
        crate::actors::webhook_sender::record_stats(&s, now);
        let m = &*crate::actors::webhook_sender::WEBHOOK_METRICS;
        Ok(json!({
            "enabled": true,
            "queue_depth": s.pending,
            "dead": s.dead,
            "oldest_pending_age_ms": s.oldest_pending_at.map(|t| (now - t).max(0)),
            "attempts_total": m.attempts.get(),
            "failures_total": m.failures.get(),
            "dead_lettered_total": m.dead_lettered.get(),
        }))
    }
}
