//! The webhook events a new notification causes (docs/webhooks.md): `notification.created`,
//! and `message.undelivered` — the push bridge — when its user has no live session (on any
//! node in cluster mode).
//!
//! They are written in the commit group that stores the notifications, each bound to its
//! notification (`WebhookWrite::Enqueue`): an idempotent repeat that stores nothing reports
//! nothing. The user's preferences decide as for live pushes: a muted notification, or one
//! held by quiet hours or do-not-disturb, is not reported undelivered — except `urgent`,
//! which bypasses both.

use crate::db::models::{NewWebhookEvent, StoredNotification};
use crate::domain::{Millis, Priority, UserId};
use crate::notification::{NotificationSource, NotificationSpec};
use crate::webhook::{self, EventType};

use super::NotificationCenter;

/// An outbox row and the notification it requires (see `WebhookWrite::Enqueue`).
type Event = (NewWebhookEvent, Option<String>);

/// The events of notification `row`, about to be stored; `held`: quiet hours hold it;
/// `offline`: its user has no session on any node.
pub(super) fn stored(
    center: &NotificationCenter,
    row: &StoredNotification,
    held: bool,
    offline: bool,
) -> Vec<Event> {
    let topics = &center.store.webhooks;
    let mut out = Vec::new();
    if topics.wants(EventType::NotificationCreated) {
        out.push((webhook::notification_created(row), Some(row.id.clone())));
    }
    if !held && offline && topics.wants_undelivered(&row.notification_type, row.priority) {
        out.push((
            webhook::message_undelivered(row, "offline"),
            Some(row.id.clone()),
        ));
    }
    out
}

/// The events of a notification that `user`'s preferences mute (nothing is stored): only an
/// `urgent` one for an offline user is still reported undelivered, without a notification id.
pub(super) fn muted(
    center: &NotificationCenter,
    user: &UserId,
    spec: &NotificationSpec,
    source: &NotificationSource,
    now: Millis,
    offline: bool,
) -> Option<Event> {
    if spec.priority != Priority::Urgent
        || !offline
        || !center
            .store
            .webhooks
            .wants_undelivered(&spec.notification_type, spec.priority)
    {
        return None;
    }
    let row = StoredNotification {
        id: String::new(),
        user: user.clone(),
        notification_type: spec.notification_type.clone(),
        title: spec.title.clone(),
        message: spec.message.clone(),
        image_url: spec.image_url.clone(),
        actions: spec.actions.clone(),
        data: spec.data.clone(),
        priority: spec.priority,
        source_user: source.user.clone(),
        source_room: source.room.clone(),
        idempotency_key: None,
        created_at: now,
        expires_at: spec.expires_at,
        delivered_at: None,
        read_at: None,
    };
    let mut e = webhook::message_undelivered(&row, "offline_muted_urgent");
    // No notification was stored: the data names none.
    if let Ok(mut data) = serde_json::from_str::<serde_json::Value>(&e.payload) {
        data["notification_id"] = serde_json::Value::Null;
        e.payload = data.to_string();
    }
    Some((e, None))
}
