//! `RoomStreams`: the continuity of one session's `message` frames, per room.
//!
//! The guarantee (docs/protocol.md, "Continuity"): per connection and per room, every
//! `message` frame carries the next seq: no gap, no duplicate, no reordering, across the
//! replay at connect or join and live traffic, and across a session that fell behind. This
//! module is the bookkeeping that makes it so, kept free of actors so it can be tested alone:
//!
//! - A room is *live* when the next frame the room actor pushes is the next seq: it is
//!   written at once. A duplicate (seq already written) is dropped; a jump puts the room in
//!   catch-up.
//! - A room *catching up* is filled from the database, one page at a time (one fetch in flight
//!   per session, so the replay is flow-controlled by the session's outbox), while its live
//!   frames wait here in seq order. Once the pages reach the target and the held frames follow
//!   on, the room is live again. Held frames are bounded in bytes; past the bound they are
//!   dropped and fetched from the database instead (everything fanned out is committed).
//! - A room whose `join` is in flight holds its live frames until the join answers with the
//!   position the stream continues from.
//! - A backlog of more than `replay_max` messages when a room's stream begins (at connect or
//!   join) is cut: a `replay_truncated` marker names the range left out, and the stream goes
//!   on right after it. A hole in the stored history (messages no longer stored) is marked the
//!   same way. A session that falls behind during the connection is caught up in full.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::HashMap;

use crate::actors::session::FrameMeta;
use crate::db::models::StoredMessage;
use crate::domain::RoomId;
use crate::protocol::{EncodedFrame, MessageObject, ReplayTruncated, ServerFrame};

/// What the session writes to its client, in this order.
#[derive(Debug)]
pub enum Emit {
    /// A `message` frame (and its meta, for the unread counts).
    Message(EncodedFrame, Arc<FrameMeta>),
    /// `replay_truncated`: messages `from..=to` of `room` are left out of the stream.
    Truncated { room: RoomId, from: i64, to: i64 },
}

impl Emit {
    /// The frame to write.
    pub fn frame(&self) -> EncodedFrame {
        match self {
            Emit::Message(f, _) => f.clone(),
            Emit::Truncated { room, from, to } => ServerFrame::ReplayTruncated(ReplayTruncated {
                missing_from: *from,
                missing_to: *to,
                room,
            })
            .encode(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Live,
    /// A `join` is in flight: the position is not known yet.
    Joining,
    /// Filled from the database until `last >= target` and a fetch came back short.
    CatchingUp {
        target: i64,
        exhausted: bool,
    },
}

#[derive(Debug)]
struct RoomStream {
    /// The last seq written to the client (0: none).
    last: i64,
    mode: Mode,
    /// Live frames waiting while the room catches up or joins, in seq order.
    held: VecDeque<(i64, EncodedFrame, Arc<FrameMeta>)>,
    held_bytes: usize,
    /// The highest seq dropped from `held` (or lost to a full outbox) while the position was
    /// unknown: the catch-up must reach it.
    dropped_upto: i64,
    queued: bool,
    /// The target when the fetch in flight was issued: a page that ends the store proves
    /// nothing about a target raised after it was read.
    fetched_for: i64,
}

impl RoomStream {
    fn new(last: i64, mode: Mode) -> Self {
        RoomStream {
            last,
            mode,
            held: VecDeque::new(),
            held_bytes: 0,
            dropped_upto: 0,
            queued: false,
            fetched_for: 0,
        }
    }
}

/// What [`RoomStreams::advance`] made of a live frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    Next,
    Repeat,
    Other,
}

/// A page fetch the session should start: messages of `room` after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub room: RoomId,
    pub after: i64,
}

/// The per-room streams of one session.
#[derive(Debug)]
pub struct RoomStreams {
    rooms: HashMap<RoomId, RoomStream>,
    /// Rooms waiting for a page, in order.
    queue: VecDeque<RoomId>,
    /// The room whose page is being fetched.
    fetching: Option<RoomId>,
    /// The position that fetch reads after: a page for a stream rewound since is stale.
    fetching_after: i64,
    held_bytes: usize,
    max_held_bytes: usize,
    replay_max: i64,
}

impl RoomStreams {
    /// `max_held_bytes`: live frames held across the session's catching-up rooms;
    /// `replay_max`: most messages one room catches up before the rest is marked truncated.
    pub fn new(max_held_bytes: usize, replay_max: i64) -> Self {
        RoomStreams {
            rooms: HashMap::default(),
            queue: VecDeque::new(),
            fetching: None,
            fetching_after: 0,
            held_bytes: 0,
            max_held_bytes,
            replay_max: replay_max.max(1),
        }
    }

    /// The last seq written in `room`, if the room has a stream.
    pub fn position(&self, room: &RoomId) -> Option<i64> {
        self.rooms.get(room).map(|r| r.last)
    }

    /// Whether `room` is live (nothing to catch up, nothing held).
    pub fn is_live(&self, room: &RoomId) -> bool {
        self.rooms.get(room).is_some_and(|r| r.mode == Mode::Live)
    }

    /// The common case of a live frame, without copying it: `Next` when `seq` is the next of
    /// a live room (recorded as written: the caller writes the frame), `Repeat` when it was
    /// written already; `Other` when [`live`](Self::live) must decide (a jump, a room catching
    /// up or joining).
    pub fn advance(&mut self, room: &RoomId, seq: i64) -> Advance {
        let Some(r) = self.rooms.get_mut(room) else {
            // A room this session was subscribed to during the connection (an invitation,
            // a first direct message, another device's join): its stream starts here.
            self.rooms
                .insert(room.clone(), RoomStream::new(seq, Mode::Live));
            return Advance::Next;
        };
        if seq <= r.last {
            return Advance::Repeat;
        }
        if r.mode == Mode::Live && seq == r.last + 1 {
            r.last = seq;
            return Advance::Next;
        }
        Advance::Other
    }

    /// A live frame pushed by the room actor.
    pub fn live(
        &mut self,
        room: &RoomId,
        seq: i64,
        frame: &EncodedFrame,
        meta: &Arc<FrameMeta>,
        out: &mut Vec<Emit>,
    ) {
        let Some(r) = self.rooms.get_mut(room) else {
            // A room this session was subscribed to during the connection (an invitation,
            // a first direct message, another device's join): its stream starts here.
            self.rooms
                .insert(room.clone(), RoomStream::new(seq, Mode::Live));
            out.push(Emit::Message(frame.clone(), meta.clone()));
            return;
        };
        if seq <= r.last {
            return; // already written (replayed, or a duplicate)
        }
        match r.mode {
            Mode::Live if seq == r.last + 1 => {
                r.last = seq;
                out.push(Emit::Message(frame.clone(), meta.clone()));
            }
            Mode::Live => {
                // A jump: what lies between is committed, so fetch it.
                r.mode = Mode::CatchingUp {
                    target: seq - 1,
                    exhausted: false,
                };
                self.hold(room, seq, frame, meta);
                self.enqueue(room);
            }
            Mode::Joining | Mode::CatchingUp { .. } => self.hold(room, seq, frame, meta),
        }
    }

    fn hold(&mut self, room: &RoomId, seq: i64, frame: &EncodedFrame, meta: &Arc<FrameMeta>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if self.held_bytes + frame.len() > self.max_held_bytes {
            // Too much waiting: drop this room's held frames and fetch them instead.
            self.held_bytes -= r.held_bytes;
            r.held.clear();
            r.held_bytes = 0;
            Self::must_reach(r, seq);
            return;
        }
        self.held_bytes += frame.len();
        r.held_bytes += frame.len();
        r.held.push_back((seq, frame.clone(), meta.clone()));
    }

    /// The catch-up of `r` must reach `seq` (a frame that was dropped, not held).
    fn must_reach(r: &mut RoomStream, seq: i64) {
        match &mut r.mode {
            Mode::CatchingUp { target, exhausted } => {
                if seq > *target {
                    *target = seq;
                    *exhausted = false;
                }
            }
            Mode::Joining => r.dropped_upto = r.dropped_upto.max(seq),
            Mode::Live => {
                r.mode = Mode::CatchingUp {
                    target: seq,
                    exhausted: false,
                }
            }
        }
    }

    /// A `message` frame of `room` with `seq` could not be queued for this session (its
    /// outbox was full): it will be fetched from the database.
    pub fn lost(&mut self, room: &RoomId, seq: i64) {
        let r = self
            .rooms
            .entry(room.clone())
            .or_insert_with(|| RoomStream::new(seq - 1, Mode::Live));
        if seq <= r.last {
            return;
        }
        Self::must_reach(r, seq);
        if matches!(r.mode, Mode::CatchingUp { .. }) {
            self.enqueue(room);
        }
    }

    /// The `message` frame `seq` of `room` was emitted but the transport did not take it:
    /// the stream goes back to just before it and fetches it, and what had followed, again.
    /// The caller writes no later frame of `room` from the same batch.
    pub fn unwritten(&mut self, room: &RoomId, seq: i64) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let reach = r.last.max(seq);
        r.last = r.last.min(seq - 1);
        match &mut r.mode {
            Mode::CatchingUp { target, exhausted } => {
                *target = (*target).max(reach);
                *exhausted = false;
            }
            Mode::Live => {
                r.mode = Mode::CatchingUp {
                    target: reach,
                    exhausted: false,
                }
            }
            Mode::Joining => r.dropped_upto = r.dropped_upto.max(reach),
        }
        self.enqueue(room);
    }

    /// A `join` of `room` is in flight: hold its live frames until [`begin`](Self::begin).
    pub fn joining(&mut self, room: &RoomId) {
        self.rooms
            .entry(room.clone())
            .or_insert_with(|| RoomStream::new(0, Mode::Joining));
    }

    /// The `join` failed: forget the room unless it had a stream before.
    pub fn join_failed(&mut self, room: &RoomId) {
        if self
            .rooms
            .get(room)
            .is_some_and(|r| r.mode == Mode::Joining)
        {
            self.forget(room);
        }
    }

    /// The stream of `room` continues after `position`; `room_seq` is the room's seq when
    /// this session was subscribed (every later message reaches it live). A room that already
    /// has a stream (a repeated join) keeps it.
    pub fn begin(&mut self, room: &RoomId, position: i64, room_seq: i64, out: &mut Vec<Emit>) {
        let r = self
            .rooms
            .entry(room.clone())
            .or_insert_with(|| RoomStream::new(0, Mode::Joining));
        if r.mode != Mode::Joining {
            return;
        }
        r.last = position.max(0);
        // A backlog past the maximum: the oldest part is left out, said so in order.
        if room_seq - r.last > self.replay_max {
            let to = room_seq - self.replay_max;
            out.push(Emit::Truncated {
                room: room.clone(),
                from: r.last + 1,
                to,
            });
            r.last = to;
        }
        let target = room_seq.max(r.dropped_upto);
        r.mode = Mode::CatchingUp {
            target,
            exhausted: false,
        };
        // A first page the caller read after the subscription speaks for this target.
        r.fetched_for = target;
        self.settle(room, out);
    }

    /// A page of stored messages of `room` after the position the fetch named; `more` when
    /// the store holds more after the page.
    pub fn page(
        &mut self,
        room: &RoomId,
        messages: &[StoredMessage],
        more: bool,
        out: &mut Vec<Emit>,
    ) {
        let fetched = self.fetching.as_ref() == Some(room);
        if fetched {
            self.fetching = None;
        }
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if !matches!(r.mode, Mode::CatchingUp { .. }) {
            return;
        }
        if fetched && self.fetching_after != r.last {
            // The stream was rewound while this page was read: read again from its position.
            self.settle(room, out);
            return;
        }
        for m in messages {
            if m.seq <= r.last {
                continue;
            }
            if m.seq > r.last + 1 {
                // Messages no longer stored: say so, then go on.
                out.push(Emit::Truncated {
                    room: room.clone(),
                    from: r.last + 1,
                    to: m.seq - 1,
                });
            }
            r.last = m.seq;
            out.push(message_emit(room, m));
        }
        if let Mode::CatchingUp { exhausted, target } = &mut r.mode {
            *exhausted = !more && *target <= r.fetched_for;
        }
        self.settle(room, out);
    }

    /// A page fetch failed: the room goes back in the queue (the session retries later).
    pub fn fetch_failed(&mut self, room: &RoomId) {
        if self.fetching.as_ref() == Some(room) {
            self.fetching = None;
        }
        if let Some(r) = self.rooms.get_mut(room) {
            r.queued = false;
        }
        self.enqueue(room);
    }

    /// Moves a catching-up room on: more pages, the held frames, or live.
    fn settle(&mut self, room: &RoomId, out: &mut Vec<Emit>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let Mode::CatchingUp { target, exhausted } = r.mode else {
            return;
        };
        if r.last < target && !exhausted {
            self.enqueue(room);
            return;
        }
        if r.last < target {
            // The store has nothing more, yet the target was committed: no longer stored.
            out.push(Emit::Truncated {
                room: room.clone(),
                from: r.last + 1,
                to: target,
            });
            r.last = target;
        }
        while let Some((seq, ..)) = r.held.front() {
            let seq = *seq;
            if seq > r.last + 1 {
                break;
            }
            let Some((_, frame, meta)) = r.held.pop_front() else {
                break;
            };
            r.held_bytes -= frame.len();
            self.held_bytes -= frame.len();
            if seq == r.last + 1 {
                r.last = seq;
                out.push(Emit::Message(frame, meta));
            }
        }
        if let Some((seq, ..)) = r.held.front() {
            // A gap before the next held frame: fetch it.
            r.mode = Mode::CatchingUp {
                target: seq - 1,
                exhausted: false,
            };
            self.enqueue(room);
        } else {
            r.mode = Mode::Live;
        }
    }

    fn enqueue(&mut self, room: &RoomId) {
        if let Some(r) = self.rooms.get_mut(room) {
            if !r.queued && self.fetching.as_ref() != Some(room) {
                r.queued = true;
                self.queue.push_back(room.clone());
            }
        }
    }

    /// The next page to fetch, unless one is in flight.
    pub fn next_fetch(&mut self) -> Option<Fetch> {
        if self.fetching.is_some() {
            return None;
        }
        while let Some(room) = self.queue.pop_front() {
            let Some(r) = self.rooms.get_mut(&room) else {
                continue;
            };
            r.queued = false;
            let Mode::CatchingUp { target, .. } = r.mode else {
                continue;
            };
            r.fetched_for = target;
            self.fetching = Some(room.clone());
            self.fetching_after = r.last;
            return Some(Fetch {
                after: r.last,
                room,
            });
        }
        None
    }

    /// Whether a fetch is in flight or waiting.
    pub fn busy(&self) -> bool {
        self.fetching.is_some() || !self.queue.is_empty()
    }

    /// The session no longer receives `room`.
    pub fn forget(&mut self, room: &RoomId) {
        if let Some(r) = self.rooms.remove(room) {
            self.held_bytes -= r.held_bytes;
        }
        if self.fetching.as_ref() == Some(room) {
            self.fetching = None;
        }
    }

    /// Bytes of live frames held.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

/// The `message` frame of a stored message, with its meta.
pub fn message_emit(room: &RoomId, m: &StoredMessage) -> Emit {
    let frame = ServerFrame::Message(MessageObject::new(m)).encode();
    let meta = Arc::new(FrameMeta::Message {
        room: room.clone(),
        seq: m.seq,
        from: m.from.clone(),
    });
    Emit::Message(frame, meta)
}

#[cfg(test)]
mod tests;
