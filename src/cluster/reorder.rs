//! `Reorder`: a room's messages in seq order, whatever order they arrive in.
//!
//! In cluster mode several nodes commit to the same room. Seqs are allocated in the
//! database (the room row is locked by the committing transaction), so they are unique and
//! gap-free, but the messages reach a node in any order: its own commits from the writer,
//! the others' over the backplane, which may also lose some (a Redis restart). A room keeps
//! one `Reorder`: it releases messages only in seq order, holds the ones past a hole, and
//! says which seqs are missing so the room can read them from the database once the hole
//! has been open for the configured gap deadline. On one node messages always arrive in
//! order, so nothing is ever held.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Messages waiting for the seqs before them. `T` is whatever the room fans out.
#[derive(Debug)]
pub struct Reorder<T> {
    /// The last seq released.
    released: i64,
    held: BTreeMap<i64, T>,
    /// When the current hole (released + 1 missing while later seqs are held) opened.
    hole_since: Option<Instant>,
    /// Most messages held; past it the hole is filled at once (memory bound).
    max_held: usize,
}

impl<T> Reorder<T> {
    /// A buffer that has released everything up to `last_seq`.
    pub fn new(last_seq: i64, max_held: usize) -> Self {
        Reorder {
            released: last_seq,
            held: BTreeMap::new(),
            hole_since: None,
            max_held: max_held.max(1),
        }
    }

    /// The last seq released (everything up to it went out, in order).
    pub fn released(&self) -> i64 {
        self.released
    }

    /// How many messages wait behind a hole.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes message `seq`; returns the messages now releasable, in seq order. A seq already
    /// released or already held is a repeat and dropped.
    pub fn offer(&mut self, seq: i64, item: T, now: Instant) -> Vec<(i64, T)> {
        if seq <= self.released || self.held.contains_key(&seq) {
            return Vec::new();
        }
        self.held.insert(seq, item);
        let out = self.drain();
        if self.held.is_empty() {
            self.hole_since = None;
        } else if out.is_empty() && self.hole_since.is_none() {
            self.hole_since = Some(now);
        } else if !out.is_empty() {
            // A new hole behind what was just released starts its own deadline.
            self.hole_since = Some(now);
        }
        out
    }

    /// Moves past seqs that are known to hold nothing for this room (e.g. the database has
    /// no row for them: they were never committed), releasing what follows.
    pub fn skip_to(&mut self, seq: i64) -> Vec<(i64, T)> {
        if seq > self.released {
            self.released = seq;
            self.held.retain(|s, _| *s > seq);
        }
        let out = self.drain();
        if self.held.is_empty() {
            self.hole_since = None;
        }
        out
    }

    /// The missing range `(from, to)` to read from the database, once the hole has been open
    /// for `deadline` (or at once when too much is held). `None` while there is no hole or
    /// it is young.
    pub fn due_gap(&self, now: Instant, deadline: Duration) -> Option<(i64, i64)> {
        let (&first, _) = self.held.iter().next()?;
        let overdue = self
            .hole_since
            .is_some_and(|t| now.saturating_duration_since(t) >= deadline);
        (overdue || self.held.len() >= self.max_held).then_some((self.released + 1, first - 1))
    }

    /// Notes that the room knows messages exist up to `last_seq` (e.g. the database said so
    /// after a backplane outage): the seqs after `released` up to it are a hole to fill even
    /// though nothing later is held. Returns the range to read, if any.
    pub fn behind(&self, last_seq: i64) -> Option<(i64, i64)> {
        let to = match self.held.iter().next() {
            Some((&first, _)) => first - 1,
            None => last_seq,
        };
        (to > self.released).then_some((self.released + 1, to))
    }

    fn drain(&mut self) -> Vec<(i64, T)> {
        let mut out = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.released + 1 {
                break;
            }
            let (seq, item) = entry.remove_entry();
            self.released = seq;
            out.push((seq, item));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(v: Vec<(i64, &str)>) -> Vec<i64> {
        v.into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn in_order_messages_pass_straight_through() {
        let now = Instant::now();
        let mut r = Reorder::new(10, 100);
        assert_eq!(seqs(r.offer(11, "a", now)), vec![11]);
        assert_eq!(seqs(r.offer(12, "b", now)), vec![12]);
        assert_eq!(r.held(), 0);
        assert_eq!(
            r.due_gap(now + Duration::from_secs(9), Duration::ZERO),
            None
        );
    }

    #[test]
    fn a_hole_holds_later_messages_until_it_is_filled() {
        let now = Instant::now();
        let mut r = Reorder::new(0, 100);
        assert!(r.offer(3, "c", now).is_empty());
        assert!(r.offer(2, "b", now).is_empty());
        assert_eq!(
            r.due_gap(now, Duration::from_millis(50)),
            None,
            "young hole"
        );
        let later = now + Duration::from_millis(60);
        assert_eq!(r.due_gap(later, Duration::from_millis(50)), Some((1, 1)));
        assert_eq!(seqs(r.offer(1, "a", later)), vec![1, 2, 3]);
        assert_eq!(r.released(), 3);
        assert_eq!(r.due_gap(later, Duration::ZERO), None);
    }

    #[test]
    fn repeats_are_dropped() {
        let now = Instant::now();
        let mut r = Reorder::new(5, 100);
        assert!(r.offer(5, "old", now).is_empty());
        assert!(r.offer(7, "x", now).is_empty());
        assert!(r.offer(7, "x again", now).is_empty());
        assert_eq!(r.held(), 1);
        assert_eq!(seqs(r.offer(6, "y", now)), vec![6, 7]);
    }

    #[test]
    fn a_full_buffer_asks_for_the_hole_at_once() {
        let now = Instant::now();
        let mut r = Reorder::new(0, 3);
        for s in 2..=4 {
            r.offer(s, "m", now);
        }
        assert_eq!(r.due_gap(now, Duration::from_secs(60)), Some((1, 1)));
    }

    #[test]
    fn skipping_an_empty_range_releases_what_follows() {
        let now = Instant::now();
        let mut r = Reorder::new(0, 100);
        r.offer(4, "d", now);
        assert_eq!(seqs(r.skip_to(3)), vec![4]);
        assert_eq!(r.released(), 4);
    }

    #[test]
    fn behind_names_the_range_the_database_has_and_the_buffer_lacks() {
        let now = Instant::now();
        let mut r: Reorder<&str> = Reorder::new(4, 100);
        assert_eq!(r.behind(4), None);
        assert_eq!(r.behind(9), Some((5, 9)));
        r.offer(8, "h", now);
        assert_eq!(r.behind(9), Some((5, 7)));
    }

    #[test]
    fn after_a_release_a_new_hole_gets_a_fresh_deadline() {
        let now = Instant::now();
        let mut r = Reorder::new(0, 100);
        r.offer(2, "b", now);
        let t1 = now + Duration::from_millis(100);
        r.offer(4, "d", t1);
        // 1 arrives late: 1 and 2 go, 3 is a new hole opened at t2.
        let t2 = now + Duration::from_millis(200);
        assert_eq!(seqs(r.offer(1, "a", t2)), vec![1, 2]);
        assert_eq!(
            r.due_gap(t2 + Duration::from_millis(40), Duration::from_millis(50)),
            None
        );
        assert_eq!(
            r.due_gap(t2 + Duration::from_millis(50), Duration::from_millis(50)),
            Some((3, 3))
        );
    }
}
