//! The publish pipeline of a `Room`: `Publish` appends to the pending queue, one batch per
//! room is committed at a time, and each stored message is fanned out (encoded once) and its
//! notifications settled after the commit; `RedoNotifications` from the outbox sweep.
//!
//! Pacing: a room sends its next batch no sooner than `commit_interval` after the last one
//! (the commit queue paces its batches the same way, see `commit_queue.rs`). Each commit
//! is an fsync whatever it carries, so a busy room's messages, and the outbox cleanup of
//! the batch before, share one; a message after a quiet interval is sent at once.

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::actors::commit_queue::Commit;
use crate::db::models::{NewMessage, OutboxPolicy, StoredMessage, WriteOp, WriteOutcome};
use crate::domain::SessionId;
use crate::error::{EngineError, PersistError};
use crate::metrics::METRICS;
use crate::webhook::EventType;

use super::{write_timed_out, Followup, PendingPublish, Room};

impl Room {
    fn flush_pending(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.pending.is_empty() || self.flush_timer.is_some() {
            return;
        }
        let now = std::time::Instant::now();
        let due = self.last_flush.map(|t| t + self.store.commit_interval);
        if let Some(wait) = due.and_then(|d| d.checked_duration_since(now)) {
            if !wait.is_zero() {
                self.flush_timer = Some(ctx.run_later(wait, |act, ctx| {
                    act.flush_timer = None;
                    act.flush_pending(ctx);
                }));
                return;
            }
        }
        self.last_flush = Some(now);
        let batch = std::mem::take(&mut self.pending);
        let mut messages = Vec::with_capacity(batch.len());
        let mut waiters = Vec::with_capacity(batch.len());
        for p in batch {
            messages.push(p.message);
            waiters.push((p.origin, p.reply));
        }
        self.writing = true;
        let ops = vec![WriteOp::AppendMessages {
            room: self.id.clone(),
            messages,
            outbox: OutboxPolicy {
                webhook_stored: self.store.webhooks.wants(EventType::MessageStored),
                ..self.notifier.outbox_policy()
            },
        }];
        self.store
            .commits
            .send(Commit { ops })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.writing = false;
                let appended = match res.map_err(PersistError::from).and_then(|r| r) {
                    Ok(mut outcomes) => match outcomes.pop() {
                        Some(WriteOutcome::Appended(list)) if list.len() == waiters.len() => {
                            Ok(list)
                        }
                        other => Err(EngineError::Internal(format!(
                            "unexpected append outcome {other:?}"
                        ))),
                    },
                    Err(e) => Err(EngineError::from(e)),
                };
                match appended {
                    Ok(list) => {
                        let mut clears = Vec::new();
                        for ((origin, reply), a) in waiters.into_iter().zip(list) {
                            if !a.duplicate {
                                METRICS.messages_in.inc();
                                act.after_message(&a.message, &mut clears);
                                act.committed(&a.message, origin, ctx);
                            }
                            let _ = reply.send(Ok(Published {
                                message: a.message,
                                duplicate: a.duplicate,
                            }));
                        }
                        act.clear_outbox(clears);
                    }
                    Err(e) => {
                        for (_, reply) in waiters {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
                act.flush_pending(ctx);
                // Pacing may leave messages pending (their timer runs): they go first.
                if act.stopping && !act.writing && act.pending.is_empty() {
                    ctx.stop();
                }
            })
            .spawn(ctx);
    }

    /// Sends the notifications a just-committed message causes. Fire and forget on purpose:
    /// if this process dies or the notification commit fails, the message's outbox row stays
    /// and the sweep processes it again. Outbox rows of messages that need no notification
    /// are collected in `clears`, for one delete per batch.
    fn after_message(&self, m: &StoredMessage, clears: &mut Vec<String>) {
        let has_outbox = self.notifier.has_outbox(&self.id, m);
        match self
            .notifier
            .plan(&self.id, m, has_outbox, &self.members, &self.subscribers)
        {
            Followup::Nothing => {}
            Followup::Notify(n) => self.notifier.center.do_send(*n),
            Followup::Clear(id) => clears.push(id),
        }
    }

    /// Deletes the outbox rows of messages that needed no notification, in one write. Fire
    /// and forget: a row whose delete is lost is re-processed by the sweep, which again
    /// finds nothing due and deletes it.
    fn clear_outbox(&self, message_ids: Vec<String>) {
        if message_ids.is_empty() {
            return;
        }
        self.store.commits.do_send(Commit {
            ops: vec![WriteOp::ClearOutbox { message_ids }],
        });
    }
}
/// A stored message and whether it was stored earlier (an idempotent retry).
#[derive(Debug, Clone)]
pub struct Published {
    pub message: StoredMessage,
    pub duplicate: bool,
}

/// Sent by the supervisor for a `send`: store and, once committed, fan out.
#[derive(Message)]
#[rtype(result = "Result<Published, EngineError>")]
pub struct Publish {
    pub message: NewMessage,
    /// The sending session, which gets the ack instead of the `message` frame.
    pub origin: Option<SessionId>,
    /// A system message from an app backend or admin (REST): the sender need not be a
    /// member, but the room must exist.
    pub system: bool,
}

impl Handler<Publish> for Room {
    type Result = ResponseFuture<Result<Published, EngineError>>;
    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) -> Self::Result {
        let allowed = if msg.system {
            if self.exists {
                Ok(())
            } else {
                Err(EngineError::NotFound(format!("no room {}", self.id)))
            }
        } else {
            self.require_member(&msg.message.sender)
        };
        if let Err(e) = allowed {
            return Box::pin(async move { Err(e) });
        }
        // A message ends the sender's typing indicator, as in every chat client.
        self.typing.remove(&msg.message.sender);
        let (tx, rx) = oneshot::channel();
        self.pending.push(PendingPublish {
            message: msg.message,
            origin: msg.origin,
            reply: tx,
        });
        self.flush_pending(ctx);
        let timeout = self.store.write_timeout;
        Box::pin(async move {
            match actix::clock::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(EngineError::Unavailable(
                    "room stopped before the message was stored".into(),
                )),
                // The batch stays in flight: if it commits later it is fanned out then, and
                // a retry with the same client_msg_id gets the original ack.
                Err(_) => Err(write_timed_out()),
            }
        })
    }
}

/// Sent by the supervisor's outbox sweep: these stored messages of the room still have
/// `notification_outbox` rows (their notifications were never settled); plan them again
/// with today's members and subscribers. Answers once every resulting write answered (or
/// the write timeout passed), so the sweep does not hand out the same rows again meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RedoNotifications {
    pub messages: Vec<StoredMessage>,
}

impl Handler<RedoNotifications> for Room {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: RedoNotifications, _: &mut Context<Self>) -> Self::Result {
        let mut notifies = Vec::new();
        let mut clears = Vec::new();
        for m in &msg.messages {
            match self
                .notifier
                .plan(&self.id, m, true, &self.members, &self.subscribers)
            {
                Followup::Nothing => {}
                Followup::Notify(n) => notifies.push(*n),
                Followup::Clear(id) => clears.push(id),
            }
        }
        let room = self.id.clone();
        let center = self.notifier.center.clone();
        let commits = self.store.commits.clone();
        let timeout = self.store.write_timeout;
        Box::pin(async move {
            let sends =
                futures_util::future::join_all(notifies.into_iter().map(|n| center.send(n)));
            let clear = async {
                if clears.is_empty() {
                    return Ok(Vec::new());
                }
                commits
                    .send(Commit {
                        ops: vec![WriteOp::ClearOutbox {
                            message_ids: clears,
                        }],
                    })
                    .await
                    .map_err(PersistError::from)
                    .and_then(|r| r)
            };
            match actix::clock::timeout(timeout, futures_util::future::join(sends, clear)).await {
                Ok((sent, cleared)) => {
                    // What failed keeps its outbox row: the next sweep tries again.
                    let failed = sent.into_iter().filter(|r| !matches!(r, Ok(Ok(_)))).count();
                    if failed > 0 {
                        log::warn!("room {room}: {failed} re-processed notifications failed");
                    }
                    if let Err(e) = cleared {
                        log::warn!("room {room}: outbox rows not cleared: {e}");
                    }
                }
                Err(_) => log::warn!("room {room}: re-processed notifications timed out"),
            }
        })
    }
}
