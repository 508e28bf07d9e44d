//! The notification outbox sweep: reads unsettled outbox rows in bounded batches and sends
//! them back to their rooms (`RedoNotifications`); `SweepOutbox` runs one now.

use super::*;
use crate::actors::room::RedoNotifications;

/// Most outbox rows one sweep takes (oldest first); the rest wait for the next sweep.
pub const OUTBOX_BATCH: i64 = 500;

/// Rows younger than this (or the sweep interval, if longer) are left to the room that is
/// processing them right now.
pub const OUTBOX_MIN_AGE: Duration = Duration::from_secs(1);

impl RoomSupervisor {
    /// Sends every outbox row older than `min_age` (and every row of a previous process),
    /// at most [`OUTBOX_BATCH`], back to its room; answers how many messages were sent.
    /// Completes once the rooms answered, so the rows are either settled or left for the
    /// next sweep; a sweep while one is running does nothing.
    pub(super) fn sweep_outbox(
        &mut self,
        min_age: Duration,
    ) -> ResponseActFuture<Self, Result<usize, EngineError>> {
        if self.outbox_sweeping {
            return Box::pin(fut::ready(Ok(0)));
        }
        self.outbox_sweeping = true;
        let created_before =
            (crate::domain::now_millis() - min_age.as_millis() as i64).max(self.started_ms);
        let reader = self.store.reader.clone();
        Box::pin(
            async move {
                reader
                    .send(LoadPendingOutbox {
                        created_before,
                        limit: OUTBOX_BATCH,
                    })
                    .await
                    .map_err(PersistError::from)
                    .and_then(|r| r)
            }
            .into_actor(self)
            .then(|res, act, _| {
                let mut by_room: HashMap<RoomId, Vec<crate::db::models::StoredMessage>> =
                    HashMap::new();
                let found = res.map(|messages| {
                    let n = messages.len();
                    for m in messages {
                        by_room.entry(m.room.clone()).or_default().push(m);
                    }
                    n
                });
                if let Ok(n) = &found {
                    if *n > 0 {
                        log::info!("outbox sweep: re-processing {n} messages");
                        METRICS.outbox_redone.inc_by(*n as u64);
                    }
                }
                let sends: Vec<_> = by_room
                    .into_iter()
                    .map(|(room, messages)| act.room(&room).send(RedoNotifications { messages }))
                    .collect();
                async move {
                    // A room that stopped meanwhile leaves its rows for the next sweep.
                    futures_util::future::join_all(sends).await;
                    found.map_err(EngineError::from)
                }
                .into_actor(act)
            })
            .map(|res, act, _| {
                act.outbox_sweeping = false;
                if let Err(e) = &res {
                    log::warn!("outbox sweep failed: {e}");
                }
                res
            }),
        )
    }
}

/// Sent at start (once migrations are applied) and by tests: run the notification outbox
/// sweep now, taking rows at least `min_age` old. Answers how many messages were sent back
/// to their rooms (0 when a sweep was already running).
#[derive(Message)]
#[rtype(result = "Result<usize, EngineError>")]
pub struct SweepOutbox {
    pub min_age: Duration,
}

impl Handler<SweepOutbox> for RoomSupervisor {
    type Result = ResponseActFuture<Self, Result<usize, EngineError>>;
    fn handle(&mut self, msg: SweepOutbox, _: &mut Context<Self>) -> Self::Result {
        self.sweep_outbox(msg.min_age)
    }
}
