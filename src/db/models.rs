//! What the persistence layer takes and returns: Diesel rows (`*Row`, `New*`) and the
//! backend-neutral values handed to and from the actors (`WriteOp`, `StoredMessage`, ...).

use diesel::prelude::*;

use super::schema::{
    members, messages, notification_outbox, notification_prefs, notifications, rooms, users,
};
use crate::domain::{
    ChosenStatus, CustomMessage, DeviceId, MessageBody, MessageKind, Millis, Priority,
    ReceiptStatus, RoomId, RoomKind, UserId,
};
use crate::error::PersistError;

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Self {
        if s == "owner" {
            MemberRole::Owner
        } else {
            MemberRole::Member
        }
    }
}

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
}

/// One write; a group of them commits or fails together (a savepoint inside the batch).
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Creates the room unless it exists.
    EnsureRoom {
        room: RoomId,
        name: Option<String>,
        created_by: Option<UserId>,
        at: Millis,
    },
    /// Adds a member unless already one.
    AddMember {
        room: RoomId,
        user: UserId,
        role: MemberRole,
        at: Millis,
    },
    /// Admits one more membership of `user` unless they are already a member of `max`
    /// rooms (already being a member of `room` counts as admitted). Checked by the single
    /// writer in the same transaction as the membership it guards, so parallel joins cannot
    /// overshoot the cap. A refusal ends its group: the group's later ops are skipped and
    /// nothing of the group is written, so put it first.
    ClaimRoomSlot {
        room: RoomId,
        user: UserId,
        max: i64,
    },
    /// Ends a membership.
    RemoveMember { room: RoomId, user: UserId },
    /// Stores messages in order, assigning the next seqs; retries (same sender and
    /// `client_msg_id`) return the stored original instead. Each new message that may cause
    /// a notification under `outbox` also gets a `notification_outbox` row, in the same
    /// transaction.
    AppendMessages {
        room: RoomId,
        messages: Vec<NewMessage>,
        outbox: OutboxPolicy,
    },
    /// Deletes the outbox rows of these messages: their notifications are stored (then in
    /// the same group as `InsertNotifications`) or none was due.
    ClearOutbox { message_ids: Vec<String> },
    /// Moves a member's watermark forward (never back); `read` implies `delivered`.
    AdvanceWatermark {
        room: RoomId,
        user: UserId,
        status: ReceiptStatus,
        seq: i64,
    },
    /// Moves a device's position in a room forward (never back): the last seq the device
    /// reported delivered or read.
    /// A device new to the user beyond `max_devices` evicts the user's least recently moved
    /// device (all its rooms), so positions stay bounded per user.
    AdvanceDevicePosition {
        user: UserId,
        device: DeviceId,
        room: RoomId,
        seq: i64,
        at: Millis,
        max_devices: i64,
    },
    /// Deletes device positions not moved since `before` (answers the count).
    ExpireDevicePositions { before: Millis },
    /// Records when the user's last session ended.
    SaveLastSeen { user: UserId, at: Millis },
    /// Stores notifications; one with an `idempotency_key` its user already has is not
    /// stored again (the existing one is returned).
    InsertNotifications { rows: Vec<NotificationRow> },
    /// Marks one (`id`) or all of a user's notifications read: `Count` of rows changed, or
    /// `Changed(false)` when the user has no notification `id`.
    MarkNotificationsRead {
        user: UserId,
        id: Option<String>,
        at: Millis,
    },
    /// Deletes one of a user's notifications.
    DeleteNotification { user: UserId, id: String },
    /// Records that these notifications were pushed live.
    MarkDelivered { ids: Vec<String>, at: Millis },
    /// Deletes expired notifications; answers the users who had some.
    DeleteExpiredNotifications { now: Millis },
    /// Replaces a user's notification preferences (a JSON document).
    SavePreferences {
        user: UserId,
        prefs: String,
        at: Millis,
    },
    /// Records the user's chosen status and custom message.
    SaveStatus {
        user: UserId,
        status: ChosenStatus,
        custom_message: Option<CustomMessage>,
        custom_expires_at: Option<Millis>,
        at: Millis,
    },
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

/// The result of one `WriteOp`, in the same position.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Whether the op changed anything (room created, member added or removed, status saved).
    Changed(bool),
    /// One entry per appended message, in order.
    Appended(Vec<AppendedMessage>),
    /// How many rows the op changed.
    Count(i64),
    /// Per inserted notification: the stored row and whether it is new.
    Notifications(Vec<(NotificationRow, bool)>),
    /// Users touched by the op.
    Users(Vec<String>),
    /// Whether a [`WriteOp::ClaimRoomSlot`] admitted the user.
    RoomSlot { user: UserId, admitted: bool },
    /// The member's watermarks after the op, and whether the reported one moved.
    Watermark {
        delivered_seq: i64,
        read_seq: i64,
        advanced: bool,
    },
}

/// What writing one commit batch gave: each group's outcomes or error, and how it was written.
#[derive(Debug)]
pub struct BatchWrite {
    pub results: Vec<Result<Vec<WriteOutcome>, PersistError>>,
    /// The merged, set-wise attempt failed and the batch was rewritten group by group (one
    /// rollback plus a savepoint per group: the expensive path).
    pub per_group: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppendedMessage {
    pub message: StoredMessage,
    /// True when this was a retry and `message` is the original.
    pub duplicate: bool,
}

/// A room with its members, as a room actor loads it.
#[derive(Debug, Clone)]
pub struct RoomRecord {
    pub kind: RoomKind,
    pub name: Option<String>,
    pub last_seq: i64,
    pub members: Vec<(UserId, MemberRole)>,
}

/// One of a user's rooms with the user's watermarks and unread count.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomSummary {
    pub room: String,
    pub kind: String,
    pub name: Option<String>,
    pub role: String,
    pub last_seq: i64,
    pub delivered_seq: i64,
    pub read_seq: i64,
    pub unread: i64,
}

/// A message and where each other member's watermarks stand.
#[derive(Debug, Clone)]
pub struct MessageStatusRecord {
    pub seq: i64,
    pub sender: String,
    /// (user, delivered_seq, read_seq)
    pub recipients: Vec<(String, i64, i64)>,
}

/// What is stored about a user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: UserId,
    pub status: ChosenStatus,
    pub custom_message: Option<CustomMessage>,
    pub last_seen: Option<Millis>,
    pub updated_at: Millis,
    pub custom_expires_at: Option<Millis>,
}

/// A `users` row as stored; parsed into a [`UserRecord`].
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub status: String,
    pub custom_message: Option<String>,
    pub last_seen: Option<i64>,
    pub updated_at: i64,
    pub custom_expires_at: Option<i64>,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = diesel::result::Error;

    fn try_from(r: UserRow) -> Result<Self, Self::Error> {
        let row = || format!("user {}", r.id);
        let id = UserId::parse(&r.id).map_err(|_| bad_column(&row(), "id", &r.id))?;
        let status =
            ChosenStatus::parse(&r.status).map_err(|_| bad_column(&row(), "status", &r.status))?;
        let custom_message = match &r.custom_message {
            Some(m) => {
                Some(CustomMessage::parse(m).map_err(|_| bad_column(&row(), "custom_message", m))?)
            }
            None => None,
        };
        Ok(UserRecord {
            id,
            status,
            custom_message,
            last_seen: r.last_seen,
            updated_at: r.updated_at,
            custom_expires_at: r.custom_expires_at,
        })
    }
}

/// The error of a stored value that does not parse: the row was written by something other
/// than this server, or the schema drifted. Loading fails (`unavailable`) rather than
/// dropping the row or defaulting the value.
pub fn bad_column(row: &str, column: &str, value: &str) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("{row}: invalid {column} {value:?}").into())
}

#[derive(Debug, Clone, Queryable, Selectable)]
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

#[derive(Debug, Insertable)]
#[diesel(table_name = rooms)]
pub struct NewRoomRow<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub name: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub created_at: i64,
    pub last_seq: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = members)]
pub struct NewMemberRow<'a> {
    pub room_id: &'a str,
    pub user_id: &'a str,
    pub role: &'a str,
    pub joined_at: i64,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUserRow<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub custom_message: Option<&'a str>,
    pub last_seen: Option<i64>,
    pub updated_at: i64,
    pub custom_expires_at: Option<i64>,
}

/// A stored notification (all columns).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = notifications)]
pub struct NotificationRow {
    pub id: String,
    pub user_id: String,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub image_url: Option<String>,
    /// JSON array.
    pub actions: String,
    /// JSON object.
    pub data: String,
    pub priority: String,
    pub source_user: Option<String>,
    pub source_room: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// When it was pushed live; NULL while held.
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = notification_prefs)]
pub struct PrefsRow<'a> {
    pub user_id: &'a str,
    pub prefs: &'a str,
    pub updated_at: i64,
}

/// Filters of a notification listing.
#[derive(Debug, Clone)]
pub struct NotificationQuery<'a> {
    pub user: &'a UserId,
    pub unread_only: bool,
    pub kind: Option<&'a str>,
    /// Cursor: strictly older than this (created_at, id).
    pub before: Option<(i64, &'a str)>,
    pub limit: i64,
    pub now: i64,
}

#[cfg(test)]
mod tests {
    use super::{MessageRow, OutboxPolicy, StoredMessage, UserRecord, UserRow};
    use crate::domain::{ChosenStatus, MessageKind, Priority, RoomId, UserId};

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

    fn user_row() -> UserRow {
        UserRow {
            id: "alice".into(),
            status: "busy".into(),
            custom_message: Some("lunch".into()),
            last_seen: Some(5),
            updated_at: 6,
            custom_expires_at: Some(7),
        }
    }

    #[test]
    fn a_stored_user_is_parsed_into_typed_fields() {
        let u = UserRecord::try_from(user_row()).unwrap();
        assert_eq!(u.id, UserId::parse("alice").unwrap());
        assert_eq!(u.status, ChosenStatus::Busy);
        assert_eq!(u.custom_message.as_ref().map(|m| m.as_str()), Some("lunch"));
        assert_eq!(
            (u.last_seen, u.updated_at, u.custom_expires_at),
            (Some(5), 6, Some(7))
        );
    }

    #[test]
    fn a_stored_user_that_does_not_parse_is_an_error() {
        let bad: [fn(&mut UserRow); 3] = [
            |r| r.status = "offline".into(),
            |r| r.id = "not a user!".into(),
            |r| r.custom_message = Some("x".repeat(300)),
        ];
        for spoil in bad {
            let mut r = user_row();
            spoil(&mut r);
            let err = UserRecord::try_from(r.clone()).expect_err(&format!("{r:?}"));
            assert_unavailable(err);
        }
    }

    /// A row that does not parse is a deserialization error, which the loading sites report
    /// as a failed load (`unavailable`), not a dropped row.
    fn assert_unavailable(err: diesel::result::Error) {
        assert!(
            matches!(err, diesel::result::Error::DeserializationError(_)),
            "{err:?}"
        );
        assert!(matches!(
            crate::error::PersistError::from(err),
            crate::error::PersistError::Unavailable(_)
        ));
    }

    #[test]
    fn only_direct_messages_and_texts_with_an_at_sign_get_an_outbox_row() {
        let on = OutboxPolicy {
            mentions: true,
            offline_direct: true,
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
