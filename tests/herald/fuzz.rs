//! Property-based checks of frame decoding and validation: no input makes the parser panic,
//! every refusal carries a stable code, and valid frames always parse. Runs on stable; set
//! `PROPTEST_CASES` (e.g. 100000) to run longer.

use herald::error::ErrorCode;
use herald::protocol::{json_depth_exceeds, parse_client_frame, ClientRequest, ParseLimits};
use proptest::prelude::*;
use serde_json::{json, Value};

const LIMITS: ParseLimits = ParseLimits {
    max_event_bytes: 4096,
    max_emoji_bytes: 32,
    max_text_bytes: 1024,
    max_json_depth: 32,
};

const CODES: [ErrorCode; 4] = [
    ErrorCode::InvalidJson,
    ErrorCode::UnknownType,
    ErrorCode::InvalidData,
    ErrorCode::TooLarge,
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn frame_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("join".to_owned()),
        Just("leave".to_owned()),
        Just("send".to_owned()),
        Just("typing".to_owned()),
        Just("receipt".to_owned()),
        Just("presence".to_owned()),
        Just("history".to_owned()),
        Just("watch".to_owned()),
        Just("auth".to_owned()),
        Just("ping".to_owned()),
        "[a-z]{0,10}",
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in ".{0,512}") {
        if let Err(e) = parse_client_frame(&s, LIMITS) {
            prop_assert!(CODES.contains(&e.code));
        }
    }

    #[test]
    fn arbitrary_envelopes_are_accepted_or_refused_with_a_code(kind in frame_type(), data in json_value(), r in json_value()) {
        let frame = json!({"type": kind, "ref": r, "data": data}).to_string();
        match parse_client_frame(&frame, LIMITS) {
            // Floats may round-trip with a last-digit difference; the ref is echoed as parsed.
            Ok(f) => prop_assert_eq!(f.reference.is_some(), !r.is_null()),
            Err(e) => prop_assert!(CODES.contains(&e.code), "{:?}", e),
        }
    }

    #[test]
    fn valid_sends_always_parse(room in "[a-z0-9_.-]{1,20}", text in "[^\\u{0}]{1,200}", cmid in "[a-zA-Z0-9-]{1,40}") {
        prop_assume!(!text.trim().is_empty());
        let frame = json!({"type": "send", "ref": 1, "data": {"room": format!("public:{room}"), "kind": "text", "body": {"text": text}, "client_msg_id": cmid}});
        let parsed = parse_client_frame(&frame.to_string(), LIMITS);
        prop_assert!(matches!(parsed, Ok(ref f) if matches!(f.request, ClientRequest::Send(_))), "{:?}", parsed);
    }

    #[test]
    fn depth_is_measured_outside_strings(depth in 0usize..80, inside in 0usize..80) {
        let s = format!("{}\"{}\"{}", "[".repeat(depth), "[".repeat(inside), "]".repeat(depth));
        prop_assert_eq!(json_depth_exceeds(&s, 32), depth > 32);
    }
}
