//! Edits, deletes and reactions as the persistence layer takes and returns them: the
//! [`MessageChange`] a room asks for, the [`ChangeResult`] of applying it, the room's change
//! log ([`StoredChange`], one row per change in `change_seq` order) and reaction counts.

use diesel::prelude::*;
use serde::Serialize;

use super::bad_column;
use crate::db::schema::{message_changes, reactions};
use crate::domain::{Millis, RoomId, UserId};

/// What a member asks to change about a stored message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageChange {
    /// Replace the body (validated against the message's kind in the writing transaction,
    /// where the kind is known).
    Edit {
        body: serde_json::Value,
        max_text_bytes: usize,
    },
    /// Leave a tombstone: the body becomes `null`, the seq stays.
    Delete,
    /// Add (`on`) or take back a reaction.
    React { emoji: String, on: bool },
}

/// Who asks, and what the room's rules allow them.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRules {
    pub actor: UserId,
    /// The room's owner or an admin: may delete anyone's message, at any age.
    pub moderator: bool,
    /// A sender edits and deletes their own messages only this long after sending.
    pub edit_window_ms: Millis,
    /// Most distinct emoji on one message.
    pub max_reactions: usize,
}

/// Why a change was refused (mapped to wire errors by the room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeRefusal {
    NoSuchMessage,
    /// Not the sender (or, for a delete, not a moderator either).
    NotYours,
    /// The sender's edit window has passed.
    WindowPassed,
    /// The message is a tombstone: nothing to edit or react to.
    Deleted,
    /// The message already carries `max` distinct emoji.
    TooManyReactions(usize),
    /// The new body does not fit the message's kind.
    InvalidBody(String),
}

/// The result of a [`MessageChange`].
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeResult {
    /// Applied and logged with the room's next change seq.
    Applied(StoredChange),
    /// Already so (the same body, deleted twice, a reaction already on or off): nothing
    /// written, nothing to announce. Changes are idempotent.
    Unchanged,
    Refused(ChangeRefusal),
}

/// What kind of change a log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Edit,
    Delete,
    React,
    Unreact,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Edit => "edit",
            ChangeKind::Delete => "delete",
            ChangeKind::React => "react",
            ChangeKind::Unreact => "unreact",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "edit" => ChangeKind::Edit,
            "delete" => ChangeKind::Delete,
            "react" => ChangeKind::React,
            "unreact" => ChangeKind::Unreact,
            _ => return None,
        })
    }
}

/// One entry of a room's change log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChange {
    pub room: RoomId,
    pub change_seq: i64,
    /// The message it changed.
    pub seq: i64,
    pub kind: ChangeKind,
    pub actor: UserId,
    /// The new body (JSON) of an edit.
    pub body: Option<String>,
    /// The emoji of a reaction.
    pub emoji: Option<String>,
    pub at: Millis,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = message_changes)]
pub struct ChangeRow {
    pub room_id: String,
    pub change_seq: i64,
    pub seq: i64,
    pub kind: String,
    pub actor: String,
    pub body: Option<String>,
    pub emoji: Option<String>,
    pub created_at: i64,
}

impl TryFrom<ChangeRow> for StoredChange {
    type Error = diesel::result::Error;

    fn try_from(r: ChangeRow) -> Result<Self, Self::Error> {
        let row = format!("change {}/{}", r.room_id, r.change_seq);
        Ok(StoredChange {
            room: RoomId::parse(&r.room_id).map_err(|_| bad_column(&row, "room", &r.room_id))?,
            change_seq: r.change_seq,
            seq: r.seq,
            kind: ChangeKind::parse(&r.kind).ok_or_else(|| bad_column(&row, "kind", &r.kind))?,
            actor: UserId::parse(&r.actor).map_err(|_| bad_column(&row, "actor", &r.actor))?,
            body: r.body,
            emoji: r.emoji,
            at: r.created_at,
        })
    }
}

impl From<&StoredChange> for ChangeRow {
    fn from(c: &StoredChange) -> Self {
        ChangeRow {
            room_id: c.room.as_str().to_owned(),
            change_seq: c.change_seq,
            seq: c.seq,
            kind: c.kind.as_str().to_owned(),
            actor: c.actor.as_str().to_owned(),
            body: c.body.clone(),
            emoji: c.emoji.clone(),
            created_at: c.at,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = reactions)]
pub struct NewReactionRow<'a> {
    pub room_id: &'a str,
    pub seq: i64,
    pub user_id: &'a str,
    pub emoji: &'a str,
    pub created_at: i64,
}

/// How many members reacted to a message with one emoji, and whether the reader did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
    pub me: bool,
}
