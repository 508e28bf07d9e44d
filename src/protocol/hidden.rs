//! The users a session's user must not see in shared rooms (those who blocked them), and
//! the filter that takes them out of `room_presence` and `typing` frames on the way to that
//! session. Broadcasts stay encoded once: only a session with blockers looks into these two
//! frame types, and only re-encodes a frame that names one of them.

use std::collections::HashSet;

use serde_json::Value;

use super::EncodedFrame;
use crate::domain::UserId;

/// Boxed when present: most sessions have no blockers and pay one pointer (8 bytes) instead
/// of an empty set's 48 in every session.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
pub struct HiddenUsers(Option<Box<HashSet<UserId>>>);

impl HiddenUsers {
    pub fn new(users: Vec<UserId>) -> Self {
        if users.is_empty() {
            return HiddenUsers(None);
        }
        HiddenUsers(Some(Box::new(users.into_iter().collect())))
    }

    pub fn set(&mut self, user: UserId, hidden: bool) {
        if hidden {
            self.0.get_or_insert_with(Default::default).insert(user);
        } else if let Some(set) = &mut self.0 {
            set.remove(&user);
            if set.is_empty() {
                self.0 = None;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// `frame` as this session may see it: `None` when nothing is left (a `typing` of a
    /// hidden user, a `room_presence` naming only hidden users).
    pub fn filter(&self, frame: EncodedFrame) -> Option<EncodedFrame> {
        let Some(hidden) = &self.0 else {
            return Some(frame);
        };
        let name = frame.name();
        if name != "room_presence" && name != "typing" {
            return Some(frame);
        }
        let Some(data) = frame.data() else {
            return Some(frame);
        };
        // Cheap test first: no hidden user is named in the frame.
        let named = |u: &UserId| data.contains(&format!("\"user\":\"{}\"", u.as_str()));
        if !hidden.iter().any(named) {
            return Some(frame);
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            return Some(frame);
        };
        let is_hidden = |p: &Value| {
            p["user"]
                .as_str()
                .is_some_and(|u| hidden.iter().any(|h| h.as_str() == u))
        };
        if name == "typing" {
            return (!is_hidden(&v)).then_some(frame);
        }
        for list in ["joins", "leaves"] {
            if let Some(a) = v.get_mut(list).and_then(Value::as_array_mut) {
                a.retain(|p| !is_hidden(p));
            }
        }
        let empty = |k: &str| v[k].as_array().is_none_or(|a| a.is_empty());
        if empty("joins") && empty("leaves") {
            return None;
        }
        EncodedFrame::from_data(name, &v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str) -> UserId {
        UserId::parse(u).unwrap()
    }

    #[test]
    fn only_frames_naming_a_hidden_user_change() {
        let h = HiddenUsers::new(vec![user("mallory")]);
        let diff = |joins: &str| {
            EncodedFrame::from_data(
                "room_presence",
                &format!(r#"{{"joins":[{joins}],"leaves":[],"room":"public:a"}}"#),
            )
            .unwrap()
        };
        let alice = r#"{"user":"alice","status":"online"}"#;
        let mallory = r#"{"user":"mallory","status":"online"}"#;
        let f = diff(alice);
        assert_eq!(h.filter(f.clone()), Some(f));
        let both = h.filter(diff(&format!("{alice},{mallory}"))).unwrap();
        let v: Value = serde_json::from_str(both.data().unwrap()).unwrap();
        assert_eq!(v["joins"].as_array().unwrap().len(), 1);
        assert_eq!(v["joins"][0]["user"], "alice");
        assert_eq!(h.filter(diff(mallory)), None);
        let typing = |u: &str| {
            EncodedFrame::from_data(
                "typing",
                &format!(r#"{{"room":"public:a","state":"start","user":"{u}"}}"#),
            )
            .unwrap()
        };
        assert_eq!(h.filter(typing("mallory")), None);
        assert!(h.filter(typing("alice")).is_some());
        // Other frames pass untouched, and so does everything once unblocked.
        let m = EncodedFrame::from_data("message", r#"{"from":"mallory"}"#).unwrap();
        assert_eq!(h.filter(m.clone()), Some(m));
        let mut h = h;
        h.set(user("mallory"), false);
        assert!(h.is_empty());
        assert_eq!(h.filter(typing("mallory")), Some(typing("mallory")));
    }
}
