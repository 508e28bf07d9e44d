//! A room's message order and its traffic from other nodes (cluster mode).
//!
//! Every committed message, this node's or another's, goes through the room's
//! [`Reorder`](crate::cluster::reorder::Reorder) before it is fanned out, so sessions see
//! consecutive seqs even when several nodes commit to the room. A hole that stays open for
//! the gap timeout is read from the database (the seq was committed: the room row lock
//! orders the commits, so a later seq means every earlier one is visible). When the
//! backplane comes back after an outage, or right after the room starts, the room reads
//! whatever was committed past its last released seq. On a single node messages arrive in
//! order and the buffer never holds anything.
//!
//! Other nodes' frames (typing, receipts) are broadcast to this node's subscribers as they
//! come; membership changes made elsewhere arrive through the supervisor ([`MemberChanged`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::Room;
use crate::actors::database::FetchHistory;
use crate::actors::session::handle::FrameMeta;
use crate::cluster::backplane::{RemoteRoomEvent, SubscribeRoom};
use crate::cluster::wire::{RoomEvent, WireFrame};
use crate::db::models::{MemberRole, StoredMessage};
use crate::domain::{ReceiptStatus, SessionId, UserId};
use crate::metrics::METRICS;
use crate::protocol::{EncodedFrame, MessageObject, ServerFrame};

/// Most messages a room holds behind a hole before it reads the hole at once.
pub const MAX_HELD: usize = 10_000;

/// The tail of a room is read this many gap timeouts after its last release (1 s by
/// default).
const TAIL_CHECKS: u32 = 10;

/// Most messages read from the database per gap-fill page.
const FILL_PAGE: i64 = 500;

/// Bytes of bodies per gap-fill page.
const FILL_PAGE_BYTES: usize = 4 * 1024 * 1024;

static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// A distinct number per room actor, so a stopping actor cannot unsubscribe its successor.
pub fn next_instance() -> u64 {
    INSTANCES.fetch_add(1, Ordering::Relaxed)
}

/// A message ready to fan out once every earlier seq has gone out.
#[derive(Debug)]
pub struct Outgoing {
    frame: EncodedFrame,
    from: UserId,
    /// The session that sent it here (it gets an ack, not the frame).
    origin: Option<SessionId>,
}

impl Room {
    /// A message this node committed: tell the other nodes, then fan out in order.
    pub(super) fn committed(
        &mut self,
        m: &StoredMessage,
        origin: Option<SessionId>,
        ctx: &mut Context<Self>,
    ) {
        let frame = ServerFrame::Message(MessageObject::new(m)).encode();
        if self.cluster.enabled() {
            if let Some(wire) = WireFrame::from_encoded(&frame) {
                self.cluster.publish_room(
                    &self.id,
                    RoomEvent::Message {
                        seq: m.seq,
                        from: m.from.clone(),
                        frame: wire,
                    },
                );
            }
        }
        let out = Outgoing {
            frame,
            from: m.from.clone(),
            origin,
        };
        self.offer(m.seq, out, ctx);
    }

    fn offer(&mut self, seq: i64, out: Outgoing, ctx: &mut Context<Self>) {
        let ready = self.reorder.offer(seq, out, Instant::now());
        let released = !ready.is_empty();
        self.release(ready);
        self.watch_gap(ctx);
        if released {
            self.watch_tail(ctx);
        }
    }

    /// Cluster mode: once traffic pauses, reads past the last released seq once. A hole is
    /// noticed when a later seq arrives; a lost event of the room's last message has no
    /// later seq, and would wait for the next message otherwise. One read per burst of
    /// traffic, [`TAIL_CHECKS`] gap timeouts after its last release.
    fn watch_tail(&mut self, ctx: &mut Context<Self>) {
        if !self.cluster.enabled() {
            return;
        }
        if let Some(h) = self.tail_check.take() {
            ctx.cancel_future(h);
        }
        let wait = self.gap_timeout() * TAIL_CHECKS;
        self.tail_check = Some(ctx.run_later(wait, |act, ctx| {
            act.tail_check = None;
            let from = act.reorder.released() + 1;
            act.fill(from, None, ctx);
        }));
    }

    fn release(&mut self, ready: Vec<(i64, Outgoing)>) {
        for (seq, out) in ready {
            self.last_seq = self.last_seq.max(seq);
            self.fan_out(seq, out);
        }
    }

    /// Sends a message frame to the subscribers; the sending session gets an empty frame
    /// with the meta instead, so its stream still moves past this seq in order.
    fn fan_out(&mut self, seq: i64, out: Outgoing) {
        let meta = Arc::new(FrameMeta::Message {
            room: self.id.clone(),
            seq,
            from: out.from,
        });
        self.fan_out_to_all(&out.frame, meta, out.origin);
    }

    /// Arms the one gap check while messages wait behind a hole.
    fn watch_gap(&mut self, ctx: &mut Context<Self>) {
        if self.reorder.held() == 0 || self.gap_check.is_some() || self.filling {
            return;
        }
        let wait = self.gap_timeout();
        self.gap_check = Some(ctx.run_later(wait, |act, ctx| {
            act.gap_check = None;
            match act.reorder.due_gap(Instant::now(), act.gap_timeout()) {
                Some((from, to)) => act.fill(from, Some(to), ctx),
                None => act.watch_gap(ctx),
            }
        }));
    }

    fn gap_timeout(&self) -> std::time::Duration {
        self.cluster
            .settings()
            .map_or(std::time::Duration::from_millis(100), |s| s.gap_timeout)
    }

    /// Reads seqs `from..=to` from the database and releases them (and what waited behind
    /// them). Seqs the database does not have were never committed to this room: skipped.
    /// `to` None: everything committed past `from - 1` (a resync).
    fn fill(&mut self, from: i64, to: Option<i64>, ctx: &mut Context<Self>) {
        if self.filling {
            return;
        }
        self.filling = true;
        let limit = to.map_or(FILL_PAGE, |t| (t - from + 1).clamp(1, FILL_PAGE));
        let read = self.store.reader.send(FetchHistory {
            room: self.id.clone(),
            before_seq: None,
            after_seq: Some(from - 1),
            limit,
            max_bytes: FILL_PAGE_BYTES,
            reactions_for: None,
        });
        read.into_actor(self)
            .map(move |res, act, ctx| {
                act.filling = false;
                let (messages, more) = match res {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => {
                        log::warn!("room {}: reading seqs from {from} failed: {e}", act.id);
                        act.retry_fill(ctx);
                        return;
                    }
                    Err(_) => return,
                };
                let got = messages.len() as i64;
                if got > 0 {
                    METRICS.cluster_gap_fills.inc();
                }
                let last = messages.last().map(|m| m.seq);
                for m in messages {
                    if to.is_some_and(|t| m.seq > t) {
                        break;
                    }
                    let out = Outgoing {
                        frame: ServerFrame::Message(MessageObject::new(&m)).encode(),
                        from: m.from.clone(),
                        origin: None,
                    };
                    let ready = act.reorder.offer(m.seq, out, Instant::now());
                    act.release(ready);
                }
                match to {
                    // The page was whole and reached the end of the hole: anything still
                    // missing up to `to` does not exist.
                    Some(t) if !more && (got < limit || last.is_some_and(|l| l >= t)) => {
                        let ready = act.reorder.skip_to(t);
                        act.release(ready);
                    }
                    Some(_) => {}
                    None if more || got == limit => {
                        let next = act.reorder.released() + 1;
                        return act.fill(next, None, ctx);
                    }
                    None => {}
                }
                act.watch_gap(ctx);
            })
            .spawn(ctx);
    }

    fn retry_fill(&mut self, ctx: &mut Context<Self>) {
        let wait = self.gap_timeout() * 5;
        ctx.run_later(wait, |act, ctx| {
            let from = act.reorder.released() + 1;
            act.fill(from, None, ctx);
        });
    }

    /// Starts receiving the room's channel (cluster mode), then reads what was committed
    /// between the room's load and the subscription.
    pub(super) fn join_backplane(&mut self, ctx: &mut Context<Self>) {
        let Some(backplane) = self.cluster.backplane() else {
            return;
        };
        backplane.do_send(SubscribeRoom {
            room: self.id.clone(),
            instance: self.instance,
            to: Some(ctx.address().recipient()),
        });
        let wait = self.gap_timeout();
        ctx.run_later(wait, |act, ctx| {
            let from = act.reorder.released() + 1;
            act.fill(from, None, ctx);
        });
    }

    pub(super) fn leave_backplane(&mut self) {
        if let Some(backplane) = self.cluster.backplane() {
            backplane.do_send(SubscribeRoom {
                room: self.id.clone(),
                instance: self.instance,
                to: None,
            });
        }
    }

    /// Tells the other nodes' subscribers of this room about `frame` (typing, receipts):
    /// `except` a user whose sessions skip it, `receipt` the (user, seq, status) whose meta
    /// moves unread counts on the receiving sessions.
    pub(super) fn publish_frame(
        &self,
        frame: &EncodedFrame,
        except: Option<&UserId>,
        receipt: Option<(UserId, i64, ReceiptStatus)>,
    ) {
        if !self.cluster.enabled() {
            return;
        }
        if let Some(wire) = WireFrame::from_encoded(frame) {
            self.cluster.publish_room(
                &self.id,
                RoomEvent::Frame {
                    frame: wire,
                    except: except.cloned(),
                    receipt,
                },
            );
        }
    }
}

impl Handler<RemoteRoomEvent> for Room {
    type Result = ();
    fn handle(&mut self, msg: RemoteRoomEvent, ctx: &mut Context<Self>) {
        match msg.0.event {
            RoomEvent::Message { seq, from, frame } => {
                let Some(frame) = frame.to_encoded() else {
                    return;
                };
                let out = Outgoing {
                    frame,
                    from,
                    origin: None,
                };
                self.offer(seq, out, ctx);
            }
            RoomEvent::Frame {
                frame,
                except,
                receipt,
            } => {
                let Some(frame) = frame.to_encoded() else {
                    return;
                };
                let meta = receipt.map(|(user, seq, status)| {
                    Arc::new(FrameMeta::Receipt {
                        room: self.id.clone(),
                        user,
                        seq,
                        status,
                    })
                });
                self.broadcast_with(&frame, meta, |s| Some(&s.user) != except.as_ref());
            }
        }
    }
}

/// Sent by the supervisor when the backplane reconnected: read what other nodes committed
/// while their events could not arrive.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resync;

impl Handler<Resync> for Room {
    type Result = ();
    fn handle(&mut self, _: Resync, ctx: &mut Context<Self>) {
        let from = self.reorder.released() + 1;
        self.fill(from, None, ctx);
    }
}

/// Sent by the supervisor: another node changed `user`'s membership (`role` None: no
/// longer a member).
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberChanged {
    pub user: UserId,
    pub role: Option<MemberRole>,
}

impl Handler<MemberChanged> for Room {
    type Result = ();
    fn handle(&mut self, msg: MemberChanged, _: &mut Context<Self>) {
        match msg.role {
            Some(role) => {
                // A join never demotes an owner: keep a role already known.
                self.exists = true;
                if self.online_lookup.is_some() {
                    // Joined on another node, so most likely connected there; one who is
                    // not is filtered out by presence when listed.
                    self.online_anywhere.insert(msg.user.clone());
                }
                self.members.entry(msg.user).or_insert(role);
            }
            None => {
                self.members.remove(&msg.user);
                self.online_anywhere.remove(&msg.user);
                self.subscribers.retain(|s| s.user != msg.user);
            }
        }
    }
}
