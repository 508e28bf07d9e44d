//! Notifications a stored message causes: `@mentions` of room members, and direct messages
//! to a user with no answering session.
//!
//! Durability: a message that may cause one gets a `notification_outbox` row in the
//! transaction that stores it ([`OutboxPolicy`]). The notification commit deletes the row in
//! the same group (see [`Notify::outbox`]); when no notification is due, the room deletes it
//! with a [`WriteOp::ClearOutbox`]. A crash in between leaves the row, and the supervisor's
//! outbox sweep sends the message back to its room ([`super::RedoNotifications`]) to be
//! planned again; the idempotency keys `mention:<id>` and `message:<id>` make a repeat
//! harmless.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use serde_json::json;

use crate::actors::notification_center::Notify;
use crate::actors::session::handle::SessionHandle;
use crate::db::models::{MemberRole, OutboxPolicy, StoredMessage};
use crate::domain::{MessageKind, RoomId, SessionId, UserId};
use crate::notification::{NotificationSource, NotificationSpec};

/// Notifications a stored message may cause (mentions, direct messages to offline users).
#[derive(Clone)]
pub struct MessageNotifier {
    pub center: Recipient<Notify>,
    pub mentions: bool,
    pub offline_direct: bool,
    /// Distinct mentions of one message that are notified (`HERALD_MAX_MENTIONS`).
    pub max_mentions: usize,
    /// A recipient counts as online only with a subscribed session heard from within this
    /// long ([`Settings::answering_window`](crate::config::Settings::answering_window)): a
    /// zombie socket must not swallow the offline-DM notification.
    pub answering_window: Duration,
}

/// What a stored message calls for once it is committed.
pub enum Followup {
    /// Nothing: no notification is due and the message has no outbox row.
    Nothing,
    /// Send this; its commit also deletes the message's outbox row (if it has one).
    /// (Boxed: it is large and the other variants are common.)
    Notify(Box<Notify>),
    /// No notification is due, but this message's outbox row must still be deleted.
    Clear(String),
}

impl MessageNotifier {
    /// Which messages get an outbox row when stored (the kinds this server notifies).
    pub fn outbox_policy(&self) -> OutboxPolicy {
        OutboxPolicy {
            mentions: self.mentions && self.max_mentions > 0,
            offline_direct: self.offline_direct,
            webhook_stored: false,
        }
    }

    /// Whether `m` was stored with an outbox row under the current policy.
    pub fn has_outbox(&self, room: &RoomId, m: &StoredMessage) -> bool {
        self.outbox_policy().may_notify(room, m.kind, &m.body)
    }

    /// Decides what `m` calls for, given the room's members and live subscribers.
    /// `has_outbox`: the message has an outbox row to settle.
    ///
    /// At most one [`Notify`] per message, so that one commit settles the outbox row: in a
    /// direct room only the other user can be notified (mention or message, not both), and
    /// in other rooms only mentions are.
    pub fn plan(
        &self,
        room: &RoomId,
        m: &StoredMessage,
        has_outbox: bool,
        members: &HashMap<UserId, MemberRole>,
        subscribers: &HashMap<SessionId, SessionHandle>,
    ) -> Followup {
        let nothing = || {
            if has_outbox {
                Followup::Clear(m.id.clone())
            } else {
                Followup::Nothing
            }
        };
        let from = m.from.clone();
        let direct_to = room
            .direct_users()
            .map(|(a, b)| if a == from { b } else { a });
        let text = if m.kind == MessageKind::Text {
            serde_json::from_str::<serde_json::Value>(&m.body)
                .ok()
                .and_then(|b| b["text"].as_str().map(str::to_owned))
        } else {
            None
        };
        let mut mentioned: Vec<UserId> = Vec::new();
        if self.mentions {
            if let Some(t) = &text {
                mentioned = crate::notification::mentions(t, self.max_mentions)
                    .into_iter()
                    .filter(|u| *u != from && members.contains_key(u))
                    .filter(|u| direct_to.as_ref().is_none_or(|to| u == to))
                    .collect();
            }
        }
        let kind = if !mentioned.is_empty() {
            "mention"
        } else if let Some(to) = direct_to.filter(|_| self.offline_direct) {
            let online = subscribers
                .values()
                .any(|s| s.user == to && s.is_answering(self.answering_window));
            if online {
                return nothing();
            }
            mentioned = vec![to];
            "message"
        } else {
            return nothing();
        };
        let preview = text
            .unwrap_or_else(|| format!("[{}]", m.kind.as_str()))
            .chars()
            .take(200)
            .collect::<String>();
        let title = if kind == "mention" {
            format!("{from} mentioned you in {room}")
        } else {
            format!("New message from {from}")
        };
        Followup::Notify(Box::new(Notify {
            users: mentioned,
            spec: NotificationSpec {
                notification_type: kind.into(),
                title,
                message: preview,
                image_url: None,
                actions: Vec::new(),
                data: json!({"room": room, "message_id": m.id, "seq": m.seq, "from": m.from}),
                priority: m.priority,
                expires_at: None,
            },
            idempotency_key: Some(format!("{kind}:{}", m.id)),
            source: NotificationSource {
                user: Some(from),
                room: Some(room.clone()),
            },
            outbox: has_outbox.then(|| m.id.clone()),
        }))
    }
}
