// Query functions, written once and compiled for each backend: `db/mod.rs` includes this
// file twice, with `super::Conn` naming `SqliteConnection` in one copy and `PgConnection` in
// the other, so both backends run exactly the same code. Only portable SQL is used here.

use std::collections::HashMap;

use diesel::prelude::*;

use super::values_sql::{Value, ValuesSql};
use super::Conn;
use crate::db::models::*;
use crate::db::schema::{
    device_positions, members, messages, notification_outbox, notification_prefs, notifications,
    rooms, users,
};
use crate::domain::{ChosenStatus, DeviceId, ReceiptStatus, RoomId, UserId};
use crate::error::PersistError;
use crate::notification::Preferences;

/// Writes a batch of groups in one transaction (one commit, one fsync).
///
/// The batch is first written whole, with the appends of consecutive groups merged into a
/// few set-wise statements, so a batch costs a handful of statements however many rooms it
/// holds (on PostgreSQL each statement is a round trip). If anything in it is refused — or a
/// message turns out to be a retry, which needs the original looked up — that attempt is
/// rolled back and the batch is written again group by group, each group in a savepoint, so
/// a refused group does not undo the others.
pub fn write_batch(c: &mut Conn, groups: &[Vec<WriteOp>]) -> Result<BatchWrite, PersistError> {
    match super::write_transaction(c, |c| write_batch_merged(c, groups)) {
        Ok(results) => {
            return Ok(BatchWrite {
                results,
                per_group: false,
            })
        }
        Err(e) if !worth_retrying_by_group(&e) => return Err(e.into()),
        Err(_) => {}
    }
    let results = super::write_transaction::<_, diesel::result::Error>(c, |c| {
        let mut results = Vec::with_capacity(groups.len());
        for group in groups {
            let r = c.transaction(|c| {
                let mut out = Vec::with_capacity(group.len());
                for op in group {
                    let outcome = apply(c, op)?;
                    let stop = ends_group(&outcome);
                    out.push(outcome);
                    if stop {
                        break;
                    }
                }
                Ok::<_, diesel::result::Error>(out)
            });
            results.push(r.map_err(PersistError::from));
        }
        Ok(results)
    })?;
    Ok(BatchWrite {
        results,
        per_group: true,
    })
}

/// An outcome after which the rest of its group is skipped (a refused room slot).
fn ends_group(outcome: &WriteOutcome) -> bool {
    matches!(
        outcome,
        WriteOutcome::RoomSlot {
            admitted: false,
            ..
        }
    )
}

/// Errors from the merged attempt that a group-by-group write may get past; a lost
/// connection is not one of them.
fn worth_retrying_by_group(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::RollbackTransaction | Error::NotFound => true,
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => false,
        Error::DatabaseError(..) => true,
        _ => false,
    }
}

/// The whole batch in order, consecutive appends merged. Fails (rolling the transaction
/// back) on any error, and with `RollbackTransaction` when a message collides with a stored
/// one, i.e. is a retry.
fn write_batch_merged(
    c: &mut Conn,
    groups: &[Vec<WriteOp>],
) -> QueryResult<Vec<Result<Vec<WriteOutcome>, PersistError>>> {
    let mut outcomes: Vec<Vec<Option<WriteOutcome>>> =
        groups.iter().map(|g| vec![None; g.len()]).collect();
    let mut appends: Vec<(usize, usize)> = Vec::new();
    for (gi, group) in groups.iter().enumerate() {
        for (oi, op) in group.iter().enumerate() {
            if matches!(op, WriteOp::AppendMessages { .. }) {
                appends.push((gi, oi));
                continue;
            }
            // Earlier appends go first: later ops may depend on them (e.g. a new member's
            // watermarks start at the room's last seq).
            append_merged(c, groups, &mut appends, &mut outcomes)?;
            let outcome = apply(c, op)?;
            let stop = ends_group(&outcome);
            outcomes[gi][oi] = Some(outcome);
            if stop {
                break;
            }
        }
    }
    append_merged(c, groups, &mut appends, &mut outcomes)?;
    Ok(outcomes
        .into_iter()
        .map(|g| Ok(g.into_iter().flatten().collect()))
        .collect())
}

/// Stores the messages of the `AppendMessages` ops at `pending` with one seq update per
/// statement chunk of rooms, multi-row inserts, and one watermark update per chunk of
/// (room, sender) pairs.
fn append_merged(
    c: &mut Conn,
    groups: &[Vec<WriteOp>],
    pending: &mut Vec<(usize, usize)>,
    outcomes: &mut [Vec<Option<WriteOutcome>>],
) -> QueryResult<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let ops: Vec<(usize, usize, &RoomId, &[NewMessage], OutboxPolicy)> = pending
        .drain(..)
        .filter_map(|(gi, oi)| match &groups[gi][oi] {
            WriteOp::AppendMessages {
                room,
                messages,
                outbox,
            } => Some((gi, oi, room, &messages[..], *outbox)),
            _ => None,
        })
        .collect();
    // Retries (a known sender and client_msg_id) are answered with the stored original and
    // take no seq, found with one lookup for the whole batch: left in, one retry would make
    // the insert below refuse and roll back every group of the batch.
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for (_, _, _, msgs, _) in &ops {
        for m in msgs.iter() {
            if let Some(cmid) = m.client_msg_id.as_deref() {
                keys.push((m.sender.as_str(), cmid));
            }
        }
    }
    let originals = stored_originals(c, &keys)?;
    // Per message: a new row (its index in `rows`, filled below) or the key of its original
    // (stored earlier, or new earlier in this batch).
    let mut fresh_keys: HashMap<(&str, &str), usize> = HashMap::new();
    let mut plan: Vec<Vec<Result<usize, (&str, &str)>>> = Vec::with_capacity(ops.len());
    let mut fresh: Vec<(&RoomId, &NewMessage)> = Vec::new();
    // Indexes into `fresh` (and `rows`) of the messages that get an outbox row.
    let mut outboxed: Vec<usize> = Vec::new();
    // Indexes into `fresh` of the messages that get a `message.stored` webhook event.
    let mut hooked: Vec<usize> = Vec::new();
    for (_, _, room, msgs, outbox) in &ops {
        let mut p = Vec::with_capacity(msgs.len());
        for m in msgs.iter() {
            if let Some(cmid) = m.client_msg_id.as_deref() {
                let key = (m.sender.as_str(), cmid);
                if originals.contains_key(&key) || fresh_keys.contains_key(&key) {
                    p.push(Err(key));
                    continue;
                }
                fresh_keys.insert(key, fresh.len());
            }
            if outbox.may_notify(room, m.kind, m.body.as_json()) {
                outboxed.push(fresh.len());
            }
            if outbox.webhook_stored {
                hooked.push(fresh.len());
            }
            p.push(Ok(fresh.len()));
            fresh.push((room, m));
        }
        plan.push(p);
    }
    // How many seqs each room needs (a batch holds up to hundreds of rooms: no linear scans).
    let mut need: HashMap<&str, i64> = HashMap::new();
    for (room, _) in &fresh {
        *need.entry(room.as_str()).or_default() += 1;
    }
    let counts: Vec<(&str, i64)> = need.iter().map(|(r, k)| (*r, *k)).collect();
    // The next seq to hand out per room.
    let mut next: HashMap<String, i64> = HashMap::with_capacity(counts.len());
    for chunk in counts.chunks(ROWS_PER_STATEMENT) {
        let q = chunk.iter().fold(
            ValuesSql::new(
                "UPDATE rooms SET last_seq = rooms.last_seq + v.column2 FROM (VALUES ",
                2,
                ") AS v WHERE rooms.id = v.column1 RETURNING rooms.id, rooms.last_seq",
            ),
            |q, (room, k)| q.row(&[Value::Text(room), Value::BigInt(*k)]),
        );
        let rows: Vec<RoomLastSeq> = q.load(c)?;
        if rows.len() != chunk.len() {
            // A room that does not exist: let the group-by-group write report it.
            return Err(diesel::result::Error::NotFound);
        }
        for r in rows {
            let k = need.get(r.id.as_str()).copied().unwrap_or(0);
            next.insert(r.id, r.last_seq - k + 1);
        }
    }
    let mut rows: Vec<NewMessageRow> = Vec::with_capacity(fresh.len());
    for (room, m) in &fresh {
        let seq = next
            .get_mut(room.as_str())
            .ok_or(diesel::result::Error::NotFound)?;
        rows.push(NewMessageRow::of(m, room.as_str(), *seq));
        *seq += 1;
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        // Raw SQL: Diesel has no multi-row `ON CONFLICT DO NOTHING` insert for SQLite.
        let q = chunk.iter().fold(
            ValuesSql::new(
                "INSERT INTO messages (id, room_id, seq, sender, kind, body, priority, \
                 client_msg_id, created_at) VALUES ",
                9,
                " ON CONFLICT DO NOTHING",
            ),
            |q, r| {
                q.row(&[
                    Value::Text(r.id),
                    Value::Text(r.room_id),
                    Value::BigInt(r.seq),
                    Value::Text(r.sender),
                    Value::Text(r.kind),
                    Value::Text(r.body),
                    Value::Text(r.priority),
                    Value::NullableText(r.client_msg_id),
                    Value::BigInt(r.created_at),
                ])
            },
        );
        let n = q.execute(c)?;
        if n != chunk.len() {
            // A retried client_msg_id (or a clash): only the careful path can answer it.
            return Err(diesel::result::Error::RollbackTransaction);
        }
    }
    insert_outbox(c, outboxed.iter().map(|&i| &rows[i]))?;
    let events: Vec<NewWebhookEvent> = hooked
        .iter()
        .map(|&i| {
            crate::webhook::message_stored(&StoredMessage::appended(
                fresh[i].1,
                fresh[i].0,
                rows[i].seq,
            ))
        })
        .collect();
    super::webhook_queries::insert_events(c, events.iter())?;
    // Sending implies having read the room up to one's own message, so a member's unread
    // count is simply last_seq - read_seq.
    let mut newest_by: HashMap<(&str, &str), i64> = HashMap::new();
    for r in &rows {
        let seq = newest_by.entry((r.room_id, r.sender)).or_insert(r.seq);
        *seq = (*seq).max(r.seq);
    }
    let newest: Vec<(&str, &str, i64)> = newest_by
        .into_iter()
        .map(|((room, sender), seq)| (room, sender, seq))
        .collect();
    for chunk in newest.chunks(ROWS_PER_STATEMENT) {
        let q = chunk.iter().fold(
            ValuesSql::new(
                "UPDATE members SET \
                 read_seq = CASE WHEN members.read_seq < v.column3 THEN v.column3 ELSE members.read_seq END, \
                 delivered_seq = CASE WHEN members.delivered_seq < v.column3 THEN v.column3 ELSE members.delivered_seq END \
                 FROM (VALUES ",
                3,
                ") AS v WHERE members.room_id = v.column1 AND members.user_id = v.column2",
            ),
            |q, (room, sender, seq)| {
                q.row(&[Value::Text(room), Value::Text(sender), Value::BigInt(*seq)])
            },
        );
        q.execute(c)?;
    }
    for ((gi, oi, _, _, _), p) in ops.iter().zip(plan) {
        let mut list = Vec::with_capacity(p.len());
        for entry in p {
            let a = match entry {
                Ok(i) => AppendedMessage {
                    message: StoredMessage::appended(fresh[i].1, fresh[i].0, rows[i].seq),
                    duplicate: false,
                },
                Err(key) => {
                    let message = match (originals.get(&key), fresh_keys.get(&key)) {
                        (Some(orig), _) => orig.clone(),
                        (None, Some(&i)) => {
                            StoredMessage::appended(fresh[i].1, fresh[i].0, rows[i].seq)
                        }
                        (None, None) => return Err(diesel::result::Error::NotFound),
                    };
                    AppendedMessage {
                        message,
                        duplicate: true,
                    }
                }
            };
            list.push(a);
        }
        outcomes[*gi][*oi] = Some(WriteOutcome::Appended(list));
    }
    Ok(())
}

/// Records that these just-stored messages may cause notifications (see [`OutboxPolicy`]):
/// in the storing transaction, so a message is never committed without its row.
fn insert_outbox<'r>(
    c: &mut Conn,
    rows: impl Iterator<Item = &'r NewMessageRow<'r>>,
) -> QueryResult<()> {
    // Commit time rather than the message's own created_at: the sweep leaves rows younger
    // than its minimum age to the room that is processing them right now.
    let now = crate::domain::now_millis();
    let outbox: Vec<NewOutboxRow> = rows
        .map(|r| NewOutboxRow {
            message_id: r.id,
            room_id: r.room_id,
            created_at: now,
        })
        .collect();
    for chunk in outbox.chunks(ROWS_PER_STATEMENT) {
        diesel::insert_into(notification_outbox::table)
            .values(chunk)
            .execute(c)?;
    }
    Ok(())
}

/// The stored messages of these (sender, client_msg_id) pairs, in one query per statement
/// chunk. The pairs are joined as a VALUES list so each one is an index probe on the unique
/// (sender, client_msg_id) index; `sender IN (..) AND client_msg_id IN (..)` crosses the two
/// lists, and PostgreSQL before 17 walks every index entry of every sender named for it
/// (550 ms for 500 pairs on 300,000 messages, against 0.1 ms joined).
fn stored_originals<'k>(
    c: &mut Conn,
    keys: &[(&'k str, &'k str)],
) -> QueryResult<HashMap<(&'k str, &'k str), StoredMessage>> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let q = chunk.iter().fold(
            ValuesSql::new(
                "SELECT m.id, m.room_id, m.seq, m.sender, m.kind, m.body, m.priority, \
                 m.client_msg_id, m.created_at, m.edited_at, m.deleted_at \
                 FROM messages m JOIN (VALUES ",
                2,
                ") AS v ON m.sender = v.column1 AND m.client_msg_id = v.column2",
            ),
            |q, (sender, id)| q.row(&[Value::Text(sender), Value::Text(id)]),
        );
        let found: Vec<MessageRow> = q.load(c)?;
        let mut by_key: HashMap<(String, String), StoredMessage> = HashMap::new();
        for r in found {
            if let Some(cmid) = r.client_msg_id.clone() {
                by_key.insert((r.sender.clone(), cmid), r.try_into()?);
            }
        }
        for &(s, id) in chunk {
            if let Some(m) = by_key.remove(&(s.to_owned(), id.to_owned())) {
                out.insert((s, id), m);
            }
        }
    }
    Ok(out)
}

const ROWS_PER_STATEMENT: usize = 500;

fn apply(c: &mut Conn, op: &WriteOp) -> QueryResult<WriteOutcome> {
    match op {
        WriteOp::EnsureRoom {
            room,
            name,
            created_by,
            at,
        } => {
            let n = diesel::insert_into(rooms::table)
                .values(NewRoomRow {
                    id: room.as_str(),
                    kind: room.kind().as_str(),
                    name: name.as_deref(),
                    created_by: created_by.as_ref().map(|u| u.as_str()),
                    created_at: *at,
                    last_seq: 0,
                })
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(WriteOutcome::Changed(n > 0))
        }
        WriteOp::ClaimRoomSlot { room, user, max } => {
            let already: i64 = members::table
                .find((room.as_str(), user.as_str()))
                .count()
                .get_result(c)?;
            let admitted = already > 0 || {
                let n: i64 = members::table
                    .filter(members::user_id.eq(user.as_str()))
                    .count()
                    .get_result(c)?;
                n < *max
            };
            Ok(WriteOutcome::RoomSlot {
                user: user.clone(),
                admitted,
            })
        }
        WriteOp::AddMember {
            room,
            user,
            role,
            at,
        } => {
            // A new member has nothing unread: their watermarks start at the room's latest seq.
            let last_seq: i64 = rooms::table
                .find(room.as_str())
                .select(rooms::last_seq)
                .first(c)
                .optional()?
                .unwrap_or(0);
            let n = diesel::insert_into(members::table)
                .values(NewMemberRow {
                    room_id: room.as_str(),
                    user_id: user.as_str(),
                    role: role.as_str(),
                    joined_at: *at,
                    delivered_seq: last_seq,
                    read_seq: last_seq,
                })
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(WriteOutcome::Changed(n > 0))
        }
        WriteOp::RemoveMember { room, user } => {
            let n =
                diesel::delete(members::table.find((room.as_str(), user.as_str()))).execute(c)?;
            Ok(WriteOutcome::Changed(n > 0))
        }
        WriteOp::AppendMessages {
            room,
            messages,
            outbox,
        } => append_messages(c, room, messages, *outbox).map(WriteOutcome::Appended),
        WriteOp::ClearOutbox { message_ids } => {
            let mut n = 0;
            for chunk in message_ids.chunks(ROWS_PER_STATEMENT) {
                n += diesel::delete(
                    notification_outbox::table
                        .filter(notification_outbox::message_id.eq_any(chunk)),
                )
                .execute(c)?;
            }
            Ok(WriteOutcome::Count(n as i64))
        }
        WriteOp::AdvanceWatermark {
            room,
            user,
            status,
            seq,
        } => advance_watermark(c, room, user, *status, *seq),
        WriteOp::AdvanceDevicePosition {
            user,
            device,
            room,
            seq,
            at,
            max_devices,
        } => {
            let key = (user.as_str(), device.as_str(), room.as_str());
            let moved = diesel::update(device_positions::table.find(key))
                .filter(device_positions::seq.lt(*seq))
                .set((
                    device_positions::seq.eq(*seq),
                    device_positions::updated_at.eq(*at),
                ))
                .execute(c)?;
            if moved > 0 {
                return Ok(WriteOutcome::Changed(true));
            }
            // New, or already at or past `seq` (then nothing changes).
            let added = diesel::insert_into(device_positions::table)
                .values((
                    device_positions::user_id.eq(user.as_str()),
                    device_positions::device_id.eq(device.as_str()),
                    device_positions::room_id.eq(room.as_str()),
                    device_positions::seq.eq(*seq),
                    device_positions::updated_at.eq(*at),
                ))
                .on_conflict_do_nothing()
                .execute(c)?;
            if added > 0 {
                evict_old_devices(c, user, *max_devices)?;
            }
            Ok(WriteOutcome::Changed(added > 0))
        }
        WriteOp::ExpireDevicePositions { before } => {
            let n = diesel::delete(
                device_positions::table.filter(device_positions::updated_at.lt(*before)),
            )
            .execute(c)?;
            Ok(WriteOutcome::Count(n as i64))
        }
        WriteOp::SaveLastSeen { user, at } => {
            diesel::insert_into(users::table)
                .values(NewUserRow {
                    id: user.as_str(),
                    status: ChosenStatus::Online.as_str(),
                    custom_message: None,
                    last_seen: Some(*at),
                    updated_at: *at,
                    custom_expires_at: None,
                })
                .on_conflict(users::id)
                .do_update()
                .set((users::last_seen.eq(Some(*at)), users::updated_at.eq(*at)))
                .execute(c)?;
            Ok(WriteOutcome::Changed(true))
        }
        WriteOp::InsertNotifications { rows } => {
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let n = diesel::insert_into(notifications::table)
                    .values(NotificationRow::of(r)?)
                    .on_conflict_do_nothing()
                    .execute(c)?;
                if n > 0 {
                    out.push((r.clone(), true));
                    continue;
                }
                // An idempotent repeat: answer the stored original.
                let existing: NotificationRow = notifications::table
                    .filter(notifications::user_id.eq(r.user.as_str()))
                    .filter(notifications::idempotency_key.eq(&r.idempotency_key))
                    .select(NotificationRow::as_select())
                    .first(c)?;
                out.push((existing.try_into()?, false));
            }
            Ok(WriteOutcome::Notifications(out))
        }
        WriteOp::MarkNotificationsRead { user, id, at } => {
            let mine = notifications::table
                .filter(notifications::user_id.eq(user.as_str()))
                .filter(notifications::read_at.is_null());
            let n = match id {
                Some(id) => {
                    let n = diesel::update(mine.filter(notifications::id.eq(id)))
                        .set(notifications::read_at.eq(Some(*at)))
                        .execute(c)?;
                    // Nothing changed: already read (idempotent, fine) or not the user's at
                    // all, which the caller reports as not found.
                    if n == 0 {
                        let exists: i64 = notifications::table
                            .filter(notifications::user_id.eq(user.as_str()))
                            .filter(notifications::id.eq(id))
                            .count()
                            .get_result(c)?;
                        if exists == 0 {
                            return Ok(WriteOutcome::Changed(false));
                        }
                    }
                    n
                }
                None => diesel::update(mine)
                    .set(notifications::read_at.eq(Some(*at)))
                    .execute(c)?,
            };
            Ok(WriteOutcome::Count(n as i64))
        }
        WriteOp::DeleteNotification { user, id } => {
            let n = diesel::delete(
                notifications::table
                    .filter(notifications::user_id.eq(user.as_str()))
                    .filter(notifications::id.eq(id)),
            )
            .execute(c)?;
            Ok(WriteOutcome::Changed(n > 0))
        }
        WriteOp::MarkDelivered { ids, at } => {
            let n = diesel::update(notifications::table.filter(notifications::id.eq_any(ids)))
                .set(notifications::delivered_at.eq(Some(*at)))
                .execute(c)?;
            Ok(WriteOutcome::Count(n as i64))
        }
        WriteOp::DeleteExpiredNotifications { now } => {
            let expired = notifications::table.filter(notifications::expires_at.le(*now));
            let users: Vec<String> = expired.select(notifications::user_id).distinct().load(c)?;
            let mut users = users
                .into_iter()
                .map(|u| parse_user_column("notification", "user_id", &u))
                .collect::<QueryResult<Vec<_>>>()?;
            users.sort();
            diesel::delete(notifications::table.filter(notifications::expires_at.le(*now)))
                .execute(c)?;
            Ok(WriteOutcome::Users(users))
        }
        WriteOp::SavePreferences { user, prefs, at } => {
            diesel::insert_into(notification_prefs::table)
                .values(PrefsRow {
                    user_id: user.as_str(),
                    prefs,
                    updated_at: *at,
                })
                .on_conflict(notification_prefs::user_id)
                .do_update()
                .set((
                    notification_prefs::prefs.eq(prefs),
                    notification_prefs::updated_at.eq(*at),
                ))
                .execute(c)?;
            Ok(WriteOutcome::Changed(true))
        }
        WriteOp::ExpireMessages {
            kind,
            before,
            at,
            limit,
        } => super::change_queries::expire_messages(c, *kind, *before, *at, *limit)
            .map(WriteOutcome::Count),
        WriteOp::ExpireReadNotifications { before, limit } => {
            let ids: Vec<String> = notifications::table
                .filter(notifications::read_at.is_not_null())
                .filter(notifications::read_at.lt(*before))
                .select(notifications::id)
                .limit(*limit)
                .load(c)?;
            let n = diesel::delete(notifications::table.filter(notifications::id.eq_any(&ids)))
                .execute(c)?;
            Ok(WriteOutcome::Count(n as i64))
        }
        WriteOp::ChangeMessage {
            room,
            seq,
            change,
            rules,
            at,
        } => super::change_queries::change_message(c, room, *seq, change, rules, *at)
            .map(WriteOutcome::Change),
        WriteOp::SaveStatus {
            user,
            status,
            custom_message,
            custom_expires_at,
            at,
        } => {
            diesel::insert_into(users::table)
                .values(NewUserRow {
                    id: user.as_str(),
                    status: status.as_str(),
                    custom_message: custom_message.as_ref().map(|m| m.as_str()),
                    last_seen: None,
                    updated_at: *at,
                    custom_expires_at: *custom_expires_at,
                })
                .on_conflict(users::id)
                .do_update()
                .set((
                    users::status.eq(status.as_str()),
                    users::custom_message.eq(custom_message.as_ref().map(|m| m.as_str())),
                    users::custom_expires_at.eq(*custom_expires_at),
                    users::updated_at.eq(*at),
                ))
                .execute(c)?;
            Ok(WriteOutcome::Changed(true))
        }
        WriteOp::Consent(w) => super::consent_queries::apply(c, w),
        WriteOp::Admin(w) => super::admin_queries::apply(c, w),
        WriteOp::Webhooks(w) => super::webhook_queries::apply(c, w),
    }
}

fn append_messages(
    c: &mut Conn,
    room: &RoomId,
    new: &[NewMessage],
    outbox: OutboxPolicy,
) -> QueryResult<Vec<AppendedMessage>> {
    // Retries: find originals stored earlier (any room: the id is unique per sender).
    let keys: Vec<(&str, &str)> = new
        .iter()
        .filter_map(|m| Some((m.sender.as_str(), m.client_msg_id.as_deref()?)))
        .collect();
    let originals: HashMap<(String, String), StoredMessage> = stored_originals(c, &keys)?
        .into_iter()
        .map(|((s, id), m)| ((s.to_owned(), id.to_owned()), m))
        .collect();
    // Decide which messages are new (a retry inside the same batch counts as a duplicate too).
    let mut plan: Vec<Result<usize, (String, String)>> = Vec::with_capacity(new.len());
    let mut fresh: Vec<&NewMessage> = Vec::new();
    let mut seen_in_batch: HashMap<(String, String), ()> = HashMap::new();
    for m in new {
        if let Some(cmid) = &m.client_msg_id {
            let key = (m.sender.as_str().to_owned(), cmid.clone());
            if originals.contains_key(&key) || seen_in_batch.contains_key(&key) {
                plan.push(Err(key));
                continue;
            }
            seen_in_batch.insert(key, ());
        }
        plan.push(Ok(fresh.len()));
        fresh.push(m);
    }
    let mut stored: Vec<StoredMessage> = Vec::with_capacity(fresh.len());
    if !fresh.is_empty() {
        let k = fresh.len() as i64;
        let last: i64 = diesel::update(rooms::table.find(room.as_str()))
            .set(rooms::last_seq.eq(rooms::last_seq + k))
            .returning(rooms::last_seq)
            .get_result(c)?;
        let first = last - k + 1;
        let rows: Vec<NewMessageRow> = fresh
            .iter()
            .enumerate()
            .map(|(i, m)| NewMessageRow::of(m, room.as_str(), first + i as i64))
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            diesel::insert_into(messages::table)
                .values(chunk)
                .execute(c)?;
        }
        insert_outbox(
            c,
            fresh
                .iter()
                .zip(&rows)
                .filter(|(m, _)| outbox.may_notify(room, m.kind, m.body.as_json()))
                .map(|(_, r)| r),
        )?;
        if outbox.webhook_stored {
            let events: Vec<NewWebhookEvent> = fresh
                .iter()
                .zip(&rows)
                .map(|(m, r)| {
                    crate::webhook::message_stored(&StoredMessage::appended(m, room, r.seq))
                })
                .collect();
            super::webhook_queries::insert_events(c, events.iter())?;
        }
        // Sending implies having read the room up to one's own message, so a member's
        // unread count is simply last_seq - read_seq.
        let mut newest_by_sender: HashMap<&str, i64> = HashMap::new();
        for r in &rows {
            newest_by_sender.insert(r.sender, r.seq);
        }
        for (sender, seq) in newest_by_sender {
            let me = members::table.find((room.as_str(), sender));
            diesel::update(me.filter(members::read_seq.lt(seq)))
                .set(members::read_seq.eq(seq))
                .execute(c)?;
            diesel::update(me.filter(members::delivered_seq.lt(seq)))
                .set(members::delivered_seq.eq(seq))
                .execute(c)?;
        }
        stored.extend(
            fresh
                .iter()
                .zip(&rows)
                .map(|(m, r)| StoredMessage::appended(m, room, r.seq)),
        );
    }
    let mut by_key: HashMap<(String, String), StoredMessage> = originals;
    for s in &stored {
        if let Some(cmid) = &s.client_msg_id {
            by_key
                .entry((s.from.as_str().to_owned(), cmid.clone()))
                .or_insert_with(|| s.clone());
        }
    }
    let mut out = Vec::with_capacity(plan.len());
    for p in plan {
        match p {
            Ok(i) => out.push(AppendedMessage {
                message: stored[i].clone(),
                duplicate: false,
            }),
            Err(key) => match by_key.get(&key) {
                Some(orig) => out.push(AppendedMessage {
                    message: orig.clone(),
                    duplicate: true,
                }),
                None => return Err(diesel::result::Error::NotFound),
            },
        }
    }
    Ok(out)
}

fn advance_watermark(
    c: &mut Conn,
    room: &RoomId,
    user: &UserId,
    status: ReceiptStatus,
    seq: i64,
) -> QueryResult<WriteOutcome> {
    let target = members::table.find((room.as_str(), user.as_str()));
    let delivered = diesel::update(target.filter(members::delivered_seq.lt(seq)))
        .set(members::delivered_seq.eq(seq))
        .execute(c)?;
    let read = if status == ReceiptStatus::Read {
        diesel::update(target.filter(members::read_seq.lt(seq)))
            .set(members::read_seq.eq(seq))
            .execute(c)?
    } else {
        0
    };
    let (delivered_seq, read_seq): (i64, i64) = target
        .select((members::delivered_seq, members::read_seq))
        .first(c)?;
    let advanced = match status {
        ReceiptStatus::Delivered => delivered > 0,
        ReceiptStatus::Read => read > 0,
    };
    Ok(WriteOutcome::Watermark {
        delivered_seq,
        read_seq,
        advanced,
    })
}

/// Keeps at most `max` devices of `user`: the least recently moved beyond it lose every
/// position (their next connection starts from the user's watermark).
fn evict_old_devices(c: &mut Conn, user: &UserId, max: i64) -> QueryResult<()> {
    let mut devices: Vec<(String, Option<i64>)> = device_positions::table
        .filter(device_positions::user_id.eq(user.as_str()))
        .group_by(device_positions::device_id)
        .select((
            device_positions::device_id,
            diesel::dsl::max(device_positions::updated_at),
        ))
        .load(c)?;
    let excess = devices.len() as i64 - max.max(1);
    if excess <= 0 {
        return Ok(());
    }
    devices.sort_by_key(|(d, at)| (*at, d.clone()));
    let old: Vec<String> = devices
        .into_iter()
        .take(excess as usize)
        .map(|(d, _)| d)
        .collect();
    diesel::delete(
        device_positions::table
            .filter(device_positions::user_id.eq(user.as_str()))
            .filter(device_positions::device_id.eq_any(&old)),
    )
    .execute(c)?;
    Ok(())
}

/// A device's positions (room → last seq it reported), as of now.
pub fn device_positions(
    c: &mut Conn,
    user: &UserId,
    device: &DeviceId,
) -> QueryResult<HashMap<RoomId, i64>> {
    device_positions::table
        .filter(device_positions::user_id.eq(user.as_str()))
        .filter(device_positions::device_id.eq(device.as_str()))
        .select((device_positions::room_id, device_positions::seq))
        .load::<PositionRow>(c)?
        .into_iter()
        .map(<(RoomId, i64)>::try_from)
        .collect()
}

/// The room and its members, or `None` if it was never created.
pub fn load_room(c: &mut Conn, room: &RoomId) -> Result<Option<RoomRecord>, PersistError> {
    let row: Option<RoomRow> = rooms::table
        .find(room.as_str())
        .select(RoomRow::as_select())
        .first(c)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let members: Vec<MemberRow> = members::table
        .filter(members::room_id.eq(room.as_str()))
        .select(MemberRow::as_select())
        .load(c)?;
    Ok(Some(RoomRecord::try_from((row, members))?))
}

/// The user's rooms ordered by id, after `after` (cursor), at most `limit`.
pub fn user_rooms(
    c: &mut Conn,
    user: &UserId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RoomSummary>, PersistError> {
    // Not boxed: both forms stay in Diesel's prepared-statement cache (this runs at every
    // connect).
    let q = members::table
        .inner_join(rooms::table)
        .filter(members::user_id.eq(user.as_str()))
        .select((
            rooms::id,
            rooms::kind,
            rooms::name,
            members::role,
            rooms::last_seq,
            members::delivered_seq,
            members::read_seq,
            rooms::last_change,
            rooms::retained_from,
        ))
        .order(rooms::id.asc())
        .limit(limit);
    let rows: Vec<MembershipRow> = match after {
        Some(a) => q.filter(rooms::id.gt(a)).load(c)?,
        None => q.load(c)?,
    };
    let mut out: Vec<RoomSummary> = parsed(rows)?;
    for r in &mut out {
        if r.last_seq > r.read_seq {
            r.unread = messages::table
                .filter(messages::room_id.eq(r.room.as_str()))
                .filter(messages::seq.gt(r.read_seq))
                .filter(messages::sender.ne(user.as_str()))
                .count()
                .get_result(c)?;
        }
    }
    Ok(out)
}

/// The first seq of `room` whose body retention may still hold (1 for an unknown room).
pub fn retained_from(c: &mut Conn, room: &RoomId) -> Result<i64, PersistError> {
    Ok(rooms::table
        .find(room.as_str())
        .select(rooms::retained_from)
        .first(c)
        .optional()?
        .unwrap_or(1))
}

/// A page of history, oldest first, and whether more lie beyond it in the paging direction.
pub fn history(
    c: &mut Conn,
    room: &RoomId,
    before_seq: Option<i64>,
    after_seq: Option<i64>,
    limit: i64,
) -> Result<(Vec<StoredMessage>, bool), PersistError> {
    let mut q = messages::table
        .filter(messages::room_id.eq(room.as_str()))
        .select(MessageRow::as_select())
        .limit(limit + 1)
        .into_boxed();
    if let Some(b) = before_seq {
        q = q.filter(messages::seq.lt(b));
    }
    if let Some(a) = after_seq {
        q = q.filter(messages::seq.gt(a)).order(messages::seq.asc());
        let mut rows: Vec<MessageRow> = q.load(c)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        return Ok((parsed(rows)?, more));
    }
    let mut rows: Vec<MessageRow> = q.order(messages::seq.desc()).load(c)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    rows.reverse();
    Ok((parsed(rows)?, more))
}

/// A message's seq and sender, and every other member's watermarks, for the status route.
pub fn message_status(
    c: &mut Conn,
    room: &RoomId,
    message_id: &str,
) -> Result<Option<MessageStatusRecord>, PersistError> {
    let msg: Option<(i64, String)> = messages::table
        .filter(messages::room_id.eq(room.as_str()))
        .filter(messages::id.eq(message_id))
        .select((messages::seq, messages::sender))
        .first(c)
        .optional()?;
    let Some((seq, sender)) = msg else {
        return Ok(None);
    };
    let recipients: Vec<(String, i64, i64)> = members::table
        .filter(members::room_id.eq(room.as_str()))
        .filter(members::user_id.ne(&sender))
        .select((members::user_id, members::delivered_seq, members::read_seq))
        .order(members::user_id.asc())
        .load(c)?;
    let rows = MessageStatusRows {
        message_id: message_id.to_owned(),
        seq,
        sender,
        recipients,
    };
    Ok(Some(rows.try_into()?))
}

/// Which of `others` share at least one room with `user`.
pub fn co_members(
    c: &mut Conn,
    user: &UserId,
    others: &[&str],
) -> Result<Vec<UserId>, PersistError> {
    let my_rooms: Vec<String> = members::table
        .filter(members::user_id.eq(user.as_str()))
        .select(members::room_id)
        .load(c)?;
    let shared: Vec<String> = members::table
        .filter(members::user_id.eq_any(others))
        .filter(members::room_id.eq_any(my_rooms))
        .select(members::user_id)
        .distinct()
        .load(c)?;
    Ok(shared
        .into_iter()
        .map(|u| parse_user_column("member", "user_id", &u))
        .collect::<QueryResult<_>>()?)
}

/// A user's live (unexpired) notifications, newest first.
pub fn notifications(
    c: &mut Conn,
    q: &NotificationQuery,
) -> Result<Vec<StoredNotification>, PersistError> {
    let mut sql = notifications::table
        .filter(notifications::user_id.eq(q.user.as_str()))
        .filter(
            notifications::expires_at
                .is_null()
                .or(notifications::expires_at.gt(q.now)),
        )
        .select(NotificationRow::as_select())
        .order((notifications::created_at.desc(), notifications::id.desc()))
        .limit(q.limit)
        .into_boxed();
    if q.unread_only {
        sql = sql.filter(notifications::read_at.is_null());
    }
    if let Some(k) = q.kind {
        sql = sql.filter(notifications::notification_type.eq(k.to_owned()));
    }
    if let Some((at, id)) = q.before {
        sql = sql.filter(
            notifications::created_at
                .lt(at)
                .or(notifications::created_at
                    .eq(at)
                    .and(notifications::id.lt(id.to_owned()))),
        );
    }
    let rows: Vec<NotificationRow> = sql.load(c)?;
    parsed(rows)
}

/// Unread, unexpired notifications of each user.
pub fn notification_unread(
    c: &mut Conn,
    users: &[UserId],
    now: i64,
) -> Result<Vec<(UserId, i64)>, PersistError> {
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        let n: i64 = notifications::table
            .filter(notifications::user_id.eq(u.as_str()))
            .filter(notifications::read_at.is_null())
            .filter(
                notifications::expires_at
                    .is_null()
                    .or(notifications::expires_at.gt(now)),
            )
            .count()
            .get_result(c)?;
        out.push((u.clone(), n));
    }
    Ok(out)
}

/// Notifications held back (not pushed yet), unread and unexpired, oldest first: at most
/// `limit`, over all of `users`. The list is every online user at a sweep, so it is read in
/// chunks (a statement holds at most 32,766 parameters on SQLite and 65,535 on PostgreSQL);
/// a single user (one who just connected) is read with a statement that stays prepared.
pub fn held_notifications(
    c: &mut Conn,
    users: &[&str],
    now: i64,
    limit: i64,
) -> Result<Vec<StoredNotification>, PersistError> {
    let mut rows: Vec<NotificationRow> = Vec::new();
    if let [user] = users {
        rows = notifications::table
            .filter(notifications::user_id.eq(*user))
            .filter(held_at(now))
            .select(NotificationRow::as_select())
            .order(notifications::created_at.asc())
            .limit(limit)
            .load(c)?;
    } else {
        for chunk in users.chunks(ROWS_PER_STATEMENT) {
            rows.extend(
                notifications::table
                    .filter(notifications::user_id.eq_any(chunk))
                    .filter(held_at(now))
                    .select(NotificationRow::as_select())
                    .order(notifications::created_at.asc())
                    .limit(limit)
                    .load::<NotificationRow>(c)?,
            );
        }
        rows.sort_by_key(|r| r.created_at);
        rows.truncate(usize::try_from(limit).unwrap_or(0));
    }
    parsed(rows)
}

/// A notification held back at `now`: not pushed yet, unread and unexpired.
#[diesel::dsl::auto_type]
fn held_at(now: i64) -> _ {
    notifications::delivered_at
        .is_null()
        .and(notifications::read_at.is_null())
        .and(
            notifications::expires_at
                .is_null()
                .or(notifications::expires_at.gt(now)),
        )
}

/// Stored preference documents of these users.
pub fn preferences(
    c: &mut Conn,
    users: &[&str],
) -> Result<Vec<(UserId, Preferences)>, PersistError> {
    let docs: Vec<(String, String)> = notification_prefs::table
        .filter(notification_prefs::user_id.eq_any(users))
        .select((notification_prefs::user_id, notification_prefs::prefs))
        .load(c)?;
    Ok(docs
        .iter()
        .map(|(user, doc)| parse_preferences(user, doc))
        .collect::<QueryResult<_>>()?)
}

/// How many rooms `user` is a member of.
pub fn count_user_rooms(c: &mut Conn, user: &UserId) -> Result<i64, PersistError> {
    Ok(members::table
        .filter(members::user_id.eq(user.as_str()))
        .count()
        .get_result(c)?)
}

/// The stored record of one user, if any (a statement that stays prepared; `users` takes a
/// list and is prepared at each call).
pub fn user(c: &mut Conn, id: &str) -> Result<Option<UserRecord>, PersistError> {
    let row: Option<UserRow> = users::table
        .filter(users::id.eq(id))
        .select(UserRow::as_select())
        .first(c)
        .optional()?;
    Ok(row.map(UserRecord::try_from).transpose()?)
}

/// Stored records of these users (missing users are simply absent).
pub fn users(c: &mut Conn, ids: &[&str]) -> Result<Vec<UserRecord>, PersistError> {
    let rows: Vec<UserRow> = users::table
        .filter(users::id.eq_any(ids))
        .select(UserRow::as_select())
        .load(c)?;
    parsed(rows)
}

/// Outbox rows written before `created_before` (oldest first, at most `limit`), with their
/// stored messages: what the sweep re-processes.
pub fn pending_outbox(
    c: &mut Conn,
    created_before: i64,
    limit: i64,
) -> Result<Vec<StoredMessage>, PersistError> {
    let rows: Vec<MessageRow> = notification_outbox::table
        .inner_join(messages::table)
        .filter(notification_outbox::created_at.lt(created_before))
        .order((
            notification_outbox::created_at.asc(),
            notification_outbox::message_id.asc(),
        ))
        .limit(limit)
        .select(MessageRow::as_select())
        .load(c)?;
    parsed(rows)
}

/// Loaded rows parsed into their typed values; a row that does not parse fails the load.
fn parsed<R, T: TryFrom<R, Error = diesel::result::Error>>(
    rows: Vec<R>,
) -> Result<Vec<T>, PersistError> {
    Ok(rows
        .into_iter()
        .map(T::try_from)
        .collect::<QueryResult<_>>()?)
}

/// A cheap round trip, for readiness.
pub fn ping(c: &mut Conn) -> Result<(), PersistError> {
    diesel::sql_query("SELECT 1").execute(c)?;
    Ok(())
}
