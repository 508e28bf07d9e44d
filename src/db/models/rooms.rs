//! Rooms and memberships: what a room actor loads, a user's room list, a message's
//! delivery state, and the rows that create rooms and members. Loaded rows (`RoomRow`,
//! `MemberRow`, `MembershipRow`) are parsed once, here, into typed values.

use diesel::prelude::*;

use super::bad_column;
use crate::db::schema::{members, rooms};
use crate::domain::{RoomId, RoomKind, UserId};

/// The old path of [`MemberRole`](crate::domain::MemberRole).
pub use crate::domain::MemberRole;

/// A room with its members, as a room actor loads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomRecord {
    pub kind: RoomKind,
    pub name: Option<String>,
    pub last_seq: i64,
    pub members: Vec<(UserId, MemberRole)>,
}

/// A `rooms` row as loaded for a room actor.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rooms)]
pub struct RoomRow {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub last_seq: i64,
}

/// A `members` row's user and role, as loaded for a room actor.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = members)]
pub struct MemberRow {
    pub user_id: String,
    pub role: String,
}

/// A room and its member rows; the stored kind must be the one its id names.
impl TryFrom<(RoomRow, Vec<MemberRow>)> for RoomRecord {
    type Error = diesel::result::Error;

    fn try_from((room, members): (RoomRow, Vec<MemberRow>)) -> Result<Self, Self::Error> {
        let row = format!("room {}", room.id);
        let id = RoomId::parse(&room.id).map_err(|_| bad_column(&row, "id", &room.id))?;
        let kind = RoomKind::parse(&room.kind)
            .filter(|k| *k == id.kind())
            .ok_or_else(|| bad_column(&row, "kind", &room.kind))?;
        let members = members
            .into_iter()
            .map(|m| {
                let user = UserId::parse(&m.user_id)
                    .map_err(|_| bad_column(&row, "member", &m.user_id))?;
                let role =
                    MemberRole::parse(&m.role).ok_or_else(|| bad_column(&row, "role", &m.role))?;
                Ok((user, role))
            })
            .collect::<QueryResult<_>>()?;
        Ok(RoomRecord {
            kind,
            name: room.name,
            last_seq: room.last_seq,
            members,
        })
    }
}

/// One of a user's rooms with the user's watermarks and unread count (the objects of
/// `GET /v1/rooms`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoomSummary {
    pub room: RoomId,
    pub kind: RoomKind,
    pub name: Option<String>,
    pub role: MemberRole,
    pub last_seq: i64,
    pub delivered_seq: i64,
    pub read_seq: i64,
    pub unread: i64,
    /// The room's latest change seq (edits, deletes, reactions).
    pub change_seq: i64,
    /// The first seq whose body retention may still hold (older ones are tombstones).
    pub retained_from: i64,
}

/// A membership joined with its room, as loaded for a user's room list.
#[derive(Debug, Clone, Queryable)]
pub struct MembershipRow {
    pub room: String,
    pub kind: String,
    pub name: Option<String>,
    pub role: String,
    pub last_seq: i64,
    pub delivered_seq: i64,
    pub read_seq: i64,
    pub last_change: i64,
    pub retained_from: i64,
}

/// The membership with `unread` at 0; the loader counts it afterwards.
impl TryFrom<MembershipRow> for RoomSummary {
    type Error = diesel::result::Error;

    fn try_from(r: MembershipRow) -> Result<Self, Self::Error> {
        let row = format!("room {}", r.room);
        let room = RoomId::parse(&r.room).map_err(|_| bad_column(&row, "id", &r.room))?;
        let kind = RoomKind::parse(&r.kind)
            .filter(|k| *k == room.kind())
            .ok_or_else(|| bad_column(&row, "kind", &r.kind))?;
        let role = MemberRole::parse(&r.role).ok_or_else(|| bad_column(&row, "role", &r.role))?;
        Ok(RoomSummary {
            room,
            kind,
            name: r.name,
            role,
            last_seq: r.last_seq,
            delivered_seq: r.delivered_seq,
            read_seq: r.read_seq,
            unread: 0,
            change_seq: r.last_change,
            retained_from: r.retained_from,
        })
    }
}

/// A message and where each other member's watermarks stand.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageStatusRecord {
    pub seq: i64,
    pub sender: UserId,
    /// (user, delivered_seq, read_seq)
    pub recipients: Vec<(UserId, i64, i64)>,
}

/// A message's seq and sender and the other members' watermark rows, as loaded.
#[derive(Debug, Clone)]
pub struct MessageStatusRows {
    pub message_id: String,
    pub seq: i64,
    pub sender: String,
    /// (user_id, delivered_seq, read_seq)
    pub recipients: Vec<(String, i64, i64)>,
}

impl TryFrom<MessageStatusRows> for MessageStatusRecord {
    type Error = diesel::result::Error;

    fn try_from(r: MessageStatusRows) -> Result<Self, Self::Error> {
        let row = format!("message {}", r.message_id);
        let sender = UserId::parse(&r.sender).map_err(|_| bad_column(&row, "sender", &r.sender))?;
        let recipients = r
            .recipients
            .into_iter()
            .map(|(u, delivered, read)| {
                let user = UserId::parse(&u).map_err(|_| bad_column(&row, "recipient", &u))?;
                Ok((user, delivered, read))
            })
            .collect::<QueryResult<_>>()?;
        Ok(MessageStatusRecord {
            seq: r.seq,
            sender,
            recipients,
        })
    }
}

/// A device's position in one room (`device_positions.room_id`, `seq`), as loaded.
#[derive(Debug, Clone, Queryable)]
pub struct PositionRow {
    pub room_id: String,
    pub seq: i64,
}

impl TryFrom<PositionRow> for (RoomId, i64) {
    type Error = diesel::result::Error;

    fn try_from(r: PositionRow) -> Result<Self, Self::Error> {
        let room = RoomId::parse(&r.room_id)
            .map_err(|_| bad_column("device position", "room_id", &r.room_id))?;
        Ok((room, r.seq))
    }
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

#[cfg(test)]
mod tests {
    use super::super::tests::assert_unavailable;
    use super::*;

    fn room_row() -> RoomRow {
        RoomRow {
            id: "private:abc".into(),
            kind: "private".into(),
            name: Some("ops".into()),
            last_seq: 9,
        }
    }

    fn member_rows() -> Vec<MemberRow> {
        vec![
            MemberRow {
                user_id: "alice".into(),
                role: "owner".into(),
            },
            MemberRow {
                user_id: "bob".into(),
                role: "member".into(),
            },
        ]
    }

    fn membership_row() -> MembershipRow {
        MembershipRow {
            room: "public:lobby".into(),
            kind: "public".into(),
            name: None,
            role: "member".into(),
            last_seq: 5,
            delivered_seq: 4,
            read_seq: 3,
            last_change: 0,
            retained_from: 1,
        }
    }

    #[test]
    fn a_stored_room_is_parsed_with_its_members() {
        let r = RoomRecord::try_from((room_row(), member_rows())).unwrap();
        assert_eq!(
            r,
            RoomRecord {
                kind: RoomKind::Private,
                name: Some("ops".into()),
                last_seq: 9,
                members: vec![
                    (UserId::parse("alice").unwrap(), MemberRole::Owner),
                    (UserId::parse("bob").unwrap(), MemberRole::Member),
                ],
            }
        );
    }

    #[test]
    fn a_stored_room_that_does_not_parse_is_an_error() {
        let bad: [fn(&mut RoomRow, &mut Vec<MemberRow>); 5] = [
            |r, _| r.kind = "group".into(),
            |r, _| r.kind = "public".into(), // not the kind its id names
            |r, _| r.id = "lobby".into(),
            |_, m| m[1].role = "admin".into(),
            |_, m| m[0].user_id = "not a user!".into(),
        ];
        for spoil in bad {
            let (mut r, mut m) = (room_row(), member_rows());
            spoil(&mut r, &mut m);
            let err =
                RoomRecord::try_from((r.clone(), m.clone())).expect_err(&format!("{r:?} {m:?}"));
            assert_unavailable(err);
        }
    }

    #[test]
    fn a_stored_membership_is_parsed_and_serialized_as_before() {
        let s = RoomSummary::try_from(membership_row()).unwrap();
        assert_eq!(
            (s.room.as_str(), s.kind, s.role),
            ("public:lobby", RoomKind::Public, MemberRole::Member)
        );
        // The objects of GET /v1/rooms keep their shape (plus the change log's position).
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"room": "public:lobby", "kind": "public", "name": null,
                "role": "member", "last_seq": 5, "delivered_seq": 4, "read_seq": 3, "unread": 0,
                "change_seq": 0, "retained_from": 1})
        );
    }

    #[test]
    fn watermark_and_position_rows_are_parsed_or_refused() {
        let status = || MessageStatusRows {
            message_id: "m1".into(),
            seq: 3,
            sender: "alice".into(),
            recipients: vec![("bob".into(), 3, 2)],
        };
        assert_eq!(
            MessageStatusRecord::try_from(status()).unwrap(),
            MessageStatusRecord {
                seq: 3,
                sender: UserId::parse("alice").unwrap(),
                recipients: vec![(UserId::parse("bob").unwrap(), 3, 2)],
            }
        );
        let mut bad_sender = status();
        bad_sender.sender = "a b".into();
        assert_unavailable(MessageStatusRecord::try_from(bad_sender).unwrap_err());
        let mut bad_recipient = status();
        bad_recipient.recipients[0].0 = "".into();
        assert_unavailable(MessageStatusRecord::try_from(bad_recipient).unwrap_err());

        let position = |room: &str| PositionRow {
            room_id: room.into(),
            seq: 7,
        };
        assert_eq!(
            <(RoomId, i64)>::try_from(position("public:g")).unwrap(),
            (RoomId::parse("public:g").unwrap(), 7)
        );
        assert_unavailable(<(RoomId, i64)>::try_from(position("g")).unwrap_err());
    }

    #[test]
    fn a_stored_membership_that_does_not_parse_is_an_error() {
        let bad: [fn(&mut MembershipRow); 4] = [
            |r| r.role = "guest".into(),
            |r| r.kind = "direct".into(),
            |r| r.kind = "".into(),
            |r| r.room = "public:".into(),
        ];
        for spoil in bad {
            let mut r = membership_row();
            spoil(&mut r);
            let err = RoomSummary::try_from(r.clone()).expect_err(&format!("{r:?}"));
            assert_unavailable(err);
        }
    }
}
