//! Unit tests of `RoomStreams`: live, catch-up and joining modes, holds, rewinds and truncation.
use super::*;
use crate::domain::{MessageKind, Priority, UserId};

fn room() -> RoomId {
    RoomId::parse("public:t").unwrap()
}

fn live_frame(seq: i64) -> (EncodedFrame, Arc<FrameMeta>) {
    match message_emit(&room(), &stored(seq)) {
        Emit::Message(f, m) => (f, m),
        other => panic!("unexpected {other:?}"),
    }
}

fn stored(seq: i64) -> StoredMessage {
    StoredMessage {
        id: format!("id{seq}"),
        room: room(),
        seq,
        from: UserId::parse("u").unwrap(),
        kind: MessageKind::Text,
        body: "{}".into(),
        priority: Priority::Normal,
        client_msg_id: None,
        created_at: 0,
        edited_at: None,
        deleted_at: None,
        reactions: Vec::new(),
    }
}

/// The seqs (and markers as negative pairs) written, in order.
fn seqs(out: &[Emit]) -> Vec<String> {
    out.iter()
        .map(|e| match e {
            Emit::Message(_, m) => match &**m {
                FrameMeta::Message { seq, .. } => seq.to_string(),
                _ => "?".into(),
            },
            Emit::Truncated { from, to, .. } => format!("cut{from}-{to}"),
        })
        .collect()
}

fn push_live(s: &mut RoomStreams, seq: i64, out: &mut Vec<Emit>) {
    let (f, m) = live_frame(seq);
    s.live(&room(), seq, &f, &m, out);
}

#[test]
fn replay_then_held_live_frames_merge_without_gap_or_duplicate() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    // Subscribed at seq 5, the client had 2: 3..=5 come from the store.
    s.begin(&room(), 2, 5, &mut out);
    assert!(out.is_empty());
    // Live frames arrive during the replay, one overlapping it.
    push_live(&mut s, 5, &mut out); // ≤ target, held then dropped as already replayed
    push_live(&mut s, 6, &mut out);
    push_live(&mut s, 7, &mut out);
    assert!(out.is_empty(), "held while catching up");
    let f = s.next_fetch().unwrap();
    assert_eq!(f.after, 2);
    // The page was read after the subscription: it may hold 6 too.
    s.page(
        &room(),
        &[stored(3), stored(4), stored(5), stored(6)],
        false,
        &mut out,
    );
    assert_eq!(seqs(&out), ["3", "4", "5", "6", "7"]);
    assert!(s.is_live(&room()));
    out.clear();
    push_live(&mut s, 7, &mut out);
    push_live(&mut s, 8, &mut out);
    assert_eq!(seqs(&out), ["8"], "duplicate dropped, next written");
}

#[test]
fn the_fast_path_takes_only_the_next_seq_of_a_live_room() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    assert_eq!(
        s.advance(&room(), 5),
        Advance::Next,
        "a new room starts here"
    );
    assert_eq!(s.advance(&room(), 6), Advance::Next);
    assert_eq!(s.advance(&room(), 6), Advance::Repeat);
    assert_eq!(
        s.advance(&room(), 8),
        Advance::Other,
        "a jump goes the slow way"
    );
    push_live(&mut s, 8, &mut out);
    assert_eq!(s.advance(&room(), 9), Advance::Other, "catching up: held");
    assert_eq!(s.position(&room()), Some(6));
}

#[test]
fn a_live_jump_is_fetched_from_the_store() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    s.begin(&room(), 10, 10, &mut out);
    assert!(s.is_live(&room()));
    push_live(&mut s, 11, &mut out);
    push_live(&mut s, 14, &mut out);
    assert_eq!(seqs(&out), ["11"]);
    let f = s.next_fetch().unwrap();
    assert_eq!(f.after, 11);
    s.page(
        &room(),
        &[stored(12), stored(13), stored(14)],
        false,
        &mut out,
    );
    assert_eq!(seqs(&out), ["11", "12", "13", "14"]);
    assert!(s.is_live(&room()));
}

#[test]
fn frames_lost_to_a_full_outbox_are_caught_up() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    s.begin(&room(), 0, 0, &mut out);
    push_live(&mut s, 1, &mut out);
    // 2 and 3 were dropped; nothing else comes live.
    s.lost(&room(), 3);
    let f = s.next_fetch().unwrap();
    assert_eq!(f.after, 1);
    s.page(&room(), &[stored(2), stored(3)], false, &mut out);
    assert_eq!(seqs(&out), ["1", "2", "3"]);
    assert!(s.is_live(&room()));
    assert!(s.next_fetch().is_none());
}

#[test]
fn a_backlog_past_the_maximum_is_marked_and_continues_after_the_marker() {
    let mut s = RoomStreams::new(1 << 20, 3);
    let mut out = Vec::new();
    s.begin(&room(), 0, 10, &mut out);
    let f = s.next_fetch().unwrap();
    assert_eq!(f.after, 7);
    s.page(
        &room(),
        &[stored(8), stored(9), stored(10)],
        false,
        &mut out,
    );
    assert_eq!(seqs(&out), ["cut1-7", "8", "9", "10"]);
}

#[test]
fn falling_behind_during_the_connection_is_caught_up_in_full() {
    let mut s = RoomStreams::new(1 << 20, 3);
    let mut out = Vec::new();
    s.begin(&room(), 0, 0, &mut out);
    s.lost(&room(), 10);
    assert_eq!(s.next_fetch().unwrap().after, 0);
    let page: Vec<StoredMessage> = (1..=10).map(stored).collect();
    s.page(&room(), &page, false, &mut out);
    assert_eq!(
        seqs(&out),
        (1..=10).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

#[test]
fn pages_continue_until_the_store_is_exhausted() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    s.begin(&room(), 0, 4, &mut out);
    s.next_fetch().unwrap();
    s.page(&room(), &[stored(1), stored(2)], true, &mut out);
    let f = s.next_fetch().unwrap();
    assert_eq!(f.after, 2);
    s.page(&room(), &[stored(3), stored(4)], false, &mut out);
    assert_eq!(seqs(&out), ["1", "2", "3", "4"]);
    assert!(s.is_live(&room()));
}

#[test]
fn a_hole_in_the_store_is_marked() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    s.begin(&room(), 0, 5, &mut out);
    s.next_fetch().unwrap();
    s.page(&room(), &[stored(4), stored(5)], false, &mut out);
    assert_eq!(seqs(&out), ["cut1-3", "4", "5"]);
}

#[test]
fn held_frames_past_the_bound_are_dropped_and_fetched_instead() {
    let mut s = RoomStreams::new(4, 1000); // room for two 2-byte frames
    let mut out = Vec::new();
    s.begin(&room(), 0, 1, &mut out);
    for seq in 2..=9 {
        push_live(&mut s, seq, &mut out);
    }
    assert!(s.held_bytes() <= 4);
    // Whatever was dropped is fetched: the stream reaches 9 in order.
    while let Some(f) = s.next_fetch() {
        let page: Vec<StoredMessage> = ((f.after + 1)..=9).map(stored).collect();
        s.page(&room(), &page, false, &mut out);
    }
    assert_eq!(
        seqs(&out),
        (1..=9).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert!(s.is_live(&room()));
}

#[test]
fn a_page_read_before_the_target_was_raised_does_not_end_the_catch_up() {
    let mut s = RoomStreams::new(4, 1000);
    let mut out = Vec::new();
    s.begin(&room(), 0, 1, &mut out);
    let f = s.next_fetch().unwrap();
    // While that page is read, live frames overflow the held bound (target goes to 7).
    for seq in 2..=7 {
        push_live(&mut s, seq, &mut out);
    }
    // The page was read before 2..=7 were committed: it ends at 1.
    s.page(&room(), &[stored(1)], false, &mut out);
    assert_eq!(f.after, 0);
    let f = s.next_fetch().expect("still catching up, nothing cut");
    let page: Vec<StoredMessage> = ((f.after + 1)..=7).map(stored).collect();
    s.page(&room(), &page, false, &mut out);
    assert_eq!(
        seqs(&out),
        (1..=7).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

#[test]
fn a_frame_the_transport_did_not_take_is_fetched_again_from_before_it() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    s.begin(&room(), 0, 0, &mut out);
    push_live(&mut s, 1, &mut out);
    push_live(&mut s, 2, &mut out);
    // The transport took 1, not 2: the stream goes back to 1 and holds what follows.
    s.unwritten(&room(), 2);
    out.clear();
    push_live(&mut s, 3, &mut out);
    assert!(out.is_empty(), "3 may not follow 1 on the wire");
    let f = s.next_fetch().unwrap();
    assert_eq!(f.after, 1);
    s.page(&room(), &[stored(2), stored(3)], false, &mut out);
    assert_eq!(seqs(&out), ["2", "3"]);
    assert!(s.is_live(&room()));
}

#[test]
fn a_page_read_before_the_stream_was_rewound_is_read_again() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    s.begin(&room(), 0, 4, &mut out);
    s.next_fetch().unwrap();
    s.page(&room(), &[stored(1), stored(2)], true, &mut out);
    let f = s.next_fetch().unwrap();
    assert_eq!(f.after, 2);
    // While the page after 2 is read, the transport refuses 1 (and so 2).
    s.unwritten(&room(), 1);
    out.clear();
    s.page(&room(), &[stored(3), stored(4)], false, &mut out);
    assert_eq!(seqs(&out), Vec::<String>::new(), "no gap, no false marker");
    let f = s.next_fetch().unwrap();
    assert_eq!(f.after, 0);
    let page: Vec<StoredMessage> = (1..=4).map(stored).collect();
    s.page(&room(), &page, false, &mut out);
    assert_eq!(seqs(&out), ["1", "2", "3", "4"]);
    assert!(s.is_live(&room()));
}

#[test]
fn a_join_holds_live_frames_until_it_answers() {
    let mut s = RoomStreams::new(1 << 20, 1000);
    let mut out = Vec::new();
    s.joining(&room());
    push_live(&mut s, 21, &mut out);
    push_live(&mut s, 22, &mut out);
    assert!(out.is_empty());
    // The ack carried missed up to 20; the room was at 21 when subscribed.
    s.begin(&room(), 20, 21, &mut out);
    assert_eq!(
        seqs(&out),
        Vec::<String>::new(),
        "21 must come from the store first"
    );
    s.next_fetch().unwrap();
    s.page(&room(), &[stored(21)], false, &mut out);
    assert_eq!(seqs(&out), ["21", "22"]);
    assert!(s.is_live(&room()));
}
