//! Notification rules: the validated notification a backend sends, the user's preferences
//! (quiet hours in an IANA time zone, do-not-disturb, mutes, minimum priority) and the
//! decisions made from them, plus `@mention` parsing. Pure functions, unit-tested here.

use std::collections::HashSet;

use chrono::{NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{InvalidInput, Millis, Priority, RoomId, UserId};

/// Built-in types; any other non-empty `[a-z0-9_.-]` name is an app-defined type.
pub const BUILTIN_TYPES: [&str; 7] = [
    "message",
    "mention",
    "assignment",
    "deadline",
    "achievement",
    "alert",
    "request_accepted",
];

/// One button of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationAction {
    pub id: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A notification as a source asks for it (before it is stored for each recipient).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationSpec {
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub image_url: Option<String>,
    pub actions: Vec<NotificationAction>,
    pub data: Value,
    pub priority: Priority,
    pub expires_at: Option<Millis>,
}

fn invalid(m: impl Into<String>) -> InvalidInput {
    InvalidInput(m.into())
}

impl NotificationSpec {
    /// Checks lengths and shapes.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let t = &self.notification_type;
        if t.is_empty()
            || t.len() > 64
            || !t.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            })
        {
            return Err(invalid(
                "notification_type must be 1..=64 characters of [a-z0-9_.-]",
            ));
        }
        if self.title.trim().is_empty() || self.title.len() > 256 {
            return Err(invalid("title must be 1..=256 bytes"));
        }
        if self.message.len() > 4096 {
            return Err(invalid("message must be at most 4096 bytes"));
        }
        if self.actions.len() > 8
            || self
                .actions
                .iter()
                .any(|a| a.id.is_empty() || a.label.is_empty())
        {
            return Err(invalid(
                "at most 8 actions, each with a non-empty id and label",
            ));
        }
        if !self.data.is_object() && !self.data.is_null() {
            return Err(invalid("data must be a JSON object"));
        }
        if self.data.to_string().len() > 16 * 1024 {
            return Err(invalid("data must be at most 16 KiB"));
        }
        Ok(())
    }
}

/// Where a notification comes from, for mutes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationSource {
    pub user: Option<UserId>,
    pub room: Option<RoomId>,
}

/// Quiet hours: local `start`..`end` ("HH:MM") in `time_zone`; a window may cross midnight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
    pub time_zone: String,
}

/// A user's notification preferences (`GET`/`PUT /v1/notifications/preferences`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Do not disturb until this RFC 3339 time.
    #[serde(default)]
    pub dnd_until: Option<String>,
    #[serde(default)]
    pub muted_users: Vec<String>,
    #[serde(default)]
    pub muted_rooms: Vec<String>,
    #[serde(default)]
    pub muted_types: Vec<String>,
    /// Notifications below this priority are not created.
    #[serde(default = "lowest")]
    pub min_priority: Priority,
}

fn lowest() -> Priority {
    Priority::Low
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            quiet_hours: None,
            dnd_until: None,
            muted_users: Vec::new(),
            muted_rooms: Vec::new(),
            muted_types: Vec::new(),
            min_priority: Priority::Low,
        }
    }
}

fn parse_hhmm(s: &str) -> Result<NaiveTime, InvalidInput> {
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| invalid(format!("{s:?} is not a HH:MM time")))
}

impl Preferences {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(q) = &self.quiet_hours {
            parse_hhmm(&q.start)?;
            parse_hhmm(&q.end)?;
            q.time_zone
                .parse::<chrono_tz::Tz>()
                .map_err(|_| invalid(format!("{:?} is not an IANA time zone", q.time_zone)))?;
        }
        if let Some(d) = &self.dnd_until {
            chrono::DateTime::parse_from_rfc3339(d)
                .map_err(|_| invalid("dnd_until must be an RFC 3339 time"))?;
        }
        let lists = self.muted_users.len() + self.muted_rooms.len() + self.muted_types.len();
        if lists > 10_000 {
            return Err(invalid("too many mutes"));
        }
        Ok(())
    }

    /// Muted sources and types, and priorities below the minimum, create nothing.
    pub fn mutes(&self, spec: &NotificationSpec, source: &NotificationSource) -> bool {
        spec.priority < self.min_priority
            || self.muted_types.contains(&spec.notification_type)
            || source
                .user
                .as_ref()
                .is_some_and(|u| self.muted_users.iter().any(|m| m == u.as_str()))
            || source
                .room
                .as_ref()
                .is_some_and(|r| self.muted_rooms.iter().any(|m| m == r.as_str()))
    }

    /// Whether `now` lies in quiet hours or do-not-disturb (stored and counted, not pushed).
    pub fn quiet_at(&self, now: Millis) -> bool {
        if let Some(d) = self
            .dnd_until
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        {
            if now < d.timestamp_millis() {
                return true;
            }
        }
        let Some(q) = &self.quiet_hours else {
            return false;
        };
        let (Ok(start), Ok(end), Ok(tz)) = (
            parse_hhmm(&q.start),
            parse_hhmm(&q.end),
            q.time_zone.parse::<chrono_tz::Tz>(),
        ) else {
            return false;
        };
        let Some(utc) = Utc.timestamp_millis_opt(now).single() else {
            return false;
        };
        let local = utc.with_timezone(&tz).time();
        if start <= end {
            start <= local && local < end
        } else {
            local >= start || local < end
        }
    }

    /// Whether a notification of `priority` is held at `now` (urgent ones never are).
    pub fn holds(&self, priority: Priority, now: Millis) -> bool {
        priority != Priority::Urgent && self.quiet_at(now)
    }
}

/// The users `@mentioned` in a text (`@` followed by a user id), without duplicates, in
/// order of first mention, at most `max` of them.
///
/// One pass over the text with a set for the duplicates: a 64 KiB text can hold ~13,000
/// mentions, and a `Vec::contains` per mention would cost ~10^8 comparisons on the room's
/// thread. Scanning stops at the `max`-th distinct user, so a message never costs more than
/// `max` notifications whatever it holds.
pub fn mentions(text: &str, max: usize) -> Vec<UserId> {
    let mut out: Vec<UserId> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && out.len() < max {
        if bytes[i] == b'@' && (i == 0 || !(bytes[i - 1] as char).is_ascii_alphanumeric()) {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'_' | b'-' | b'.'))
            {
                end += 1;
            }
            // A trailing dot ends a sentence, not an id.
            while end > start && bytes[end - 1] == b'.' {
                end -= 1;
            }
            let id = &text[start..end];
            if !seen.contains(id) {
                if let Ok(u) = UserId::parse(id) {
                    seen.insert(id);
                    out.push(u);
                }
            }
            i = end.max(start);
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Millis {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    fn quiet(start: &str, end: &str, tz: &str) -> Preferences {
        Preferences {
            quiet_hours: Some(QuietHours {
                start: start.into(),
                end: end.into(),
                time_zone: tz.into(),
            }),
            ..Preferences::default()
        }
    }

    #[test]
    fn quiet_hours_cross_midnight_in_the_users_time_zone() {
        let p = quiet("22:00", "07:00", "Europe/Paris");
        // 23:00 in Paris (UTC+1 in November) is 22:00 UTC.
        assert!(p.quiet_at(at("2026-11-22T22:00:00Z")));
        assert!(p.quiet_at(at("2026-11-23T05:59:00Z")));
        assert!(
            !p.quiet_at(at("2026-11-23T06:00:00Z")),
            "07:00 local ends the window"
        );
        assert!(
            !p.quiet_at(at("2026-11-22T20:59:00Z")),
            "21:59 local is before it"
        );
        assert!(p.holds(Priority::Normal, at("2026-11-22T22:00:00Z")));
        assert!(!p.holds(Priority::Urgent, at("2026-11-22T22:00:00Z")));
    }

    #[test]
    fn daytime_windows_and_dst_use_the_zone_rules() {
        let p = quiet("12:00", "13:00", "America/New_York");
        assert!(p.quiet_at(at("2026-07-01T16:30:00Z")), "EDT is UTC-4");
        assert!(p.quiet_at(at("2026-12-01T17:30:00Z")), "EST is UTC-5");
        assert!(!p.quiet_at(at("2026-12-01T16:30:00Z")));
    }

    #[test]
    fn dnd_holds_until_its_end() {
        let p = Preferences {
            dnd_until: Some("2026-11-22T12:00:00Z".into()),
            ..Preferences::default()
        };
        assert!(p.quiet_at(at("2026-11-22T11:59:00Z")));
        assert!(!p.quiet_at(at("2026-11-22T12:00:00Z")));
    }

    #[test]
    fn mutes_cover_users_rooms_types_and_priority() {
        let spec = NotificationSpec {
            notification_type: "mention".into(),
            title: "t".into(),
            message: "m".into(),
            image_url: None,
            actions: vec![],
            data: Value::Null,
            priority: Priority::Normal,
            expires_at: None,
        };
        let src = NotificationSource {
            user: UserId::parse("bob").ok(),
            room: RoomId::parse("public:x").ok(),
        };
        assert!(!Preferences::default().mutes(&spec, &src));
        assert!(Preferences {
            muted_users: vec!["bob".into()],
            ..Default::default()
        }
        .mutes(&spec, &src));
        assert!(Preferences {
            muted_rooms: vec!["public:x".into()],
            ..Default::default()
        }
        .mutes(&spec, &src));
        assert!(Preferences {
            muted_types: vec!["mention".into()],
            ..Default::default()
        }
        .mutes(&spec, &src));
        assert!(Preferences {
            min_priority: Priority::High,
            ..Default::default()
        }
        .mutes(&spec, &src));
    }

    #[test]
    fn invalid_preferences_are_refused() {
        assert!(quiet("25:00", "07:00", "UTC").validate().is_err());
        assert!(quiet("22:00", "07:00", "Mars/Olympus").validate().is_err());
        assert!(quiet("22:00", "07:00", "Asia/Tokyo").validate().is_ok());
    }

    #[test]
    fn mentions_are_found_once_each() {
        let got: Vec<String> = mentions("hi @bob and @carol.x, @bob again; mail a@b.c. @dave.", 50)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(got, ["bob", "carol.x", "dave"]);
    }

    #[test]
    fn thirteen_thousand_mentions_are_capped_at_the_setting() {
        // Arrange: a 64 KiB text of ~13,000 distinct mentions, and one of 13,000 repeats.
        let distinct: String = (0..13_000).map(|i| format!("@u{i} ")).collect();
        let repeated = "@x ".repeat(13_000);
        // Act
        let capped = mentions(&distinct, 50);
        let once = mentions(&repeated, 50);
        // Assert: the first 50 distinct users in order, and a repeat counts once.
        let want: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let got: Vec<String> = capped.iter().map(|u| u.to_string()).collect();
        assert_eq!(got, want);
        assert_eq!(once.len(), 1);
        assert_eq!(once[0].as_str(), "x");
    }

    #[test]
    fn duplicates_do_not_use_up_the_mention_cap() {
        let text = "@a @a @a @b @a @b @c @d";
        let got: Vec<String> = mentions(text, 3).iter().map(|u| u.to_string()).collect();
        assert_eq!(got, ["a", "b", "c"]);
    }
}
