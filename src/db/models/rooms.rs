//! Rooms and memberships: what a room actor loads, a user's room list, a message's
//! delivery state, and the rows that create rooms and members.

use diesel::prelude::*;

use crate::db::schema::{members, rooms};
use crate::domain::{RoomKind, UserId};

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
