// Queries of a room's message changes (edits, deletes, reactions, the change log) and of
// retention, written once and compiled for each backend beside `queries.rs` (`db/mod.rs`
// includes this file in both backend modules; `super::Conn` is the backend's connection).
// Writes run on the single writer thread inside its batch transaction.

use std::collections::HashMap;

use diesel::prelude::*;

use super::Conn;
use crate::db::models::*;
use crate::db::schema::{message_changes, messages, reactions, rooms};
use crate::domain::{RoomId, UserId};
use crate::error::PersistError;

/// Rows per multi-row statement (as in `queries.rs`).
const ROWS_PER_STATEMENT: usize = 500;

/// Retention of one room kind: the oldest live messages created before `before`, at most
/// `limit`, become tombstones (body `null`, `deleted_at`), lose their reactions, and each
/// room's `retained_from` moves past the newest of them.
pub fn expire_messages(
    c: &mut Conn,
    kind: crate::domain::RoomKind,
    before: i64,
    at: i64,
    limit: i64,
) -> QueryResult<i64> {
    let old: Vec<(String, String, i64)> = messages::table
        .filter(messages::deleted_at.is_null())
        .filter(messages::created_at.lt(before))
        .filter(messages::room_id.like(format!("{}:%", kind.as_str())))
        .order(messages::created_at.asc())
        .limit(limit)
        .select((messages::id, messages::room_id, messages::seq))
        .load(c)?;
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for (_, room, seq) in &old {
        let e = newest.entry(room.as_str()).or_insert(*seq);
        *e = (*e).max(*seq);
    }
    let ids: Vec<&str> = old.iter().map(|(id, _, _)| id.as_str()).collect();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        diesel::update(messages::table.filter(messages::id.eq_any(chunk)))
            .set((messages::body.eq("null"), messages::deleted_at.eq(at)))
            .execute(c)?;
    }
    for (room, seq) in newest {
        diesel::delete(
            reactions::table
                .filter(reactions::room_id.eq(room))
                .filter(reactions::seq.le(seq)),
        )
        .execute(c)?;
        diesel::update(rooms::table.find(room).filter(rooms::retained_from.le(seq)))
            .set(rooms::retained_from.eq(seq + 1))
            .execute(c)?;
    }
    Ok(old.len() as i64)
}

/// Applies an edit, delete or reaction to message `seq` under `rules` and logs it with the
/// room's next change seq. Refusals and no-ops write nothing.
pub fn change_message(
    c: &mut Conn,
    room: &RoomId,
    seq: i64,
    change: &MessageChange,
    rules: &ChangeRules,
    at: i64,
) -> QueryResult<ChangeResult> {
    use crate::domain::{MessageBody, MessageKind};
    let row: Option<MessageRow> = messages::table
        .filter(messages::room_id.eq(room.as_str()))
        .filter(messages::seq.eq(seq))
        .select(MessageRow::as_select())
        .first(c)
        .optional()?;
    let Some(row) = row else {
        return Ok(ChangeResult::Refused(ChangeRefusal::NoSuchMessage));
    };
    let own = row.sender == rules.actor.as_str();
    let in_window = at - row.created_at <= rules.edit_window_ms;
    let target = messages::table
        .filter(messages::room_id.eq(room.as_str()))
        .filter(messages::seq.eq(seq));
    let (kind, body, emoji) = match change {
        MessageChange::Edit {
            body,
            max_text_bytes,
        } => {
            if !own {
                return Ok(ChangeResult::Refused(ChangeRefusal::NotYours));
            }
            if !in_window {
                return Ok(ChangeResult::Refused(ChangeRefusal::WindowPassed));
            }
            if row.deleted_at.is_some() {
                return Ok(ChangeResult::Refused(ChangeRefusal::Deleted));
            }
            let kind = MessageKind::parse(&row.kind)
                .ok_or_else(|| bad_column(&format!("message {}", row.id), "kind", &row.kind))?;
            let body = match MessageBody::parse(kind, body, *max_text_bytes) {
                Ok(b) => b.as_json().to_owned(),
                Err(e) => return Ok(ChangeResult::Refused(ChangeRefusal::InvalidBody(e.0))),
            };
            if body == row.body {
                return Ok(ChangeResult::Unchanged);
            }
            diesel::update(target)
                .set((messages::body.eq(&body), messages::edited_at.eq(at)))
                .execute(c)?;
            (ChangeKind::Edit, Some(body), None)
        }
        MessageChange::Delete => {
            // Who may comes first: a refused caller learns nothing from a repeated delete.
            if !rules.moderator {
                if !own {
                    return Ok(ChangeResult::Refused(ChangeRefusal::NotYours));
                }
                if !in_window {
                    return Ok(ChangeResult::Refused(ChangeRefusal::WindowPassed));
                }
            }
            if row.deleted_at.is_some() {
                return Ok(ChangeResult::Unchanged);
            }
            diesel::update(target)
                .set((messages::body.eq("null"), messages::deleted_at.eq(at)))
                .execute(c)?;
            // A tombstone keeps no reactions either.
            diesel::delete(
                reactions::table
                    .filter(reactions::room_id.eq(room.as_str()))
                    .filter(reactions::seq.eq(seq)),
            )
            .execute(c)?;
            (ChangeKind::Delete, None, None)
        }
        MessageChange::React { emoji, on } => {
            if row.deleted_at.is_some() {
                return Ok(ChangeResult::Refused(ChangeRefusal::Deleted));
            }
            let of_message = reactions::table
                .filter(reactions::room_id.eq(room.as_str()))
                .filter(reactions::seq.eq(seq));
            let mine = of_message
                .filter(reactions::user_id.eq(rules.actor.as_str()))
                .filter(reactions::emoji.eq(emoji));
            let had: i64 = mine.count().get_result(c)?;
            if (had > 0) == *on {
                return Ok(ChangeResult::Unchanged);
            }
            if *on {
                let present: i64 = of_message
                    .filter(reactions::emoji.eq(emoji))
                    .count()
                    .get_result(c)?;
                if present == 0 {
                    let distinct: Vec<String> =
                        of_message.select(reactions::emoji).distinct().load(c)?;
                    if distinct.len() >= rules.max_reactions {
                        return Ok(ChangeResult::Refused(ChangeRefusal::TooManyReactions(
                            rules.max_reactions,
                        )));
                    }
                }
                diesel::insert_into(reactions::table)
                    .values(NewReactionRow {
                        room_id: room.as_str(),
                        seq,
                        user_id: rules.actor.as_str(),
                        emoji,
                        created_at: at,
                    })
                    .execute(c)?;
                (ChangeKind::React, None, Some(emoji.clone()))
            } else {
                diesel::delete(mine).execute(c)?;
                (ChangeKind::Unreact, None, Some(emoji.clone()))
            }
        }
    };
    let change_seq: i64 = diesel::update(rooms::table.find(room.as_str()))
        .set(rooms::last_change.eq(rooms::last_change + 1))
        .returning(rooms::last_change)
        .get_result(c)?;
    let stored = StoredChange {
        room: room.clone(),
        change_seq,
        seq,
        kind,
        actor: rules.actor.clone(),
        body,
        emoji,
        at,
    };
    diesel::insert_into(message_changes::table)
        .values(ChangeRow::from(&stored))
        .execute(c)?;
    Ok(ChangeResult::Applied(stored))
}

/// A room's change log after `after` (oldest first, at most `limit`), and whether more
/// follow.
pub fn changes(
    c: &mut Conn,
    room: &RoomId,
    after: i64,
    limit: i64,
) -> Result<(Vec<StoredChange>, bool), PersistError> {
    let mut rows: Vec<ChangeRow> = message_changes::table
        .filter(message_changes::room_id.eq(room.as_str()))
        .filter(message_changes::change_seq.gt(after))
        .order(message_changes::change_seq.asc())
        .limit(limit + 1)
        .select(ChangeRow::as_select())
        .load(c)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let out: Result<Vec<StoredChange>, _> = rows.into_iter().map(TryInto::try_into).collect();
    Ok((out?, more))
}

/// Fills in the reaction counts of a page of messages, with `me` for `viewer`.
pub fn attach_reactions(
    c: &mut Conn,
    room: &RoomId,
    page: &mut [StoredMessage],
    viewer: &UserId,
) -> Result<(), PersistError> {
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(());
    };
    let rows: Vec<(i64, String, String)> = reactions::table
        .filter(reactions::room_id.eq(room.as_str()))
        .filter(reactions::seq.between(first.seq, last.seq))
        .select((reactions::seq, reactions::emoji, reactions::user_id))
        .order((reactions::seq.asc(), reactions::created_at.asc()))
        .load(c)?;
    let mut by_seq: HashMap<i64, Vec<ReactionCount>> = HashMap::new();
    for (seq, emoji, user) in rows {
        let list = by_seq.entry(seq).or_default();
        let me = user == viewer.as_str();
        match list.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => {
                r.count += 1;
                r.me |= me;
            }
            None => list.push(ReactionCount {
                emoji,
                count: 1,
                me,
            }),
        }
    }
    for m in page.iter_mut() {
        if let Some(list) = by_seq.remove(&m.seq) {
            m.reactions = list;
        }
    }
    Ok(())
}
