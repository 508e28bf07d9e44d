//! What the persistence layer takes and returns: Diesel rows (`*Row`, `New*`) and the
//! backend-neutral values handed to and from the actors (`WriteOp`, `StoredMessage`, ...).
//!
//! Loaded rows are parsed here, once, at the database boundary (`TryFrom<*Row>`): a stored
//! value that does not parse fails the load with [`bad_column`], never a default or a
//! dropped row. One file per concern: `messages`, `changes` (edits, deletes, reactions), `rooms`, `users`, `notifications`, and
//! `writes` (the ops the commit queue batches).

mod admin;
mod changes;
mod consent;
mod messages;
mod notifications;
mod rooms;
mod users;
mod webhooks;
mod writes;

use crate::domain::UserId;

pub use admin::{
    AdminAnswer, AdminOutcome, AdminRead, AdminWrite, ApiKeyRow, AuditEntry, ErasedCounts,
    StoredApiKey, UserExportRows,
};
pub use changes::{
    ChangeKind, ChangeRefusal, ChangeResult, ChangeRow, ChangeRules, MessageChange, NewReactionRow,
    ReactionCount, StoredChange,
};
pub use consent::{
    BlockEntry, BlockRow, ConsentAnswer, ConsentOutcome, ConsentRead, ConsentWrite, Invitation,
    InvitationRow, InviteRefusal, ReportRow, StoredReport,
};
pub use messages::{
    AppendedMessage, MessageRow, NewMessage, NewMessageRow, NewOutboxRow, OutboxPolicy,
    RoomLastSeq, StoredMessage,
};
pub use notifications::{
    parse_preferences, NotificationQuery, NotificationRow, PrefsRow, StoredNotification,
};
pub use rooms::{
    MemberRole, MemberRow, MembershipRow, MessageStatusRecord, MessageStatusRows, NewMemberRow,
    NewRoomRow, PositionRow, RoomRecord, RoomRow, RoomSummary,
};
pub use users::{NewUserRow, UserRecord, UserRow};
pub use webhooks::{
    NewWebhookEvent, WebhookAnswer, WebhookEventRow, WebhookRead, WebhookStats, WebhookWrite,
    STATE_DEAD, STATE_PENDING,
};
pub use writes::{BatchWrite, WriteOp, WriteOutcome};

/// A stored user id (`column` of `row`), parsed.
pub fn parse_user_column(row: &str, column: &str, value: &str) -> diesel::QueryResult<UserId> {
    UserId::parse(value).map_err(|_| bad_column(row, column, value))
}

/// The error of a stored value that does not parse: the row was written by something other
/// than this server, or the schema drifted. Loading fails (`unavailable`) rather than
/// dropping the row or defaulting the value.
pub fn bad_column(row: &str, column: &str, value: &str) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("{row}: invalid {column} {value:?}").into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stored_user_id_is_parsed_or_refused() {
        assert_eq!(
            super::parse_user_column("member", "user_id", "bob").unwrap(),
            crate::domain::UserId::parse("bob").unwrap()
        );
        assert_unavailable(super::parse_user_column("member", "user_id", "b b").unwrap_err());
    }

    /// A row that does not parse is a deserialization error, which the loading sites report
    /// as a failed load (`unavailable`), not a dropped row.
    pub(super) fn assert_unavailable(err: diesel::result::Error) {
        assert!(
            matches!(err, diesel::result::Error::DeserializationError(_)),
            "{err:?}"
        );
        assert!(matches!(
            crate::error::PersistError::from(err),
            crate::error::PersistError::Unavailable(_)
        ));
    }
}
