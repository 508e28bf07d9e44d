//! Unread message counts as one session of a user sees them: per room (last_seq, read_seq),
//! seeded from the `sync` data and kept current from the frames the session delivers, and the
//! coalesced `room_unread` frames that report changes. Used by every kind of session.

use foldhash::HashMap;
use std::time::Duration;

use crate::actors::session::FrameMeta;
use crate::domain::{ReceiptStatus, RoomId, UserId};
use crate::protocol::{EncodedFrame, RoomUnread, ServerFrame};

/// How long unread changes are collected before `room_unread` frames go out, so a busy room
/// costs a client a few frames per second rather than one per message.
pub const UNREAD_COALESCE: Duration = Duration::from_millis(100);

/// Per-room (last_seq, read_seq) of this session's user, kept from the `sync` data and the
/// frames the session delivers. Unread = last_seq - read_seq: sending advances one's own read
/// watermark, so nothing after it is one's own.
#[derive(Default)]
pub struct UnreadCounts {
    pub rooms: HashMap<RoomId, (i64, i64)>,
    dirty: Vec<RoomId>,
    /// While changes wait: the owner's fallback flush timer, and when they will have been
    /// collected for [`UNREAD_COALESCE`].
    pub pending: Option<(actix::SpawnHandle, std::time::Instant)>,
}

impl UnreadCounts {
    pub fn total(&self) -> i64 {
        self.rooms
            .values()
            .map(|(last, read)| (last - read).max(0))
            .sum()
    }

    fn mark(&mut self, room: &RoomId) {
        if !self.dirty.contains(room) {
            self.dirty.push(room.clone());
        }
    }

    /// Applies what a delivered frame says; true when a count may have changed.
    pub fn apply(&mut self, me: &UserId, meta: &FrameMeta) -> bool {
        match meta {
            FrameMeta::Message { room, seq, from } => {
                // Runs per delivered message in every session of a room: no key clone (an
                // allocation) unless the room is new to this session.
                let entry = match self.rooms.get_mut(room) {
                    Some(e) => e,
                    None => self.rooms.entry(room.clone()).or_insert((seq - 1, seq - 1)),
                };
                entry.0 = entry.0.max(*seq);
                if from == me {
                    entry.1 = entry.1.max(*seq);
                }
                self.mark(room);
                true
            }
            FrameMeta::Receipt {
                room,
                user,
                seq,
                status,
            } if user == me && *status == ReceiptStatus::Read => self.read_up_to(room, *seq),
            FrameMeta::Receipt { .. } => false,
        }
    }

    pub fn read_up_to(&mut self, room: &RoomId, seq: i64) -> bool {
        match self.rooms.get_mut(room) {
            Some(entry) if entry.1 < seq => {
                entry.1 = seq;
                entry.0 = entry.0.max(seq);
                self.mark(room);
                true
            }
            _ => false,
        }
    }
}

impl UnreadCounts {
    /// The `room_unread` frames of every room changed since the last call.
    pub fn take_frames(&mut self) -> Vec<EncodedFrame> {
        let total = self.total();
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|room| {
                let (last, read) = self.rooms.get(&room)?;
                let frame = ServerFrame::RoomUnread(RoomUnread {
                    room: &room,
                    unread: (last - read).max(0),
                    unread_total: total,
                });
                Some(frame.encode())
            })
            .collect()
    }

    /// Seeds the counts from the user's rooms at connect.
    pub fn seed(&mut self, rooms: &[crate::db::models::RoomSummary]) {
        for r in rooms {
            self.rooms.insert(r.room.clone(), (r.last_seq, r.read_seq));
        }
    }
}
