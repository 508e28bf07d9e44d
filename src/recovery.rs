//! `RecoveryLog`: Socket.IO connection-state recovery (`pid` / `offset`, `socket.recovered`)
//! on top of Herald's per-room streams.
//!
//! The official client keeps the `pid` the server gave in its CONNECT answer and the offset
//! of the last event it received (the event's last argument), and presents both when it
//! reconnects. Herald gives every `message` event an offset (a counter per `pid`) and keeps a
//! short log of which (room, seq) each offset carried. When the session ends, the log is kept
//! for the recovery window; a reconnect that presents the `pid` and an offset still inside the
//! log gets exact per-room positions: everything up to the offset was received, nothing after
//! it. Older offsets, unknown `pid`s and a restarted server are not recovered, and the session
//! falls back to device positions or the user's watermark (and a new `pid`).
//!
//! Offsets are appended only to clients that asked for recovery (their CONNECT carried a
//! `pid`, or `auth.recovery: true`): a trailing argument would break event handlers of clients
//! that do not expect it (python-socketio calls handlers with every argument).

use std::collections::{HashMap, VecDeque};

use crate::domain::RoomId;

/// Message events remembered per session for recovery.
pub const RECOVERY_LOG_LEN: usize = 256;

/// Runs once per `message` event a recovering client is sent, so it neither allocates nor
/// hashes on that path: rooms are numbered once, and the log holds numbers.
#[derive(Debug, Clone)]
pub struct RecoveryLog {
    /// The rooms the log has named, numbered by their place here.
    rooms: Vec<RoomId>,
    numbers: foldhash::HashMap<RoomId, u32>,
    /// Per room number, the last seq the client had before the log's first entry (`None`:
    /// not known).
    base: Vec<Option<i64>>,
    /// (offset, room number, seq) of the message events sent, oldest first.
    log: VecDeque<(u64, u32, i64)>,
    /// The room of the last event: most events follow one of the same room.
    last_room: Option<u32>,
    /// The next offset to give.
    next: u64,
    /// Offsets up to this one were folded into `base` (the log forgot them).
    forgotten_upto: u64,
    /// The offset before this session's first.
    start: u64,
    /// Whether the client was given offsets (it asked for recovery).
    pub offsets: bool,
}

impl RecoveryLog {
    /// A log whose offsets start after `after` (a recovered `pid` keeps counting), for a
    /// client that had `base` per room.
    pub fn new(after: u64, base: HashMap<RoomId, i64>, offsets: bool) -> Self {
        let mut log = RecoveryLog {
            rooms: Vec::new(),
            numbers: foldhash::HashMap::default(),
            base: Vec::new(),
            log: VecDeque::new(),
            last_room: None,
            next: after + 1,
            forgotten_upto: after,
            start: after,
            offsets,
        };
        for (room, seq) in base {
            log.set_base(&room, seq);
        }
        log
    }

    /// The last offset given (0: none).
    pub fn last_offset(&self) -> u64 {
        self.next - 1
    }

    /// The number of `room`, given now if it has none.
    fn number(&mut self, room: &RoomId) -> u32 {
        if let Some(n) = self.last_room.filter(|&n| self.rooms[n as usize] == *room) {
            return n;
        }
        let n = match self.numbers.get(room) {
            Some(&n) => n,
            None => {
                let n = self.rooms.len() as u32;
                self.rooms.push(room.clone());
                self.base.push(None);
                self.numbers.insert(room.clone(), n);
                n
            }
        };
        self.last_room = Some(n);
        n
    }

    /// Sets where the client stands in `room` before anything is sent (the replay start).
    pub fn set_base(&mut self, room: &RoomId, seq: i64) {
        let n = self.number(room);
        self.base[n as usize] = Some(seq);
    }

    /// A `message` event of (room, seq) is sent; answers its offset.
    pub fn sent(&mut self, room: &RoomId, seq: i64) -> u64 {
        let offset = self.next;
        self.next += 1;
        let n = self.number(room);
        self.log.push_back((offset, n, seq));
        if self.log.len() > RECOVERY_LOG_LEN {
            if let Some((o, r, s)) = self.log.pop_front() {
                let b = &mut self.base[r as usize];
                *b = Some(b.map_or(s, |b| b.max(s)));
                self.forgotten_upto = o;
            }
        }
        offset
    }

    /// The event numbered `offset` (the last one) was not sent after all.
    pub fn unsend(&mut self, offset: u64) {
        if self.log.back().is_some_and(|(o, ..)| *o == offset) {
            self.log.pop_back();
        }
    }

    /// Where the client stands per room if it received every event up to `offset` (as it
    /// says on reconnect), or `None` when that cannot be told exactly.
    pub fn positions_at(&self, offset: Option<u64>) -> Option<HashMap<RoomId, i64>> {
        let upto = match offset {
            Some(o) if o >= self.forgotten_upto && o < self.next => o,
            Some(_) => return None,
            // No offset: with offsets given, the client received no event of this session
            // (exact only if the log forgot nothing); without, nothing is known.
            None if self.offsets && self.forgotten_upto == self.start => self.start,
            None if self.log.is_empty() => self.forgotten_upto,
            None => return None,
        };
        let mut positions = self.base.clone();
        for &(o, room, seq) in &self.log {
            if o > upto {
                break;
            }
            let p = &mut positions[room as usize];
            *p = Some(p.map_or(seq, |p| p.max(seq)));
        }
        Some(
            self.rooms
                .iter()
                .zip(positions)
                .filter_map(|(room, p)| Some((room.clone(), p?)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RoomId {
        RoomId::parse(s).unwrap()
    }

    #[test]
    fn positions_follow_the_offset_the_client_received() {
        let mut log = RecoveryLog::new(0, HashMap::from([(r("public:a"), 3)]), true);
        assert_eq!(log.sent(&r("public:a"), 4), 1);
        assert_eq!(log.sent(&r("public:b"), 10), 2);
        assert_eq!(log.sent(&r("public:a"), 5), 3);
        let at2 = log.positions_at(Some(2)).unwrap();
        assert_eq!((at2[&r("public:a")], at2[&r("public:b")]), (4, 10));
        let none = log.positions_at(None).unwrap();
        assert_eq!(none[&r("public:a")], 3, "no event received: the base");
        assert!(!none.contains_key(&r("public:b")));
        assert!(log.positions_at(Some(9)).is_none(), "an offset never given");
    }

    #[test]
    fn an_offset_the_log_forgot_is_not_recovered() {
        let mut log = RecoveryLog::new(0, HashMap::new(), true);
        for seq in 1..=(RECOVERY_LOG_LEN as i64 + 10) {
            log.sent(&r("public:a"), seq);
        }
        assert!(log.positions_at(Some(5)).is_none());
        assert!(log.positions_at(None).is_none());
        let last = log.last_offset();
        assert_eq!(
            log.positions_at(Some(last)).unwrap()[&r("public:a")],
            RECOVERY_LOG_LEN as i64 + 10
        );
    }

    #[test]
    fn rooms_interleaved_past_the_log_keep_their_positions() {
        let mut log = RecoveryLog::new(0, HashMap::from([(r("public:c"), 7)]), true);
        let n = RECOVERY_LOG_LEN as i64 + 20;
        for seq in 1..=n {
            log.sent(&r("public:a"), seq);
            log.sent(&r("public:b"), 100 + seq);
        }
        let last = log.last_offset();
        let at = log.positions_at(Some(last)).unwrap();
        assert_eq!(at.len(), 3, "{at:?}");
        assert_eq!(at[&r("public:a")], n);
        assert_eq!(at[&r("public:b")], 100 + n);
        assert_eq!(at[&r("public:c")], 7, "a base the log never named");
        // One event back: b's last one not received.
        let before = log.positions_at(Some(last - 1)).unwrap();
        assert_eq!(
            (before[&r("public:a")], before[&r("public:b")]),
            (n, 99 + n)
        );
    }

    #[test]
    fn without_offsets_only_an_empty_log_is_exact() {
        let mut log = RecoveryLog::new(0, HashMap::from([(r("public:a"), 3)]), false);
        assert_eq!(log.positions_at(None).unwrap()[&r("public:a")], 3);
        log.sent(&r("public:a"), 4);
        assert!(log.positions_at(None).is_none());
    }
}
