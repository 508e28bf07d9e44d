//! `StreamSession`: how a session that carries rooms (`WsSession`, `SocketIoSession`) keeps
//! the continuity promise of [`crate::stream`] on its wire.
//!
//! It starts each room's stream from the engine's replay plan, passes every live `message`
//! frame through the room's stream (written, held or dropped as a duplicate), takes back what
//! a full outbox dropped, and fetches replay pages one at a time, each only when the previous
//! one is written and the transport has room: a large backlog is streamed, never loaded at
//! once. Each session says how a frame goes on its wire and when its transport has room.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::client_session::ClientSession;
use super::session::inbox::Delivered;
use super::session::{Deliver, FrameMeta, OutboxGauge};
use crate::config::Settings;
use crate::domain::RoomId;
use crate::engine::{RoomReplay, SessionPort};
use crate::metrics::METRICS;
use crate::protocol::EncodedFrame;
use crate::stream::{Advance, Emit, RoomStreams};

/// How long a session waits before retrying a replay page the database did not give.
const PAGE_RETRY: Duration = Duration::from_millis(500);

/// The streams of a new session: held frames are bounded by the outbox's byte bound.
pub fn new_streams(settings: &Settings) -> RoomStreams {
    RoomStreams::new(settings.outbox_bytes, settings.replay_max)
}

pub trait StreamSession: ClientSession {
    fn streams(&mut self) -> &mut RoomStreams;
    /// What the session may ask of the engine (here: replay pages).
    fn port(&self) -> &SessionPort;
    fn outbox(&self) -> &Arc<OutboxGauge>;
    /// Users hidden from this session's presence and typing frames (they blocked its user).
    fn hidden(&self) -> &crate::protocol::HiddenUsers;
    /// Counts a frame the client got in the session's unread numbers (its user's own
    /// messages and read receipts lower them); true when a count may have changed. A method of
    /// the session, not of the trait, so it borrows the user and the counts separately.
    fn count_unread(&mut self, meta: &FrameMeta) -> bool;
    /// Writes one native frame in the session's wire protocol; false when the transport had
    /// no room and the frame was not written.
    fn write_native(&mut self, frame: EncodedFrame, ctx: &mut Self::Ctx) -> bool;
    /// Writes one `message` frame (of `room`, `seq`); sessions that number their events
    /// (Socket.IO recovery offsets) override it.
    fn write_message(
        &mut self,
        frame: EncodedFrame,
        _room: &RoomId,
        _seq: i64,
        ctx: &mut Self::Ctx,
    ) -> bool {
        self.write_native(frame, ctx)
    }
    /// Whether the transport can take a replay page now. A session answering false calls
    /// [`next_page`](Self::next_page) again once it has room.
    fn ready_for_page(&self) -> bool {
        true
    }

    /// Writes what the streams emitted, in order. A `message` frame the transport could
    /// not take rewinds its stream to just before it (fetched again later), and nothing more
    /// of that room is written from this batch: a later frame would leave a gap.
    fn write_emits(&mut self, out: Vec<Emit>, ctx: &mut Self::Ctx) {
        let mut refused: Vec<RoomId> = Vec::new();
        for e in out {
            match e {
                Emit::Message(frame, meta) => {
                    let message = match &*meta {
                        FrameMeta::Message { room, seq, .. } => Some((room, *seq)),
                        _ => None,
                    };
                    if message.is_some_and(|(room, _)| refused.contains(room)) {
                        continue;
                    }
                    // An empty frame is the session's own message (acked, not echoed).
                    if let (false, Some((room, seq))) = (frame.is_empty(), message) {
                        if !self.write_message(frame, room, seq, ctx) {
                            self.streams().unwritten(room, seq);
                            refused.push(room.clone());
                            continue;
                        }
                    }
                    if self.count_unread(&meta) {
                        self.schedule_unread(ctx);
                    }
                }
                // Emitted again when the refused room is read again.
                Emit::Truncated { room, .. } if refused.contains(&room) => {}
                marker => {
                    self.write_native(marker.frame(), ctx);
                }
            }
        }
    }

    /// Starts every room's stream from the engine's plan (see `Engine::open_session`).
    fn start_streams(&mut self, replay: Vec<RoomReplay>, ctx: &mut Self::Ctx) {
        let mut out = Vec::new();
        for r in replay {
            if let Some((from, to)) = r.truncated {
                out.push(Emit::Truncated {
                    room: r.room.clone(),
                    from,
                    to,
                });
            }
            let streams = self.streams();
            streams.begin(&r.room, r.position, r.room_seq, &mut out);
            if r.room_seq > r.position {
                streams.page(&r.room, &r.first_page, r.more, &mut out);
            }
        }
        self.write_emits(out, ctx);
        self.next_page(ctx);
    }

    /// A `join` of `room` is about to be sent: hold its live frames until it answers.
    fn join_sent(&mut self, room: &RoomId) {
        self.streams().joining(room);
    }

    /// The `join` of `room` answered `ack` (its data) or failed (`None`).
    fn join_answered(
        &mut self,
        room: &RoomId,
        since: Option<i64>,
        ack: Option<&serde_json::Value>,
        ctx: &mut Self::Ctx,
    ) {
        let Some(ack) = ack else {
            self.streams().join_failed(room);
            return;
        };
        let room_seq = ack["seq"].as_i64().unwrap_or(0);
        // The stream continues after what the ack carried: its `missed` list, else the
        // client's `since_seq`, else the room's seq (a plain join starts now).
        let last_missed = ack["missed"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["seq"].as_i64());
        let position = match (last_missed, since) {
            (Some(seq), _) => seq,
            (None, Some(s)) => s.min(room_seq),
            (None, None) => room_seq,
        };
        let mut out = Vec::new();
        self.streams().begin(room, position, room_seq, &mut out);
        self.write_emits(out, ctx);
        self.next_page(ctx);
    }

    /// A frame from a room, the presence registry or the notification center.
    fn on_deliver(&mut self, msg: Deliver, ctx: &mut Self::Ctx) {
        // Through the mailbox, the gauge counted the frame's bytes.
        self.outbox().taken(msg.frame.len());
        self.note_lost();
        self.handle_deliver(&msg, ctx);
    }

    /// The frames a session took from its inbox at once (the slot counted their bytes and
    /// freed them as they were taken).
    fn on_delivered(&mut self, frames: Delivered, ctx: &mut Self::Ctx) {
        self.note_lost();
        for msg in frames {
            self.handle_deliver(&msg, ctx);
        }
    }

    /// Rooms whose frames were dropped since the session last looked are marked for
    /// catching up.
    fn note_lost(&mut self) {
        let lost = {
            let outbox = self.outbox();
            outbox.is_slow().then(|| outbox.take_lost())
        };
        if let Some((lost, other)) = lost {
            if !lost.is_empty() || other > 0 {
                log::debug!(
                    "session fell behind: {} rooms to catch up, {other} other frames dropped",
                    lost.len()
                );
            }
            for (room, seq) in lost {
                self.streams().lost(&room, seq);
            }
        }
    }

    fn handle_deliver(&mut self, msg: &Deliver, ctx: &mut Self::Ctx) {
        let mut out = Vec::new();
        match &msg.meta {
            Some(meta) => match &**meta {
                FrameMeta::Message { room, seq, .. } => match self.streams().advance(room, *seq) {
                    // The hot path: the next message of a live room, written as it is.
                    Advance::Next => {
                        // An empty frame is the session's own message (acked, not echoed).
                        if !msg.frame.is_empty()
                            && !self.write_message(msg.frame.clone(), room, *seq, ctx)
                        {
                            self.streams().unwritten(room, *seq);
                        } else if self.count_unread(meta) {
                            self.schedule_unread(ctx);
                        }
                    }
                    Advance::Repeat => {}
                    Advance::Other => self.streams().live(room, *seq, &msg.frame, meta, &mut out),
                },
                FrameMeta::Receipt { .. } => {
                    if self.write_native(msg.frame.clone(), ctx) && self.count_unread(meta) {
                        self.schedule_unread(ctx);
                    }
                }
            },
            None if msg.frame.is_empty() => {}
            None => {
                if let Some(frame) = self.hidden().filter(msg.frame.clone()) {
                    if !self.write_native(frame, ctx) {
                        METRICS.slow_consumers.inc();
                    }
                }
            }
        }
        self.write_emits(out, ctx);
        self.next_page(ctx);
    }

    /// Fetches the next replay page, unless one is in flight or the transport is full.
    fn next_page(&mut self, ctx: &mut Self::Ctx) {
        if !self.ready_for_page() {
            return;
        }
        let Some(fetch) = self.streams().next_fetch() else {
            return;
        };
        let port = self.port().clone();
        let room = fetch.room.clone();
        ctx.spawn(
            async move { port.replay_page(fetch.room, fetch.after).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let mut out = Vec::new();
                    match res {
                        Ok((messages, more)) => {
                            act.streams().page(&room, &messages, more, &mut out);
                            act.write_emits(out, ctx);
                            act.next_page(ctx);
                        }
                        Err(e) => {
                            log::warn!("replay page of {room} unavailable, retrying: {e}");
                            act.streams().fetch_failed(&room);
                            ctx.run_later(PAGE_RETRY, |act, ctx| act.next_page(ctx));
                        }
                    }
                }),
        );
    }
}
