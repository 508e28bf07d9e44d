// Consent queries (issue 18: invitations, blocks, reports), written once and compiled for
// each backend beside `queries.rs` (`db/mod.rs` includes this file in both backend modules;
// `super::Conn` is the backend's connection). Writes run on the single writer thread inside
// its batch transaction, through `WriteOp::Consent`; reads run on the reader threads.

use diesel::prelude::*;

use super::Conn;
use crate::db::models::*;
use crate::db::schema::{blocks, invitations, members, messages, reports, rooms};
use crate::domain::{Millis, RoomKind, UserId};
use crate::error::PersistError;

/// Blockers of one user read whole by `BlockersOf` before it falls back to matching the
/// given list in the database.
const BLOCKERS_READ_WHOLE: i64 = 1000;

/// Users matched per statement when `BlockersOf` matches a list in the database.
const BLOCKERS_PER_STATEMENT: usize = 500;

fn consent(o: ConsentOutcome) -> WriteOutcome {
    WriteOutcome::Consent(Box::new(o))
}

/// Applies one consent write (inside the writer's transaction).
pub fn apply(c: &mut Conn, w: &ConsentWrite) -> QueryResult<WriteOutcome> {
    Ok(match w {
        ConsentWrite::CreateInvitation {
            room,
            invitee,
            inviter,
            at,
            expires_at,
            max_per_invitee,
            max_per_inviter,
        } => consent(ConsentOutcome::Invitation(create_invitation(
            c,
            Invite {
                room: room.as_str(),
                invitee: invitee.as_str(),
                inviter: inviter.as_str(),
                at: *at,
                expires_at: *expires_at,
                max_per_invitee: *max_per_invitee,
                max_per_inviter: *max_per_inviter,
            },
        )?)),
        ConsentWrite::DeleteInvitation {
            room,
            invitee,
            inviter,
        } => {
            let target = invitations::table
                .filter(invitations::room_id.eq(room.as_str()))
                .filter(invitations::invitee.eq(invitee.as_str()));
            let n = match inviter {
                Some(by) => diesel::delete(target.filter(invitations::inviter.eq(by.as_str())))
                    .execute(c)?,
                None => diesel::delete(target).execute(c)?,
            };
            WriteOutcome::Changed(n > 0)
        }
        ConsentWrite::Block {
            blocker,
            blocked,
            at,
            max,
        } => {
            let already: i64 = blocks::table
                .find((blocker.as_str(), blocked.as_str()))
                .count()
                .get_result(c)?;
            let outcome = if already > 0 {
                Ok(false)
            } else {
                let n: i64 = blocks::table
                    .filter(blocks::blocker.eq(blocker.as_str()))
                    .count()
                    .get_result(c)?;
                if n >= *max {
                    Err(())
                } else {
                    // An invitation the blocked user made to the blocker goes with the block.
                    diesel::delete(
                        invitations::table
                            .filter(invitations::inviter.eq(blocked.as_str()))
                            .filter(invitations::invitee.eq(blocker.as_str())),
                    )
                    .execute(c)?;
                    diesel::insert_into(blocks::table)
                        .values(BlockRow {
                            blocker: blocker.as_str().to_owned(),
                            blocked: blocked.as_str().to_owned(),
                            created_at: *at,
                        })
                        .execute(c)?;
                    Ok(true)
                }
            };
            consent(ConsentOutcome::Block(outcome))
        }
        ConsentWrite::Unblock { blocker, blocked } => {
            let n = diesel::delete(blocks::table.find((blocker.as_str(), blocked.as_str())))
                .execute(c)?;
            WriteOutcome::Changed(n > 0)
        }
        ConsentWrite::InsertReport { report } => {
            let n = diesel::insert_into(reports::table)
                .values(ReportRow::from(report))
                .on_conflict_do_nothing()
                .execute(c)?;
            if n > 0 {
                consent(ConsentOutcome::Report(Some(report.clone()), true))
            } else {
                // The reporter reported this message before: answer that report.
                let row = reports::table
                    .filter(reports::reporter.eq(report.reporter.as_str()))
                    .filter(reports::room_id.eq(report.room.as_str()))
                    .filter(reports::seq.eq(report.seq))
                    .select(ReportRow::as_select())
                    .first(c)
                    .optional()?;
                let stored = row.map(StoredReport::try_from).transpose()?;
                consent(ConsentOutcome::Report(stored, false))
            }
        }
        ConsentWrite::ResolveReport {
            id,
            by,
            resolution,
            at,
        } => {
            let row = reports::table
                .find(id.as_str())
                .select(ReportRow::as_select())
                .first(c)
                .optional()?;
            let Some(row) = row else {
                return Ok(consent(ConsentOutcome::Report(None, false)));
            };
            let mut report = StoredReport::try_from(row)?;
            if report.resolved_at.is_some() {
                return Ok(consent(ConsentOutcome::Report(Some(report), false)));
            }
            diesel::update(reports::table.find(id.as_str()))
                .set((
                    reports::resolved_at.eq(Some(*at)),
                    reports::resolved_by.eq(Some(by.as_str())),
                    reports::resolution.eq(resolution.as_deref()),
                ))
                .execute(c)?;
            report.resolved_at = Some(*at);
            report.resolved_by = Some(by.clone());
            report.resolution = resolution.clone();
            consent(ConsentOutcome::Report(Some(report), true))
        }
    })
}

struct Invite<'a> {
    room: &'a str,
    invitee: &'a str,
    inviter: &'a str,
    at: Millis,
    expires_at: Millis,
    max_per_invitee: i64,
    max_per_inviter: i64,
}

/// The checks and the insert of an invitation, in the writer's transaction (see
/// [`ConsentWrite::CreateInvitation`]).
fn create_invitation(
    c: &mut Conn,
    i: Invite<'_>,
) -> QueryResult<Result<(Invitation, bool), InviteRefusal>> {
    let room: Option<(String, Option<String>)> = rooms::table
        .find(i.room)
        .select((rooms::kind, rooms::name))
        .first(c)
        .optional()?;
    let Some((kind, room_name)) = room else {
        return Ok(Err(InviteRefusal::NoRoom));
    };
    if kind != RoomKind::Private.as_str() {
        return Ok(Err(InviteRefusal::NotPrivate));
    }
    let role: Option<String> = members::table
        .find((i.room, i.inviter))
        .select(members::role)
        .first(c)
        .optional()?;
    if role.as_deref() != Some(MemberRole::Owner.as_str()) {
        return Ok(Err(InviteRefusal::NotOwner));
    }
    let member: i64 = members::table
        .find((i.room, i.invitee))
        .count()
        .get_result(c)?;
    if member > 0 {
        return Ok(Err(InviteRefusal::AlreadyMember));
    }
    let blocked: i64 = blocks::table
        .find((i.invitee, i.inviter))
        .count()
        .get_result(c)?;
    if blocked > 0 {
        return Ok(Err(InviteRefusal::Blocked));
    }
    let existing = invitations::table
        .find((i.room, i.invitee))
        .select(InvitationRow::as_select())
        .first(c)
        .optional()?;
    match existing {
        Some(row) if row.expires_at > i.at => {
            return Ok(Ok((Invitation::try_from((row, room_name))?, false)));
        }
        // Expired: replaced below, and not counted against anyone.
        Some(_) => {
            diesel::delete(invitations::table.find((i.room, i.invitee))).execute(c)?;
        }
        None => {}
    }
    let for_invitee: i64 = invitations::table
        .filter(invitations::invitee.eq(i.invitee))
        .filter(invitations::expires_at.gt(i.at))
        .count()
        .get_result(c)?;
    if for_invitee >= i.max_per_invitee {
        return Ok(Err(InviteRefusal::InviteeFull));
    }
    let by_inviter: i64 = invitations::table
        .filter(invitations::inviter.eq(i.inviter))
        .filter(invitations::expires_at.gt(i.at))
        .count()
        .get_result(c)?;
    if by_inviter >= i.max_per_inviter {
        return Ok(Err(InviteRefusal::InviterFull));
    }
    let row = InvitationRow {
        room_id: i.room.to_owned(),
        invitee: i.invitee.to_owned(),
        inviter: i.inviter.to_owned(),
        created_at: i.at,
        expires_at: i.expires_at,
    };
    diesel::insert_into(invitations::table)
        .values(&row)
        .execute(c)?;
    Ok(Ok((Invitation::try_from((row, room_name))?, true)))
}

/// Answers one consent read.
pub fn read(c: &mut Conn, q: &ConsentRead) -> Result<ConsentAnswer, PersistError> {
    Ok(match q {
        ConsentRead::PendingInvitations {
            invitee,
            now,
            limit,
        } => {
            let rows: Vec<(InvitationRow, Option<String>)> = invitations::table
                .inner_join(rooms::table)
                .filter(invitations::invitee.eq(invitee.as_str()))
                .filter(invitations::expires_at.gt(*now))
                .order((invitations::created_at.asc(), invitations::room_id.asc()))
                .limit(*limit)
                .select((InvitationRow::as_select(), rooms::name))
                .load(c)?;
            ConsentAnswer::Invitations(
                rows.into_iter()
                    .map(Invitation::try_from)
                    .collect::<QueryResult<_>>()?,
            )
        }
        ConsentRead::Invitation { room, invitee, now } => {
            let row: Option<(InvitationRow, Option<String>)> = invitations::table
                .inner_join(rooms::table)
                .filter(invitations::room_id.eq(room.as_str()))
                .filter(invitations::invitee.eq(invitee.as_str()))
                .filter(invitations::expires_at.gt(*now))
                .select((InvitationRow::as_select(), rooms::name))
                .first(c)
                .optional()?;
            ConsentAnswer::Invitation(row.map(Invitation::try_from).transpose()?)
        }
        ConsentRead::Blocks { blocker } => {
            let rows: Vec<BlockRow> = blocks::table
                .filter(blocks::blocker.eq(blocker.as_str()))
                .order((blocks::created_at.asc(), blocks::blocked.asc()))
                .select(BlockRow::as_select())
                .load(c)?;
            ConsentAnswer::Blocks(
                rows.into_iter()
                    .map(|r| {
                        Ok(BlockEntry {
                            user: parse_user_column("block", "blocked", &r.blocked)?,
                            created_at: r.created_at,
                        })
                    })
                    .collect::<QueryResult<_>>()?,
            )
        }
        ConsentRead::BlockersOf { user, among } => {
            // `among` is every online member of a room being joined. Few users are blocked
            // by many: all of the user's blockers are read with one statement that stays
            // prepared, and matched here. Only a user blocked by more than that is checked
            // against `among`, in chunks (a statement holds a bounded number of parameters).
            let all: Vec<String> = blocks::table
                .filter(blocks::blocked.eq(user.as_str()))
                .select(blocks::blocker)
                .limit(BLOCKERS_READ_WHOLE + 1)
                .load(c)?;
            let rows: Vec<String> = if all.len() as i64 <= BLOCKERS_READ_WHOLE {
                let among: std::collections::HashSet<&str> =
                    among.iter().map(|u| u.as_str()).collect();
                all.into_iter()
                    .filter(|b| among.contains(b.as_str()))
                    .collect()
            } else {
                let mut rows = Vec::new();
                for chunk in among.chunks(BLOCKERS_PER_STATEMENT) {
                    let chunk: Vec<&str> = chunk.iter().map(|u| u.as_str()).collect();
                    rows.extend(
                        blocks::table
                            .filter(blocks::blocked.eq(user.as_str()))
                            .filter(blocks::blocker.eq_any(chunk))
                            .select(blocks::blocker)
                            .load::<String>(c)?,
                    );
                }
                rows
            };
            ConsentAnswer::Users(
                rows.iter()
                    .map(|u| parse_user_column("block", "blocker", u))
                    .collect::<QueryResult<Vec<UserId>>>()?,
            )
        }
        ConsentRead::AllBlockersOf { user, limit } => {
            let rows: Vec<String> = blocks::table
                .filter(blocks::blocked.eq(user.as_str()))
                .select(blocks::blocker)
                .limit(*limit)
                .load(c)?;
            ConsentAnswer::Users(
                rows.iter()
                    .map(|u| parse_user_column("block", "blocker", u))
                    .collect::<QueryResult<Vec<UserId>>>()?,
            )
        }
        ConsentRead::SharesGroupRoom { user, other } => {
            let mine: Vec<String> = members::table
                .filter(members::user_id.eq(user.as_str()))
                .filter(members::room_id.not_like("direct:%"))
                .select(members::room_id)
                .load(c)?;
            let n: i64 = members::table
                .filter(members::user_id.eq(other.as_str()))
                .filter(members::room_id.eq_any(mine))
                .count()
                .get_result(c)?;
            ConsentAnswer::Flag(n > 0)
        }
        ConsentRead::IsMember { room, user } => {
            let n: i64 = members::table
                .find((room.as_str(), user.as_str()))
                .count()
                .get_result(c)?;
            ConsentAnswer::Flag(n > 0)
        }
        ConsentRead::Message { room, seq } => {
            let row: Option<(String, String)> = messages::table
                .filter(messages::room_id.eq(room.as_str()))
                .filter(messages::seq.eq(*seq))
                .select((messages::id, messages::sender))
                .first(c)
                .optional()?;
            ConsentAnswer::Message(match row {
                Some((id, sender)) => Some((id, parse_user_column("message", "sender", &sender)?)),
                None => None,
            })
        }
        ConsentRead::Reports {
            open,
            before,
            limit,
        } => {
            let mut sql = reports::table
                .select(ReportRow::as_select())
                .order((reports::created_at.desc(), reports::id.desc()))
                .limit(*limit)
                .into_boxed();
            match open {
                Some(true) => sql = sql.filter(reports::resolved_at.is_null()),
                Some(false) => sql = sql.filter(reports::resolved_at.is_not_null()),
                None => {}
            }
            if let Some((at, id)) = before {
                sql = sql.filter(
                    reports::created_at
                        .lt(*at)
                        .or(reports::created_at.eq(*at).and(reports::id.lt(id.clone()))),
                );
            }
            let rows: Vec<ReportRow> = sql.load(c)?;
            ConsentAnswer::Reports(
                rows.into_iter()
                    .map(StoredReport::try_from)
                    .collect::<QueryResult<_>>()?,
            )
        }
    })
}
