// Webhook outbox queries (docs/webhooks.md), written once and compiled for each backend
// beside `queries.rs` (`db/mod.rs` includes this file in both backend modules; `super::Conn`
// is the backend's connection). Writes run on the single writer thread inside its batch
// transaction, through `WriteOp::Webhooks`; reads run on the reader threads.

use diesel::prelude::*;

use super::Conn;
use crate::db::models::*;
use crate::db::schema::{notifications, webhook_events};
use crate::error::PersistError;

/// Rows per multi-row insert (well under SQLite's bind-parameter limit).
const EVENTS_PER_STATEMENT: usize = 100;

/// Applies one outbox write (inside the writer's transaction); answers a `Count`.
pub fn apply(c: &mut Conn, w: &WebhookWrite) -> QueryResult<WriteOutcome> {
    let n = match w {
        WebhookWrite::Enqueue { events } => enqueue(c, events)?,
        WebhookWrite::Delivered { id } => {
            diesel::delete(webhook_events::table.find(id)).execute(c)?
        }
        WebhookWrite::Failed {
            id,
            at,
            next_attempt_at,
            delivered_to,
            error,
            dead,
        } => diesel::update(webhook_events::table.find(id))
            .set((
                webhook_events::attempts.eq(webhook_events::attempts + 1),
                webhook_events::last_attempt_at.eq(Some(*at)),
                webhook_events::next_attempt_at.eq(*next_attempt_at),
                webhook_events::delivered_to.eq(delivered_to),
                webhook_events::last_error.eq(Some(error)),
                webhook_events::state.eq(if *dead { STATE_DEAD } else { STATE_PENDING }),
            ))
            .execute(c)?,
        WebhookWrite::Redrive { id, at } => {
            let set = (
                webhook_events::state.eq(STATE_PENDING),
                webhook_events::next_attempt_at.eq(*at),
                webhook_events::retry_from.eq(*at),
            );
            match id {
                Some(id) => diesel::update(webhook_events::table.find(id))
                    .set(set)
                    .execute(c)?,
                None => diesel::update(
                    webhook_events::table.filter(webhook_events::state.eq(STATE_DEAD)),
                )
                .set(set)
                .execute(c)?,
            }
        }
    };
    Ok(WriteOutcome::Count(n as i64))
}

/// Stores `events`, leaving out those whose required notification does not exist.
fn enqueue(c: &mut Conn, events: &[(NewWebhookEvent, Option<String>)]) -> QueryResult<usize> {
    let required: Vec<&str> = events.iter().filter_map(|(_, n)| n.as_deref()).collect();
    let mut existing = std::collections::HashSet::new();
    for chunk in required.chunks(EVENTS_PER_STATEMENT) {
        let found: Vec<String> = notifications::table
            .filter(notifications::id.eq_any(chunk))
            .select(notifications::id)
            .load(c)?;
        existing.extend(found);
    }
    let rows: Vec<&NewWebhookEvent> = events
        .iter()
        .filter(|(_, n)| n.as_ref().is_none_or(|n| existing.contains(n)))
        .map(|(e, _)| e)
        .collect();
    insert_events(c, rows.into_iter())
}

/// Inserts outbox rows in multi-row statements.
pub fn insert_events<'e>(
    c: &mut Conn,
    rows: impl Iterator<Item = &'e NewWebhookEvent>,
) -> QueryResult<usize> {
    let rows: Vec<&NewWebhookEvent> = rows.collect();
    let mut n = 0;
    for chunk in rows.chunks(EVENTS_PER_STATEMENT) {
        let values: Vec<NewWebhookEvent> = chunk.iter().map(|e| (*e).clone()).collect();
        n += diesel::insert_into(webhook_events::table)
            .values(&values)
            .execute(c)?;
    }
    Ok(n)
}

/// Answers one outbox read.
pub fn read(c: &mut Conn, q: &WebhookRead) -> Result<WebhookAnswer, PersistError> {
    Ok(match q {
        WebhookRead::Due { now, limit } => WebhookAnswer::Events(
            webhook_events::table
                .filter(webhook_events::state.eq(STATE_PENDING))
                .filter(webhook_events::next_attempt_at.le(*now))
                .order((
                    webhook_events::next_attempt_at.asc(),
                    webhook_events::id.asc(),
                ))
                .limit(*limit)
                .select(WebhookEventRow::as_select())
                .load(c)?,
        ),
        WebhookRead::List {
            state,
            after,
            limit,
        } => {
            let mut q = webhook_events::table
                .select(WebhookEventRow::as_select())
                .order(webhook_events::id.asc())
                .limit(*limit)
                .into_boxed();
            if let Some(s) = state {
                q = q.filter(webhook_events::state.eq(s.clone()));
            }
            if let Some(a) = after {
                q = q.filter(webhook_events::id.gt(a.clone()));
            }
            WebhookAnswer::Events(q.load(c)?)
        }
        WebhookRead::Stats => {
            let count = |c: &mut Conn, state: &str| -> QueryResult<i64> {
                webhook_events::table
                    .filter(webhook_events::state.eq(state))
                    .count()
                    .get_result(c)
            };
            let pending = count(c, STATE_PENDING)?;
            let dead = count(c, STATE_DEAD)?;
            let oldest_pending_at = webhook_events::table
                .filter(webhook_events::state.eq(STATE_PENDING))
                .select(diesel::dsl::min(webhook_events::created_at))
                .first::<Option<i64>>(c)?;
            WebhookAnswer::Stats(WebhookStats {
                pending,
                dead,
                oldest_pending_at,
            })
        }
    })
}
