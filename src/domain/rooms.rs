//! What a room is and who is in it: the kind of room (named by its id's prefix) and a
//! member's role.

use serde::Serialize;

/// What kind of room an id names; the prefix of the id says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    /// `public:<name>`: anyone may join.
    Public,
    /// `private:<id>`: created over REST; members are invited by the owner or an admin.
    Private,
    /// `direct:<a>:<b>` (a < b): the conversation of two users, created by the first `send` with `to`.
    Direct,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Public => "public",
            RoomKind::Private => "private",
            RoomKind::Direct => "direct",
        }
    }

    /// The kind a stored `rooms.kind` names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => RoomKind::Public,
            "private" => RoomKind::Private,
            "direct" => RoomKind::Direct,
            _ => return None,
        })
    }
}

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

    /// The role a stored `members.role` names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "owner" => MemberRole::Owner,
            "member" => MemberRole::Member,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_roles_parse_back_from_their_names_and_nothing_else() {
        for k in [RoomKind::Public, RoomKind::Private, RoomKind::Direct] {
            assert_eq!(RoomKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for r in [MemberRole::Owner, MemberRole::Member] {
            assert_eq!(MemberRole::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(RoomKind::parse("group"), None);
        assert_eq!(
            MemberRole::parse("admin"),
            None,
            "no silent fallback to member"
        );
    }
}
