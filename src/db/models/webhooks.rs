//! The webhook outbox (docs/webhooks.md): rows of `webhook_events`, the writes the webhook
//! sender and the event sources make ([`WebhookWrite`], through `WriteOp::Webhooks`) and the
//! reads of the sender and the admin routes ([`WebhookRead`]).

use diesel::prelude::*;

use crate::db::schema::webhook_events;
use crate::domain::Millis;

/// State of a stored event: still being delivered, or given up (dead letter).
pub const STATE_PENDING: &str = "pending";
pub const STATE_DEAD: &str = "dead";

/// A new outbox row: one event, delivered to every endpoint subscribed to its type.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = webhook_events)]
pub struct NewWebhookEvent {
    pub id: String,
    pub event_type: String,
    /// The event's `data` object, JSON.
    pub payload: String,
    pub created_at: Millis,
    pub next_attempt_at: Millis,
    pub retry_from: Millis,
}

impl NewWebhookEvent {
    /// A new event with a fresh, time-ordered id, due now.
    pub fn new(event_type: &str, data: &serde_json::Value, now: Millis) -> Self {
        NewWebhookEvent {
            id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            event_type: event_type.to_owned(),
            payload: data.to_string(),
            created_at: now,
            next_attempt_at: now,
            retry_from: now,
        }
    }
}

/// A stored outbox row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = webhook_events)]
pub struct WebhookEventRow {
    pub id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: Millis,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_attempt_at: Option<Millis>,
    pub retry_from: Millis,
    pub delivered_to: String,
    pub last_error: Option<String>,
}

impl WebhookEventRow {
    /// The endpoints (names) that acknowledged the event already.
    pub fn delivered(&self) -> impl Iterator<Item = &str> {
        self.delivered_to.split(',').filter(|s| !s.is_empty())
    }
}

/// Writes to the outbox, applied by the single writer inside its batch transaction.
#[derive(Debug, Clone)]
pub enum WebhookWrite {
    /// Stores new events. An event with `requires_notification` set is stored only if that
    /// notification exists once the group's earlier ops ran: a notification that turned out
    /// to be an idempotent repeat (not stored) reports nothing.
    Enqueue {
        events: Vec<(NewWebhookEvent, Option<String>)>,
    },
    /// Every subscribed endpoint acknowledged the event: delete it.
    Delivered { id: String },
    /// An attempt failed for some endpoint: record it and when to try again, or give up
    /// (`dead`). `delivered_to`: the endpoints that acknowledged it so far.
    Failed {
        id: String,
        at: Millis,
        next_attempt_at: Millis,
        delivered_to: String,
        error: String,
        dead: bool,
    },
    /// Dead (or pending) events back to pending, due now, with a new give-up window: one
    /// (`id`) or every dead one. Answers the count.
    Redrive { id: Option<String>, at: Millis },
}

/// Reads of the outbox.
#[derive(Debug, Clone)]
pub enum WebhookRead {
    /// Pending events due at `now`, soonest first, at most `limit` (a page: the sender never
    /// loads the whole outbox).
    Due { now: Millis, limit: i64 },
    /// Events of `state` (any when `None`) with an id after `after`, in id order (ids are
    /// time-ordered), at most `limit`.
    List {
        state: Option<String>,
        after: Option<String>,
        limit: i64,
    },
    /// Queue depth and the oldest pending event.
    Stats,
}

/// What a [`WebhookRead`] answers.
#[derive(Debug, Clone)]
pub enum WebhookAnswer {
    Events(Vec<WebhookEventRow>),
    Stats(WebhookStats),
}

/// Outbox figures for metrics and `/v1/admin/stats`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct WebhookStats {
    pub pending: i64,
    pub dead: i64,
    /// `created_at` of the oldest pending event.
    pub oldest_pending_at: Option<Millis>,
}
