//! Messages as stored and loaded: the `NewMessage` to append, its `NewMessageRow`, the
//! loaded `MessageRow` parsed once into a [`StoredMessage`], and the notification outbox
//! policy and row written with them.

use diesel::prelude::*;

use super::bad_column;
use crate::db::schema::{messages, notification_outbox};
use crate::domain::{MessageBody, MessageKind, Millis, Priority, RoomId, UserId};

/// A room's seq counter after an update (`RETURNING id, last_seq`).
#[derive(Debug, QueryableByName)]
pub struct RoomLastSeq {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub last_seq: i64,
}

/// A message to be stored; the seq is assigned inside the storing transaction.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub sender: UserId,
    pub kind: MessageKind,
    pub body: MessageBody,
    pub priority: Priority,
    pub client_msg_id: Option<String>,
    pub created_at: Millis,
}

impl NewMessage {
    /// A message about to be sent, with a new id and the current time.
    pub fn new(
        sender: UserId,
        kind: MessageKind,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> Self {
        NewMessage {
            // Time-ordered (UUIDv7): new ids go to the right edge of the primary-key index
            // instead of a random leaf, which keeps the pages a commit dirties few.
            id: uuid::Uuid::now_v7().simple().to_string(),
            sender,
            kind,
            body,
            priority,
            client_msg_id,
            created_at: crate::domain::now_millis(),
        }
    }
}

/// A stored message, as the wire's message object shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: String,
    pub room: RoomId,
    pub seq: i64,
    pub from: UserId,
    pub kind: MessageKind,
    pub body: String,
    pub priority: Priority,
    pub client_msg_id: Option<String>,
    pub created_at: Millis,
    /// When the body was last edited.
    pub edited_at: Option<Millis>,
    /// When the message was deleted: the tombstone's body is `null`.
    pub deleted_at: Option<Millis>,
    /// Reaction counts, loaded for `history` pages only (empty elsewhere).
    pub reactions: Vec<super::ReactionCount>,
}

/// Which messages may cause a derived notification and so get a `notification_outbox` row
/// when stored: the kinds the server notifies (settings `notify_mentions`,
/// `notify_offline_direct`), checked cheaply, so a group message without an `@` pays
/// nothing. The room's notifier decides for real once the message is committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxPolicy {
    /// `@mentions` are notified: text messages containing an `@` qualify.
    pub mentions: bool,
    /// Direct messages to offline users are notified: every message of a direct room qualifies.
    pub offline_direct: bool,
    /// A webhook endpoint subscribes to `message.stored`: every new message also gets a
    /// `webhook_events` row in the storing transaction (docs/webhooks.md).
    pub webhook_stored: bool,
}

impl OutboxPolicy {
    /// Whether a message of `kind` with this body (JSON text) in `room` may cause a
    /// notification.
    pub fn may_notify(&self, room: &RoomId, kind: MessageKind, body_json: &str) -> bool {
        (self.offline_direct && room.direct_users().is_some())
            || (self.mentions && kind == MessageKind::Text && body_json.contains('@'))
    }
}

/// A pending notification-outbox row.
#[derive(Debug, Insertable)]
#[diesel(table_name = notification_outbox)]
pub struct NewOutboxRow<'a> {
    pub message_id: &'a str,
    pub room_id: &'a str,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppendedMessage {
    pub message: StoredMessage,
    /// True when this was a retry and `message` is the original.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: String,
    pub room_id: String,
    pub seq: i64,
    pub sender: String,
    pub kind: String,
    pub body: String,
    pub priority: String,
    pub client_msg_id: Option<String>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

/// A stored row is parsed once, here: a value that does not parse is an error (the row was
/// written by something other than this server, or the schema drifted), never a default.
impl TryFrom<MessageRow> for StoredMessage {
    type Error = diesel::result::Error;

    fn try_from(r: MessageRow) -> Result<Self, Self::Error> {
        fn bad(id: &str, what: &str, value: &str) -> diesel::result::Error {
            bad_column(&format!("message {id}"), what, value)
        }
        let room = RoomId::parse(&r.room_id).map_err(|_| bad(&r.id, "room", &r.room_id))?;
        let from = UserId::parse(&r.sender).map_err(|_| bad(&r.id, "sender", &r.sender))?;
        let kind = MessageKind::parse(&r.kind).ok_or_else(|| bad(&r.id, "kind", &r.kind))?;
        let priority =
            Priority::parse(&r.priority).ok_or_else(|| bad(&r.id, "priority", &r.priority))?;
        Ok(StoredMessage {
            id: r.id,
            room,
            seq: r.seq,
            from,
            kind,
            body: r.body,
            priority,
            client_msg_id: r.client_msg_id,
            created_at: r.created_at,
            edited_at: r.edited_at,
            deleted_at: r.deleted_at,
            reactions: Vec::new(),
        })
    }
}

impl StoredMessage {
    /// `m` as stored in `room` at `seq` (the append path: already typed, nothing to parse).
    pub fn appended(m: &NewMessage, room: &RoomId, seq: i64) -> Self {
        StoredMessage {
            id: m.id.clone(),
            room: room.clone(),
            seq,
            from: m.sender.clone(),
            kind: m.kind,
            body: m.body.as_json().to_owned(),
            priority: m.priority,
            client_msg_id: m.client_msg_id.clone(),
            created_at: m.created_at,
            edited_at: None,
            deleted_at: None,
            reactions: Vec::new(),
        }
    }
}

impl<'a> NewMessageRow<'a> {
    /// The row storing `m` in `room` at `seq`.
    pub fn of(m: &'a NewMessage, room: &'a str, seq: i64) -> Self {
        NewMessageRow {
            id: &m.id,
            room_id: room,
            seq,
            sender: m.sender.as_str(),
            kind: m.kind.as_str(),
            body: m.body.as_json(),
            priority: m.priority.as_str(),
            client_msg_id: m.client_msg_id.as_deref(),
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessageRow<'a> {
    pub id: &'a str,
    pub room_id: &'a str,
    pub seq: i64,
    pub sender: &'a str,
    pub kind: &'a str,
    pub body: &'a str,
    pub priority: &'a str,
    pub client_msg_id: Option<&'a str>,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::super::tests::assert_unavailable;
    use super::{MessageRow, OutboxPolicy, StoredMessage};
    use crate::domain::{MessageKind, Priority, RoomId, UserId};

    fn row() -> MessageRow {
        MessageRow {
            id: "m1".into(),
            room_id: "public:g".into(),
            seq: 7,
            sender: "alice".into(),
            kind: "text".into(),
            body: r#"{"text":"hi"}"#.into(),
            priority: "high".into(),
            client_msg_id: Some("c1".into()),
            created_at: 42,
            edited_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn a_stored_row_is_parsed_into_typed_fields() {
        let m = StoredMessage::try_from(row()).unwrap();
        assert_eq!(m.room, RoomId::parse("public:g").unwrap());
        assert_eq!(m.from, UserId::parse("alice").unwrap());
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.priority, Priority::High);
        assert_eq!((m.seq, m.created_at), (7, 42));
    }

    #[test]
    fn a_stored_row_that_does_not_parse_is_an_error() {
        let bad: [fn(&mut MessageRow); 4] = [
            |r| r.kind = "sticker".into(),
            |r| r.sender = "not a user!".into(),
            |r| r.room_id = "lobby".into(),
            |r| r.priority = "meh".into(),
        ];
        for spoil in bad {
            let mut r = row();
            spoil(&mut r);
            let err = StoredMessage::try_from(r.clone()).expect_err(&format!("{r:?}"));
            assert_unavailable(err);
        }
    }

    #[test]
    fn only_direct_messages_and_texts_with_an_at_sign_get_an_outbox_row() {
        let on = OutboxPolicy {
            mentions: true,
            offline_direct: true,
            ..Default::default()
        };
        let group = RoomId::parse("public:g").unwrap();
        let direct = RoomId::parse("direct:a:b").unwrap();
        assert!(!on.may_notify(&group, MessageKind::Text, r#"{"text":"hello"}"#));
        assert!(on.may_notify(&group, MessageKind::Text, r#"{"text":"hi @bob"}"#));
        assert!(!on.may_notify(&group, MessageKind::Image, r#"{"url":"x@y"}"#));
        assert!(on.may_notify(&direct, MessageKind::Image, r#"{"url":"x"}"#));
        let mentions_only = OutboxPolicy {
            offline_direct: false,
            ..on
        };
        assert!(!mentions_only.may_notify(&direct, MessageKind::Text, r#"{"text":"hi"}"#));
        assert!(!OutboxPolicy::default().may_notify(
            &direct,
            MessageKind::Text,
            r#"{"text":"@a"}"#
        ));
    }
}
