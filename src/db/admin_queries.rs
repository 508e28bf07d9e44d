// Admin queries (issue 19: API keys, the audit log, a user's data export and erasure),
// written once and compiled for each backend beside `queries.rs` (`db/mod.rs` includes this
// file in both backend modules; `super::Conn` is the backend's connection). Writes run on
// the single writer thread inside its batch transaction, through `WriteOp::Admin`; reads run
// on the reader threads.

use diesel::prelude::*;

use super::Conn;
use crate::db::models::*;
use crate::db::schema::{
    api_keys, audit_log, blocks, device_positions, invitations, members, message_changes, messages,
    notification_prefs, notifications, reactions, rooms, users,
};
use crate::error::PersistError;

/// Applies one admin write (inside the writer's transaction); every one also writes its
/// audit entry, so the log cannot miss what was done.
pub fn apply(c: &mut Conn, w: &AdminWrite) -> QueryResult<WriteOutcome> {
    let outcome = match w {
        AdminWrite::CreateApiKey { row, .. } => {
            diesel::insert_into(api_keys::table)
                .values(row)
                .execute(c)?;
            AdminOutcome::Done(true)
        }
        AdminWrite::RevokeApiKey { id, at, .. } => {
            let n = diesel::update(
                api_keys::table
                    .find(id)
                    .filter(api_keys::revoked_at.is_null()),
            )
            .set(api_keys::revoked_at.eq(*at))
            .execute(c)?;
            AdminOutcome::Done(n > 0)
        }
        AdminWrite::Audit { .. } => AdminOutcome::Done(true),
        AdminWrite::EraseUser { user, by, at, .. } => {
            AdminOutcome::Erased(erase_user(c, user.as_str(), by.as_str(), *at)?)
        }
    };
    diesel::insert_into(audit_log::table)
        .values(w.audit())
        .execute(c)?;
    Ok(WriteOutcome::Admin(outcome))
}

/// Tombstones every message of `user` (logging each as a delete in its room's change log, so
/// devices catch up) and deletes the rest of what is theirs.
fn erase_user(c: &mut Conn, user: &str, by: &str, at: i64) -> QueryResult<ErasedCounts> {
    let mut counts = ErasedCounts::default();
    let theirs: Vec<(String, i64)> = messages::table
        .filter(messages::sender.eq(user))
        .filter(messages::deleted_at.is_null())
        .select((messages::room_id, messages::seq))
        .order((messages::room_id.asc(), messages::seq.asc()))
        .load(c)?;
    let mut by_room: Vec<(String, Vec<i64>)> = Vec::new();
    for (room, seq) in theirs {
        match by_room.last_mut() {
            Some((r, seqs)) if *r == room => seqs.push(seq),
            _ => by_room.push((room, vec![seq])),
        }
    }
    for (room, seqs) in &by_room {
        let n = seqs.len() as i64;
        let last: i64 = diesel::update(rooms::table.find(room))
            .set(rooms::last_change.eq(rooms::last_change + n))
            .returning(rooms::last_change)
            .get_result(c)?;
        let rows: Vec<ChangeRow> = seqs
            .iter()
            .enumerate()
            .map(|(i, seq)| ChangeRow {
                room_id: room.clone(),
                change_seq: last - n + 1 + i as i64,
                seq: *seq,
                kind: ChangeKind::Delete.as_str().to_owned(),
                actor: by.to_owned(),
                body: None,
                emoji: None,
                created_at: at,
            })
            .collect();
        for chunk in rows.chunks(500) {
            diesel::insert_into(message_changes::table)
                .values(chunk)
                .execute(c)?;
        }
        counts.messages += n;
    }
    diesel::update(
        messages::table
            .filter(messages::sender.eq(user))
            .filter(messages::deleted_at.is_null()),
    )
    .set((messages::body.eq("null"), messages::deleted_at.eq(at)))
    .execute(c)?;
    counts.reactions =
        diesel::delete(reactions::table.filter(reactions::user_id.eq(user))).execute(c)? as i64;
    counts.memberships =
        diesel::delete(members::table.filter(members::user_id.eq(user))).execute(c)? as i64;
    counts.notifications =
        diesel::delete(notifications::table.filter(notifications::user_id.eq(user))).execute(c)?
            as i64;
    diesel::delete(notification_prefs::table.find(user)).execute(c)?;
    diesel::delete(device_positions::table.filter(device_positions::user_id.eq(user)))
        .execute(c)?;
    diesel::delete(blocks::table.filter(blocks::blocker.eq(user).or(blocks::blocked.eq(user))))
        .execute(c)?;
    diesel::delete(
        invitations::table.filter(
            invitations::invitee
                .eq(user)
                .or(invitations::inviter.eq(user)),
        ),
    )
    .execute(c)?;
    diesel::delete(users::table.find(user)).execute(c)?;
    Ok(counts)
}

/// One admin read.
pub fn read(c: &mut Conn, q: &AdminRead) -> Result<AdminAnswer, PersistError> {
    Ok(match q {
        AdminRead::ApiKey { id } => {
            let row: Option<ApiKeyRow> = api_keys::table
                .find(id)
                .select(ApiKeyRow::as_select())
                .first(c)
                .optional()?;
            AdminAnswer::ApiKey(row.map(TryInto::try_into).transpose()?)
        }
        AdminRead::ApiKeys => {
            let rows: Vec<ApiKeyRow> = api_keys::table
                .order((api_keys::created_at.asc(), api_keys::id.asc()))
                .select(ApiKeyRow::as_select())
                .load(c)?;
            let keys: Result<Vec<StoredApiKey>, _> =
                rows.into_iter().map(TryInto::try_into).collect();
            AdminAnswer::ApiKeys(keys?)
        }
        AdminRead::Audit { before, limit } => {
            let mut q = audit_log::table
                .order(audit_log::id.desc())
                .limit(*limit)
                .select(AuditEntry::as_select())
                .into_boxed();
            if let Some(b) = before {
                q = q.filter(audit_log::id.lt(b));
            }
            AdminAnswer::Audit(q.load(c)?)
        }
        AdminRead::Export {
            user,
            messages_after,
            messages_limit,
        } => AdminAnswer::Export(Box::new(export(
            c,
            user.as_str(),
            messages_after.as_deref(),
            *messages_limit,
        )?)),
    })
}

/// Everything stored about `user`; their messages a page at a time (by message id).
fn export(
    c: &mut Conn,
    user: &str,
    messages_after: Option<&str>,
    limit: i64,
) -> Result<UserExportRows, PersistError> {
    let mut q = messages::table
        .filter(messages::sender.eq(user))
        .order(messages::id.asc())
        .limit(limit + 1)
        .select(MessageRow::as_select())
        .into_boxed();
    if let Some(after) = messages_after {
        q = q.filter(messages::id.gt(after));
    }
    let mut rows: Vec<MessageRow> = q.load(c)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let messages: Result<Vec<StoredMessage>, _> = rows.into_iter().map(TryInto::try_into).collect();
    let memberships: Vec<(String, String, i64, i64, i64)> = members::table
        .filter(members::user_id.eq(user))
        .order(members::room_id.asc())
        .select((
            members::room_id,
            members::role,
            members::joined_at,
            members::delivered_seq,
            members::read_seq,
        ))
        .load(c)?;
    let device_positions: Vec<(String, String, i64, i64)> = device_positions::table
        .filter(device_positions::user_id.eq(user))
        .order((
            device_positions::device_id.asc(),
            device_positions::room_id.asc(),
        ))
        .select((
            device_positions::device_id,
            device_positions::room_id,
            device_positions::seq,
            device_positions::updated_at,
        ))
        .load(c)?;
    let notifications: Vec<NotificationRow> = notifications::table
        .filter(notifications::user_id.eq(user))
        .order(notifications::created_at.asc())
        .select(NotificationRow::as_select())
        .load(c)?;
    let notifications: Result<Vec<StoredNotification>, _> =
        notifications.into_iter().map(TryInto::try_into).collect();
    let preferences: Option<String> = notification_prefs::table
        .find(user)
        .select(notification_prefs::prefs)
        .first(c)
        .optional()?;
    let presence: Option<UserRow> = users::table
        .find(user)
        .select(UserRow::as_select())
        .first(c)
        .optional()?;
    let reactions: Vec<(String, i64, String, i64)> = reactions::table
        .filter(reactions::user_id.eq(user))
        .order((reactions::room_id.asc(), reactions::seq.asc()))
        .select((
            reactions::room_id,
            reactions::seq,
            reactions::emoji,
            reactions::created_at,
        ))
        .load(c)?;
    let blocks: Vec<(String, i64)> = blocks::table
        .filter(blocks::blocker.eq(user))
        .order(blocks::created_at.asc())
        .select((blocks::blocked, blocks::created_at))
        .load(c)?;
    Ok(UserExportRows {
        messages: messages?,
        messages_more: more,
        memberships,
        device_positions,
        notifications: notifications?,
        preferences,
        presence: presence.map(TryInto::try_into).transpose()?,
        reactions,
        blocks,
    })
}
