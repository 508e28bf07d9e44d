//! Notifications as stored: the typed [`StoredNotification`] and its `notifications` row
//! (parsed once when loaded), preference documents and listing filters.

use diesel::prelude::*;
use serde_json::Value;

use super::bad_column;
use crate::db::schema::{notification_prefs, notifications};
use crate::domain::{Millis, Priority, RoomId, UserId};
use crate::notification::{NotificationAction, Preferences};

/// A notification of one user, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNotification {
    pub id: String,
    pub user: UserId,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub image_url: Option<String>,
    pub actions: Vec<NotificationAction>,
    /// A JSON object (`{}` when the source gave none).
    pub data: Value,
    pub priority: Priority,
    pub source_user: Option<UserId>,
    pub source_room: Option<RoomId>,
    pub idempotency_key: Option<String>,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    /// When it was pushed live; `None` while held.
    pub delivered_at: Option<Millis>,
    pub read_at: Option<Millis>,
}

/// A `notifications` row (all columns), as stored and loaded.
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
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
}

impl NotificationRow {
    /// The row storing `n`.
    pub fn of(n: &StoredNotification) -> QueryResult<Self> {
        let actions = serde_json::to_string(&n.actions)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        Ok(NotificationRow {
            id: n.id.clone(),
            user_id: n.user.to_string(),
            notification_type: n.notification_type.clone(),
            title: n.title.clone(),
            message: n.message.clone(),
            image_url: n.image_url.clone(),
            actions,
            data: n.data.to_string(),
            priority: n.priority.as_str().to_owned(),
            source_user: n.source_user.as_ref().map(|u| u.to_string()),
            source_room: n.source_room.as_ref().map(|r| r.to_string()),
            idempotency_key: n.idempotency_key.clone(),
            created_at: n.created_at,
            expires_at: n.expires_at,
            delivered_at: n.delivered_at,
            read_at: n.read_at,
        })
    }
}

impl TryFrom<NotificationRow> for StoredNotification {
    type Error = diesel::result::Error;

    fn try_from(r: NotificationRow) -> Result<Self, Self::Error> {
        let row = format!("notification {}", r.id);
        let bad = |column: &str, value: &str| bad_column(&row, column, value);
        let user = UserId::parse(&r.user_id).map_err(|_| bad("user_id", &r.user_id))?;
        let actions = serde_json::from_str(&r.actions).map_err(|_| bad("actions", &r.actions))?;
        let data: Value = serde_json::from_str(&r.data).map_err(|_| bad("data", &r.data))?;
        if !data.is_object() {
            return Err(bad("data", &r.data));
        }
        let priority = Priority::parse(&r.priority).ok_or_else(|| bad("priority", &r.priority))?;
        let source_user = match &r.source_user {
            Some(u) => Some(UserId::parse(u).map_err(|_| bad("source_user", u))?),
            None => None,
        };
        let source_room = match &r.source_room {
            Some(room) => Some(RoomId::parse(room).map_err(|_| bad("source_room", room))?),
            None => None,
        };
        Ok(StoredNotification {
            id: r.id,
            user,
            notification_type: r.notification_type,
            title: r.title,
            message: r.message,
            image_url: r.image_url,
            actions,
            data,
            priority,
            source_user,
            source_room,
            idempotency_key: r.idempotency_key,
            created_at: r.created_at,
            expires_at: r.expires_at,
            delivered_at: r.delivered_at,
            read_at: r.read_at,
        })
    }
}

/// A stored preference document, parsed; one that does not parse fails the load rather than
/// silently becoming the defaults.
pub fn parse_preferences(user: &str, doc: &str) -> QueryResult<(UserId, Preferences)> {
    let row = format!("notification preferences of {user}");
    let id = UserId::parse(user).map_err(|_| bad_column(&row, "user_id", user))?;
    let prefs = serde_json::from_str(doc).map_err(|_| bad_column(&row, "prefs", doc))?;
    Ok((id, prefs))
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
    use serde_json::json;

    use super::super::tests::assert_unavailable;
    use super::*;

    fn row() -> NotificationRow {
        NotificationRow {
            id: "n1".into(),
            user_id: "bob".into(),
            notification_type: "mention".into(),
            title: "t".into(),
            message: "m".into(),
            image_url: None,
            actions: r#"[{"id":"open","label":"Open"}]"#.into(),
            data: r#"{"k":1}"#.into(),
            priority: "urgent".into(),
            source_user: Some("alice".into()),
            source_room: Some("public:g".into()),
            idempotency_key: Some("k".into()),
            created_at: 1,
            expires_at: Some(2),
            delivered_at: None,
            read_at: Some(3),
        }
    }

    #[test]
    fn a_stored_notification_is_parsed_into_typed_fields_and_stored_back_the_same() {
        let n = StoredNotification::try_from(row()).unwrap();
        assert_eq!(n.user, UserId::parse("bob").unwrap());
        assert_eq!(n.priority, Priority::Urgent);
        assert_eq!(n.source_user, Some(UserId::parse("alice").unwrap()));
        assert_eq!(n.source_room, Some(RoomId::parse("public:g").unwrap()));
        assert_eq!(n.actions[0].id, "open");
        assert_eq!(n.data, json!({"k": 1}));
        assert_eq!(NotificationRow::of(&n).unwrap(), row());
    }

    #[test]
    fn a_stored_notification_that_does_not_parse_is_an_error() {
        let bad: [fn(&mut NotificationRow); 7] = [
            |r| r.priority = "meh".into(),
            |r| r.user_id = "not a user!".into(),
            |r| r.source_user = Some("".into()),
            |r| r.source_room = Some("lobby".into()),
            |r| r.actions = "{".into(),
            |r| r.actions = r#"[{"label":"no id"}]"#.into(),
            |r| r.data = "[1]".into(),
        ];
        for spoil in bad {
            let mut r = row();
            spoil(&mut r);
            let err = StoredNotification::try_from(r.clone()).expect_err(&format!("{r:?}"));
            assert_unavailable(err);
        }
    }

    #[test]
    fn stored_preferences_are_parsed_or_refused() {
        let (user, prefs) = parse_preferences("bob", r#"{"min_priority":"high"}"#).unwrap();
        assert_eq!((user.as_str(), prefs.min_priority), ("bob", Priority::High));
        assert_unavailable(parse_preferences("bob", "not json").unwrap_err());
        assert_unavailable(parse_preferences("bob", r#"{"unknown":1}"#).unwrap_err());
        assert_unavailable(parse_preferences("b b", "{}").unwrap_err());
    }
}
