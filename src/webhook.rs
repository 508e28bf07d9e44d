//! Webhook rules (docs/webhooks.md): the event types, which of them the configured endpoints
//! subscribe to ([`WebhookTopics`], consulted on the write path so that unsubscribed events
//! cost nothing), the events' `data`, the JSON body of a delivery and its signature.
//! Pure functions; the sending is `actors::webhook_sender`.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::config::WebhookSettings;
use crate::db::models::{NewWebhookEvent, StoredMessage, StoredNotification, WebhookEventRow};
use crate::domain::{rfc3339, Millis, Priority, UserId};

/// The event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    MessageUndelivered,
    MessageStored,
    UserOnline,
    UserOffline,
    NotificationCreated,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::MessageUndelivered,
        EventType::MessageStored,
        EventType::UserOnline,
        EventType::UserOffline,
        EventType::NotificationCreated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageUndelivered => "message.undelivered",
            EventType::MessageStored => "message.stored",
            EventType::UserOnline => "user.online",
            EventType::UserOffline => "user.offline",
            EventType::NotificationCreated => "notification.created",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a webhook event type: use {}",
                    EventType::ALL.map(|t| t.as_str()).join(", ")
                )
            })
    }
}

/// What the configured endpoints subscribe to: the write path asks it whether an event is
/// worth an outbox row at all. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct WebhookTopics(Arc<Topics>);

#[derive(Debug, Default)]
struct Topics {
    subscribed: Vec<EventType>,
    undelivered_types: Vec<String>,
    undelivered_min_priority: Priority,
}

impl WebhookTopics {
    pub fn new(s: &WebhookSettings) -> Self {
        let subscribed = EventType::ALL
            .into_iter()
            .filter(|t| s.endpoints.iter().any(|e| e.subscribes(*t)))
            .collect();
        WebhookTopics(Arc::new(Topics {
            subscribed,
            undelivered_types: s.undelivered_types.clone(),
            undelivered_min_priority: s.undelivered_min_priority,
        }))
    }

    /// Whether some endpoint subscribes to `t`.
    pub fn wants(&self, t: EventType) -> bool {
        self.0.subscribed.contains(&t)
    }

    /// Whether a notification of this type and priority that found its user with no live
    /// session is reported as `message.undelivered` (the push-bridge filter).
    pub fn wants_undelivered(&self, notification_type: &str, priority: Priority) -> bool {
        self.wants(EventType::MessageUndelivered)
            && priority >= self.0.undelivered_min_priority
            && (self.0.undelivered_types.is_empty()
                || self
                    .0
                    .undelivered_types
                    .iter()
                    .any(|t| t == notification_type))
    }
}

/// `message.stored`: a new message was committed.
pub fn message_stored(m: &StoredMessage) -> NewWebhookEvent {
    let body: Value = serde_json::from_str(&m.body).unwrap_or(Value::Null);
    NewWebhookEvent::new(
        EventType::MessageStored.as_str(),
        &json!({
            "message_id": m.id,
            "room": m.room,
            "seq": m.seq,
            "from": m.from,
            "kind": m.kind.as_str(),
            "body": body,
            "priority": m.priority.as_str(),
            "client_msg_id": m.client_msg_id,
            "created_at": rfc3339(m.created_at),
        }),
        crate::domain::now_millis(),
    )
}

/// The `data` of `notification.created` and `message.undelivered` for notification `n`:
/// enough to render a push (title, text, type, priority, the room and sender it came from).
fn notification_data(n: &StoredNotification) -> Value {
    json!({
        "user": n.user,
        "notification_id": n.id,
        "notification_type": n.notification_type,
        "title": n.title,
        "message": n.message,
        "image_url": n.image_url,
        "priority": n.priority.as_str(),
        "room": n.source_room,
        "from": n.source_user,
        "data": n.data,
        "created_at": rfc3339(n.created_at),
    })
}

/// `notification.created`.
pub fn notification_created(n: &StoredNotification) -> NewWebhookEvent {
    NewWebhookEvent::new(
        EventType::NotificationCreated.as_str(),
        &notification_data(n),
        n.created_at,
    )
}

/// `message.undelivered`: notification `n` found its user with no live session. `muted`:
/// the user's preferences mute it (then only an `urgent` one is reported; see the notification
/// center).
pub fn message_undelivered(n: &StoredNotification, reason: &str) -> NewWebhookEvent {
    let mut data = notification_data(n);
    data["reason"] = json!(reason);
    NewWebhookEvent::new(EventType::MessageUndelivered.as_str(), &data, n.created_at)
}

/// `user.online` / `user.offline`, as others see the change (after the grace period).
pub fn presence(user: &UserId, online: bool, at: Millis) -> NewWebhookEvent {
    let t = if online {
        EventType::UserOnline
    } else {
        EventType::UserOffline
    };
    NewWebhookEvent::new(t.as_str(), &json!({"user": user, "at": rfc3339(at)}), at)
}

/// The JSON body POSTed for a stored event: `{"id","type","created_at","data"}`.
pub fn body(row: &WebhookEventRow) -> String {
    let data: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
    json!({
        "id": row.id,
        "type": row.event_type,
        "created_at": rfc3339(row.created_at),
        "data": data,
    })
    .to_string()
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with secret>`, the `X-Herald-Signature`
/// header. The timestamp (`X-Herald-Timestamp`, unix seconds) is signed so that a captured
/// delivery cannot be replayed later under a new timestamp.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The HMAC itself, against RFC 4231 test case 2 ("Jefe").
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The signed material is "<timestamp>.<body>", and the header reads `sha256=<hex>`.
    #[test]
    fn signature_covers_timestamp_dot_body() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(b"1700000000.{}");
        let direct = hex(&mac.finalize().into_bytes());
        assert_eq!(
            signature("k", 1_700_000_000, "{}"),
            format!("sha256={direct}")
        );
        assert_ne!(
            signature("k", 1_700_000_001, "{}"),
            signature("k", 1_700_000_000, "{}")
        );
    }

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Ok(t));
        }
        assert!(EventType::parse("message.sent").is_err());
    }
}
