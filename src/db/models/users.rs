//! Users as stored: the loaded `UserRow` parsed once into a [`UserRecord`], and the row that
//! creates one.

use diesel::prelude::*;

use super::bad_column;
use crate::db::schema::users;
use crate::domain::{ChosenStatus, CustomMessage, Millis, UserId};

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

#[cfg(test)]
mod tests {
    use super::super::tests::assert_unavailable;
    use super::{UserRecord, UserRow};
    use crate::domain::{ChosenStatus, UserId};

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
}
