//! Tests of client-frame parsing and of the `since` resume point.

use super::*;
use serde_json::json;

const L: ParseLimits = ParseLimits {
    max_text_bytes: 1000,
    max_json_depth: 32,
    max_event_bytes: 100,
    max_emoji_bytes: 32,
};

#[test]
fn deep_frames_are_refused_before_parsing() {
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    assert_eq!(
        parse_client_frame(&deep, L).unwrap_err().code,
        ErrorCode::TooLarge
    );
    let nested_in_string = format!("{{\"type\":\"ping\",\"ref\":\"{}\"}}", "[".repeat(40));
    assert!(parse_client_frame(&nested_in_string, L).is_ok());
}

#[test]
fn garbage_and_unknown_frames_are_classified() {
    assert_eq!(
        parse_client_frame("nope", L).unwrap_err().code,
        ErrorCode::InvalidJson
    );
    assert_eq!(
        parse_client_frame("[1]", L).unwrap_err().code,
        ErrorCode::InvalidJson
    );
    let e = parse_client_frame(r#"{"type":"fly","ref":"a"}"#, L).unwrap_err();
    assert_eq!(
        (e.code, e.reference),
        (ErrorCode::UnknownType, Some(json!("a")))
    );
    let e = parse_client_frame(r#"{"type":"join","ref":"b","data":{}}"#, L).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidData);
    let e = parse_client_frame(
        r#"{"type":"send","data":{"room":"public:a","kind":"text","body":{"text":""}}}"#,
        L,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidData);
}

#[test]
fn valid_frames_parse() {
    let f = parse_client_frame(r#"{"type":"ping"}"#, L).unwrap();
    assert!(matches!(f.request, ClientRequest::Ping));
    let f = parse_client_frame(
        r#"{"type":"send","ref":1,"data":{"to":"bob","kind":"location","body":{"lat":1,"lng":2},"priority":"high"}}"#,
        L,
    )
    .unwrap();
    match f.request {
        ClientRequest::Send(s) => {
            assert!(matches!(s.target, SendTarget::User(_)));
            assert_eq!(s.priority, Priority::High);
        }
        other => panic!("unexpected {other:?}"),
    }
    let f = parse_client_frame(
        r#"{"type":"history","data":{"room":"public:a","limit":1000}}"#,
        L,
    )
    .unwrap();
    assert!(matches!(
        f.request,
        ClientRequest::History { limit: 100, .. }
    ));
    // `members` pages are clamped to 1000 users; a cursor must be a user id.
    let f = parse_client_frame(
        r#"{"type":"members","data":{"room":"public:a","after":"bob","limit":50000}}"#,
        L,
    )
    .unwrap();
    match f.request {
        ClientRequest::Members { after, limit, .. } => {
            assert_eq!(
                (after.as_ref().map(|u| u.as_str()), limit),
                (Some("bob"), 1000)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(parse_client_frame(
        r#"{"type":"members","data":{"room":"public:a","after":"not a user!"}}"#,
        L
    )
    .is_err());
}

#[test]
fn since_pairs_split_at_the_last_colon_and_are_bounded() {
    let since = super::parse_since("public:a:12,direct:al:bo:3", 10).unwrap();
    assert_eq!(since[&RoomId::parse("public:a").unwrap()], 12);
    assert_eq!(since[&RoomId::parse("direct:al:bo").unwrap()], 3);
    assert!(super::parse_since("public:a", 10).is_err());
    assert!(super::parse_since("public:a:-1", 10).is_err());
    assert!(super::parse_since("public:a:1,public:b:2", 1).is_err());
}

#[test]
fn a_bad_status_or_custom_message_is_refused_with_its_text() {
    let presence = |data: serde_json::Value| {
        let e = parse_client_frame(&json!({"type": "presence", "data": data}).to_string(), L)
            .unwrap_err();
        (e.code, e.message)
    };
    assert_eq!(
        presence(json!({"status": "offline"})),
        (
            ErrorCode::InvalidData,
            r#"status must be online, away, busy or invisible, not "offline""#.to_owned()
        )
    );
    assert_eq!(
        presence(json!({"status": "busy", "custom_message": "x".repeat(257)})),
        (
            ErrorCode::InvalidData,
            "custom_message is longer than 256 bytes".to_owned()
        )
    );
    let ok = parse_client_frame(
        &json!({"type": "presence", "data": {"status": "busy", "custom_message": "x".repeat(256)}})
            .to_string(),
        L,
    )
    .unwrap();
    assert!(matches!(
        ok.request,
        ClientRequest::Presence { status: ChosenStatus::Busy, custom_message: Some(ref m), .. }
            if m.as_str().len() == 256
    ));
}

#[test]
fn custom_events_need_a_good_name_a_room_and_small_data() {
    let event = |data: serde_json::Value| {
        parse_client_frame(&json!({"type": "event", "data": data}).to_string(), L)
            .map(|f| f.request)
            .map_err(|e| (e.code, e.message))
    };
    assert!(matches!(
        event(json!({"room": "public:a", "name": "cursor.moved", "data": {"x": 1}})),
        Ok(ClientRequest::Event { ref name, .. }) if name.as_str() == "cursor.moved"
    ));
    for bad in [
        "",
        "has space",
        "quote\"",
        "message",
        "new_message",
        &"x".repeat(65),
    ] {
        let e = event(json!({"room": "public:a", "name": bad})).unwrap_err();
        assert_eq!(e.0, ErrorCode::InvalidData, "{bad:?}: {}", e.1);
    }
    let e = event(json!({"room": "public:a", "name": "big", "data": "x".repeat(200)})).unwrap_err();
    assert_eq!(
        e,
        (
            ErrorCode::TooLarge,
            "event data is larger than 100 bytes".to_owned()
        )
    );
    assert_eq!(
        event(json!({"name": "x"})).unwrap_err().0,
        ErrorCode::InvalidData
    );
    // On Socket.IO the event's own name, and the room inside the payload.
    let r = super::parse_socketio_custom_event("cursor", json!({"room": "public:a", "x": 1}), L);
    assert!(matches!(r, Ok(ClientRequest::Event { ref data, .. }) if data == &json!({"x": 1})));
    let r = super::parse_socketio_custom_event("cursor", json!({"x": 1}), L).unwrap_err();
    assert_eq!(r.0, ErrorCode::InvalidData);
    assert!(r.1.contains("needs `room`"), "{}", r.1);
}
