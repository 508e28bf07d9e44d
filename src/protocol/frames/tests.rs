//! Tests of the server frames: the exact JSON of every frame on both wires, refs, errors.
use super::*;
use crate::socketio::{frame_event, frame_event_with_offset};
use serde_json::json;

fn room(s: &str) -> RoomId {
    RoomId::parse(s).unwrap()
}
fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// The native text, and the Socket.IO event carrying the same name and data.
fn wires(f: &ServerFrame) -> (String, String) {
    let e = f.encode();
    assert_eq!(e.name(), f.name());
    (e.native().to_string(), frame_event(&e))
}

#[test]
fn event_frames_are_exactly_as_documented_on_both_wires() {
    let (r, u) = (room("public:lobby"), user("bob"));
    let (native, sio) = wires(&ServerFrame::Typing(Typing {
        room: &r,
        state: TypingState::Start,
        user: &u,
    }));
    assert_eq!(
        native,
        r#"{"type":"typing","data":{"room":"public:lobby","state":"start","user":"bob"}}"#
    );
    assert_eq!(
        sio,
        r#"42["typing",{"room":"public:lobby","state":"start","user":"bob"}]"#
    );

    let (native, sio) = wires(&ServerFrame::ReplayTruncated(ReplayTruncated {
        missing_from: 1,
        missing_to: 880,
        room: &r,
    }));
    assert_eq!(
        native,
        r#"{"type":"replay_truncated","data":{"missing_from":1,"missing_to":880,"room":"public:lobby"}}"#
    );
    assert_eq!(
        sio,
        r#"42["replay_truncated",{"missing_from":1,"missing_to":880,"room":"public:lobby"}]"#
    );

    let (native, sio) = wires(&ServerFrame::UnreadCount(UnreadCount { unread_count: 1 }));
    assert_eq!(
        native,
        r#"{"type":"unread_count","data":{"unread_count":1}}"#
    );
    assert_eq!(sio, r#"42["unread_count",{"unread_count":1}]"#);

    let (native, _) = wires(&ServerFrame::RoomUnread(RoomUnread {
        room: &room("public:a"),
        unread: 3,
        unread_total: 4,
    }));
    assert_eq!(
        native,
        r#"{"type":"room_unread","data":{"room":"public:a","unread":3,"unread_total":4}}"#
    );

    let view = PresenceView::offline("alice", None);
    let (native, _) = wires(&ServerFrame::Presence(&view));
    assert_eq!(
        native,
        r#"{"type":"presence","data":{"user":"alice","status":"offline","custom_message":null,"metadata":null,"last_seen":null,"devices":0}}"#
    );
    let (native, _) = wires(&ServerFrame::RoomPresence(RoomPresence {
        joins: &[],
        leaves: std::slice::from_ref(&view),
        room: &r,
    }));
    assert_eq!(
        serde_json::from_str::<Value>(&native).unwrap(),
        json!({"type":"room_presence","data":{"joins":[],"leaves":[serde_json::to_value(&view).unwrap()],"room":"public:lobby"}})
    );
}

#[test]
fn the_data_of_an_encoded_frame_round_trips_with_its_name() {
    let (r, u) = (room("public:a"), user("carol"));
    let frame = ServerFrame::Receipt(Receipt {
        at: "2026-11-22T20:05:07.526Z".into(),
        room: &r,
        seq: 4,
        status: "read",
        user: &u,
    });
    let e = frame.encode();
    let native: Value = serde_json::from_str(e.native()).unwrap();
    let data: Value = serde_json::from_str(e.data().unwrap()).unwrap();
    assert_eq!(native["type"], e.name());
    assert_eq!(native["data"], data);
    assert_eq!(data["user"], "carol");
    let sio: Value = serde_json::from_str(&frame_event(&e)[2..]).unwrap();
    assert_eq!(sio, json!([e.name(), data]));
    assert_eq!(
        frame_event_with_offset(&e, 7),
        format!("42[\"receipt\",{},\"7\"]", e.data().unwrap())
    );
    // A clone shares the bytes.
    let c = e.clone();
    assert_eq!(c.native().as_ptr(), e.native().as_ptr());
}

#[test]
fn ack_and_pong_carry_the_ref() {
    let r = json!("r1");
    let data = json!({"ok": true});
    let e = ServerFrame::Ack {
        reference: Some(&r),
        data: &data,
    }
    .encode();
    assert_eq!(
        e.native().to_string(),
        r#"{"type":"ack","ref":"r1","data":{"ok":true}}"#
    );
    assert_eq!(e.data(), Some(r#"{"ok":true}"#));
    let pong = ServerFrame::Pong {
        reference: Some(&json!(7)),
    }
    .encode();
    assert_eq!(pong.native().to_string(), r#"{"type":"pong","ref":7}"#);
    assert_eq!(frame_event(&pong), r#"42["pong"]"#);
}

#[test]
fn error_frames_have_code_and_error_at_top_level() {
    let r = json!("r1");
    let e = ServerFrame::error(Some(&r), ErrorCode::Forbidden, "no").encode();
    assert_eq!(
        e.native().to_string(),
        r#"{"type":"error","ref":"r1","code":"forbidden","error":"no"}"#
    );
    assert_eq!(
        frame_event(&e),
        r#"42["error",{"code":"forbidden","error":"no"}]"#
    );
    let plain = ServerFrame::error(None, ErrorCode::Forbidden, "no").encode();
    assert_eq!(
        plain.native().to_string(),
        r#"{"type":"error","code":"forbidden","error":"no"}"#
    );
}

#[test]
fn room_error_frames_name_the_room_and_have_no_ref() {
    let r = room("public:lobby");
    let f = ServerFrame::room_error(&r, ErrorCode::Unavailable, "gone").encode();
    assert_eq!(
        f.native().to_string(),
        r#"{"type":"error","code":"unavailable","error":"gone","room":"public:lobby"}"#
    );
}

#[test]
fn overload_error_frames_carry_retry_after_ms_at_top_level() {
    let e = EngineError::Overloaded {
        retry_after_ms: 250,
    };
    let r = json!("r1");
    let f = ServerFrame::engine_error(Some(&r), &e).encode();
    let f: Value = serde_json::from_str(f.native()).unwrap();
    assert_eq!(f["type"], "error");
    assert_eq!(f["ref"], "r1");
    assert_eq!(f["code"], "unavailable");
    assert_eq!(f["retry_after_ms"], 250);
    assert!(f["error"].as_str().is_some_and(|m| m.contains("250 ms")));
    let plain = ServerFrame::engine_error(None, &EngineError::Forbidden("no".into())).encode();
    assert_eq!(
        plain.native().to_string(),
        r#"{"type":"error","code":"forbidden","error":"no"}"#
    );
}
