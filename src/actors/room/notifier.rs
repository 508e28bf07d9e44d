//! Notifications a stored message causes: `@mentions` of room members, and direct messages
//! to a user with no online session.

use std::collections::HashMap;

use actix::prelude::*;
use serde_json::json;

use crate::actors::notification_center::Notify;
use crate::actors::session::SessionHandle;
use crate::db::models::{MemberRole, StoredMessage};
use crate::domain::{RoomId, SessionId, UserId};
use crate::notification::{NotificationSource, NotificationSpec};

/// Notifications a stored message may cause (mentions, direct messages to offline users).
#[derive(Clone)]
pub struct MessageNotifier {
    pub center: Recipient<Notify>,
    pub mentions: bool,
    pub offline_direct: bool,
    /// Distinct mentions of one message that are notified (`HERALD_MAX_MENTIONS`).
    pub max_mentions: usize,
}

impl MessageNotifier {
    /// Sends the notifications `m` causes, given the room's members and live subscribers.
    pub(super) fn after_message(
        &self,
        room: &RoomId,
        m: &StoredMessage,
        members: &HashMap<UserId, MemberRole>,
        subscribers: &HashMap<SessionId, SessionHandle>,
    ) {
        let Ok(from) = UserId::parse(&m.from) else {
            return;
        };
        let text = if m.kind == "text" {
            serde_json::from_str::<serde_json::Value>(&m.body)
                .ok()
                .and_then(|b| b["text"].as_str().map(str::to_owned))
        } else {
            None
        };
        let preview = text
            .clone()
            .unwrap_or_else(|| format!("[{}]", m.kind))
            .chars()
            .take(200)
            .collect::<String>();
        let priority = crate::domain::Priority::parse(&m.priority).unwrap_or_default();
        let data = json!({"room": room, "message_id": m.id, "seq": m.seq, "from": m.from});
        let source = NotificationSource {
            user: Some(from.clone()),
            room: Some(room.clone()),
        };
        let mut mentioned: Vec<UserId> = Vec::new();
        if self.mentions {
            if let Some(t) = &text {
                mentioned = crate::notification::mentions(t, self.max_mentions)
                    .into_iter()
                    .filter(|u| *u != from && members.contains_key(u))
                    .collect();
            }
        }
        if !mentioned.is_empty() {
            self.center.do_send(Notify {
                users: mentioned.clone(),
                spec: NotificationSpec {
                    notification_type: "mention".into(),
                    title: format!("{from} mentioned you in {room}"),
                    message: preview.clone(),
                    image_url: None,
                    actions: Vec::new(),
                    data: data.clone(),
                    priority,
                    expires_at: None,
                },
                idempotency_key: Some(format!("mention:{}", m.id)),
                source: source.clone(),
            });
        }
        if self.offline_direct {
            if let Some((a, b)) = room.direct_users() {
                let to = if a == from { b } else { a };
                let online = subscribers.values().any(|s| s.user == to);
                if !online && !mentioned.contains(&to) {
                    self.center.do_send(Notify {
                        users: vec![to],
                        spec: NotificationSpec {
                            notification_type: "message".into(),
                            title: format!("New message from {from}"),
                            message: preview,
                            image_url: None,
                            actions: Vec::new(),
                            data,
                            priority,
                            expires_at: None,
                        },
                        idempotency_key: Some(format!("message:{}", m.id)),
                        source,
                    });
                }
            }
        }
    }
}
