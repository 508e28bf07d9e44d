//! The lifecycle of a `Room`: loading its state with retry while the mailbox waits, giving up
//! (`RoomFailed` to the supervisor), and stopping on the idle sweep's `Shutdown`.

use std::sync::atomic::Ordering;

use actix::prelude::*;

use crate::actors::database::LoadRoom;
use crate::actors::room_supervisor::{OnlineAmong, RoomFailed};
use crate::cluster::reorder::Reorder;
use crate::domain::RoomId;
use crate::error::PersistError;

use super::Room;
impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Nothing may be handled before membership and last_seq are known: the mailbox is
        // held (`wait`) through every retry, so the subscriptions and requests queued
        // meanwhile are served once the database answers, or dropped (and their senders
        // told by the supervisor) when the room gives up.
        let reader = self.store.reader.clone();
        let room = self.id.clone();
        let window = self.policy.load_retry;
        async move { load_with_retry(reader, room, window).await }
            .into_actor(self)
            .then(|res, act, ctx| {
                match res {
                    Ok(Some(record)) => {
                        act.exists = true;
                        act.name = record.name;
                        act.last_seq = record.last_seq;
                        act.reorder = Reorder::new(record.last_seq, super::remote::MAX_HELD);
                        act.members = record.members.into_iter().collect();
                    }
                    Ok(None) => act.exists = false,
                    Err(e) => return act.give_up(e, ctx),
                }
                act.loaded.store(true, Ordering::Relaxed);
                act.join_backplane(ctx);
                act.ask_online_members()
            })
            .wait(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.leave_backplane();
    }
}

impl Room {
    /// Cluster mode: which members are connected on any node, for the `join` ack and the
    /// `members` pages. Part of the start (the mailbox still waits), so the request that
    /// started the room already sees them; the registry answers from memory.
    fn ask_online_members(&mut self) -> std::pin::Pin<Box<dyn ActorFuture<Self, Output = ()>>> {
        let lookup = match &self.online_lookup {
            Some(l) if !self.members.is_empty() => l.clone(),
            _ => return Box::pin(fut::ready(())),
        };
        let users = self.members.keys().cloned().collect();
        Box::pin(
            lookup
                .send(OnlineAmong { users })
                .into_actor(self)
                .map(|res, act, _| match res {
                    Ok(online) => act.online_anywhere.extend(online),
                    Err(e) => log::warn!("room {}: online members not known: {e}", act.id),
                }),
        )
    }
}

/// Delay before the second attempt to load a room; doubled after each failure.
pub const LOAD_RETRY_FIRST_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Longest delay between two attempts to load a room.
pub const LOAD_RETRY_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(3);

/// Reads the room, retrying with backoff ([`LOAD_RETRY_FIRST_DELAY`] doubling up to
/// [`LOAD_RETRY_MAX_DELAY`]) until it succeeds or `window` has passed since the first try.
async fn load_with_retry(
    reader: Addr<crate::actors::database::Database>,
    room: RoomId,
    window: std::time::Duration,
) -> Result<Option<crate::db::models::RoomRecord>, PersistError> {
    let deadline = std::time::Instant::now() + window;
    let mut delay = LOAD_RETRY_FIRST_DELAY;
    let mut attempt = 1u32;
    loop {
        let res = reader
            .send(LoadRoom { room: room.clone() })
            .await
            .map_err(PersistError::from)
            .and_then(|r| r);
        let e = match res {
            Ok(r) => {
                if attempt > 1 {
                    log::info!("room {room} loaded after {attempt} attempts");
                }
                return Ok(r);
            }
            Err(e) => e,
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(e);
        }
        log::warn!("room {room} could not load (attempt {attempt}, retrying in {delay:?}): {e}");
        actix::clock::sleep(delay.min(left)).await;
        delay = (delay * 2).min(LOAD_RETRY_MAX_DELAY);
        attempt += 1;
    }
}

impl Room {
    /// The room could not be loaded within `load_retry`: tells the supervisor, which forgets
    /// the room and tells every session it counted as subscribed, and stops. The mailbox is
    /// held until the supervisor has answered, so no request can reach a fresh room for the
    /// same id in between; what is still queued is dropped (its senders get `unavailable`).
    fn give_up(
        &mut self,
        e: PersistError,
        ctx: &mut Context<Self>,
    ) -> std::pin::Pin<Box<dyn ActorFuture<Self, Output = ()>>> {
        log::error!(
            "room {} could not load within {:?}, giving up: {e}",
            self.id,
            self.policy.load_retry
        );
        let report = self.supervisor.as_ref().and_then(|s| s.upgrade()).map(|s| {
            s.send(RoomFailed {
                room: self.id.clone(),
                addr: ctx.address(),
                reason: format!("room {} is unavailable: storage cannot be reached", self.id),
            })
        });
        Box::pin(
            async move {
                if let Some(r) = report {
                    // The supervisor gone means the whole engine is stopping.
                    let _ = r.await;
                }
            }
            .into_actor(self)
            .map(|_, _, ctx: &mut Context<Self>| ctx.stop()),
        )
    }
}
/// Sent by the supervisor's idle sweep: stop once nothing is in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Room {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.stopping = true;
        if !self.writing && self.pending.is_empty() {
            ctx.stop();
        }
    }
}
