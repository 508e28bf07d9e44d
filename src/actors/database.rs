//! `Database`: the only actor that touches Diesel. It runs on `SyncArbiter` threads (never on
//! an async arbiter): one instance with a single thread takes the write batches of the
//! [`CommitQueue`](super::commit_queue::CommitQueue) (one writer keeps SQLite free of lock
//! contention and makes seq assignment trivially ordered), and a pool of reader threads
//! answers reads from rooms, the presence registry and REST handlers.
//!
//! It never sends to another actor: it only answers. It logs a failed read or write batch
//! itself, once; callers map the error without logging it again (readiness checks and
//! migrations excepted: their callers report the database's state).

use actix::prelude::*;

use crate::db::models::{
    BatchWrite, MessageStatusRecord, NotificationQuery, RoomRecord, RoomSummary, StoredChange,
    StoredMessage, StoredNotification, UserRecord, WriteOp,
};
use crate::db::{DbConnection, DbPool};
use crate::domain::{RoomId, UserId};
use crate::error::PersistError;
use crate::notification::Preferences;

pub struct Database {
    pool: DbPool,
}

impl Database {
    pub fn new(pool: DbPool) -> Self {
        Database { pool }
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, PersistError>,
    ) -> Result<T, PersistError> {
        let mut conn = self.pool.get()?;
        f(&mut conn)
    }

    /// [`with_conn`](Self::with_conn) for a read, logging its failure: here, once, rather
    /// than by each asker the error is handed to (they only map it to `unavailable`).
    fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut DbConnection) -> Result<T, PersistError>,
    ) -> Result<T, PersistError> {
        self.with_conn(f)
            .inspect_err(|e| log::warn!("database read failed ({what}): {e}"))
    }
}

impl Actor for Database {
    type Context = SyncContext<Self>;
}

/// Sent by the `CommitQueue` to the writer with everything collected since the last batch.
#[derive(Message)]
#[rtype(result = "Result<BatchWrite, PersistError>")]
pub struct WriteBatch {
    pub groups: Vec<Vec<WriteOp>>,
}

impl Handler<WriteBatch> for Database {
    type Result = Result<BatchWrite, PersistError>;
    fn handle(&mut self, msg: WriteBatch, _: &mut SyncContext<Self>) -> Self::Result {
        // Logged here, once per batch or refused group: the commit queue hands the error to
        // every waiter of the batch, and they only map it.
        let n = msg.groups.len();
        let batch = self
            .with_conn(|c| c.write_batch_report(&msg.groups))
            .inspect_err(|e| log::warn!("commit batch of {n} groups failed: {e}"))?;
        for (i, r) in batch.results.iter().enumerate() {
            if let Err(e) = r {
                log::warn!("commit group {} of {n} refused: {e}", i + 1);
            }
        }
        Ok(batch)
    }
}

/// Sent by the room supervisor when it starts a room actor.
#[derive(Message)]
#[rtype(result = "Result<Option<RoomRecord>, PersistError>")]
pub struct LoadRoom {
    pub room: RoomId,
}

impl Handler<LoadRoom> for Database {
    type Result = Result<Option<RoomRecord>, PersistError>;
    fn handle(&mut self, msg: LoadRoom, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("load room", |c| c.load_room(&msg.room))
    }
}

/// Sent at session start (to subscribe it) and by `GET /v1/rooms`.
#[derive(Message)]
#[rtype(result = "Result<Vec<RoomSummary>, PersistError>")]
pub struct ListUserRooms {
    pub user: UserId,
    pub after: Option<String>,
    pub limit: i64,
}

impl Handler<ListUserRooms> for Database {
    type Result = Result<Vec<RoomSummary>, PersistError>;
    fn handle(&mut self, msg: ListUserRooms, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("list user rooms", |c| {
            c.user_rooms(&msg.user, msg.after.as_deref(), msg.limit)
        })
    }
}

/// Sent by a room answering `history`, a `join` with `since_seq`, or the REST history route.
#[derive(Message)]
#[rtype(result = "Result<(Vec<StoredMessage>, bool), PersistError>")]
pub struct FetchHistory {
    pub room: RoomId,
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: i64,
    /// Most bytes of bodies in the answer (see [`cap_page_bytes`]).
    pub max_bytes: usize,
    /// Load reaction counts, with `me` for this reader (a `history` page; replays carry none).
    pub reactions_for: Option<UserId>,
}

impl Handler<FetchHistory> for Database {
    type Result = Result<(Vec<StoredMessage>, bool), PersistError>;
    fn handle(&mut self, msg: FetchHistory, _: &mut SyncContext<Self>) -> Self::Result {
        let (mut messages, more) = self.read("history", |c| {
            c.history(&msg.room, msg.before_seq, msg.after_seq, msg.limit)
        })?;
        // Cut here, on the reader thread: what leaves it is at most `max_bytes`, however
        // many pages are in flight. Forward pages keep their oldest messages, the others
        // their newest.
        let cut = cap_page_bytes(&mut messages, msg.max_bytes, msg.after_seq.is_none());
        if let Some(viewer) = &msg.reactions_for {
            self.read("reactions", |c| {
                c.attach_reactions(&msg.room, &mut messages, viewer)
            })?;
        }
        Ok((messages, more || cut))
    }
}

/// The first seq of a room whose body retention may still hold.
#[derive(Message)]
#[rtype(result = "Result<i64, PersistError>")]
pub struct FetchRetainedFrom {
    pub room: RoomId,
}

impl Handler<FetchRetainedFrom> for Database {
    type Result = Result<i64, PersistError>;
    fn handle(&mut self, msg: FetchRetainedFrom, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("retained_from", |c| c.retained_from(&msg.room))
    }
}

/// A room's change log after `after` (edits, deletes, reactions), oldest first.
#[derive(Message)]
#[rtype(result = "Result<(Vec<StoredChange>, bool), PersistError>")]
pub struct FetchChanges {
    pub room: RoomId,
    pub after: i64,
    pub limit: i64,
}

impl Handler<FetchChanges> for Database {
    type Result = Result<(Vec<StoredChange>, bool), PersistError>;
    fn handle(&mut self, msg: FetchChanges, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("changes", |c| c.changes(&msg.room, msg.after, msg.limit))
    }
}

/// Cuts a page of messages (oldest first) to at most `budget` bytes of bodies, keeping at
/// least one message: the newest ones when `keep_newest`, else the oldest. True when cut.
/// A page of 100 messages of 64 KiB would otherwise be a 6 MB reply per request.
pub fn cap_page_bytes(messages: &mut Vec<StoredMessage>, budget: usize, keep_newest: bool) -> bool {
    let mut total = 0usize;
    let mut fits = |m: &StoredMessage| {
        total += m.body.len() + 256;
        total <= budget
    };
    let keep = if keep_newest {
        messages.iter().rev().take_while(|m| fits(m)).count()
    } else {
        messages.iter().take_while(|m| fits(m)).count()
    }
    .max(1);
    if keep >= messages.len() {
        return false;
    }
    if keep_newest {
        messages.drain(..messages.len() - keep);
    } else {
        messages.truncate(keep);
    }
    true
}

/// Sent by the message status route.
#[derive(Message)]
#[rtype(result = "Result<Option<MessageStatusRecord>, PersistError>")]
pub struct FetchMessageStatus {
    pub room: RoomId,
    pub message_id: String,
}

impl Handler<FetchMessageStatus> for Database {
    type Result = Result<Option<MessageStatusRecord>, PersistError>;
    fn handle(&mut self, msg: FetchMessageStatus, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("message status", |c| {
            c.message_status(&msg.room, &msg.message_id)
        })
    }
}

/// Asked by the engine before showing presence: which of `others` share a room with `user`.
#[derive(Message)]
#[rtype(result = "Result<Vec<UserId>, PersistError>")]
pub struct FindCoMembers {
    pub user: UserId,
    pub others: Vec<UserId>,
}

impl Handler<FindCoMembers> for Database {
    type Result = Result<Vec<UserId>, PersistError>;
    fn handle(&mut self, msg: FindCoMembers, _: &mut SyncContext<Self>) -> Self::Result {
        let others: Vec<&str> = msg.others.iter().map(|u| u.as_str()).collect();
        self.read("co-members", |c| c.co_members(&msg.user, &others))
    }
}

/// Sent by the presence registry for users it has no live entry for (last_seen, status).
#[derive(Message)]
#[rtype(result = "Result<Vec<UserRecord>, PersistError>")]
pub struct LoadUsers {
    pub users: Vec<UserId>,
}

impl Handler<LoadUsers> for Database {
    type Result = Result<Vec<UserRecord>, PersistError>;
    fn handle(&mut self, msg: LoadUsers, _: &mut SyncContext<Self>) -> Self::Result {
        let ids: Vec<&str> = msg.users.iter().map(|u| u.as_str()).collect();
        self.read("load users", |c| c.users(&ids))
    }
}

/// Sent by `/readyz`: is the database reachable and fully migrated?
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct CheckReady;

impl Handler<CheckReady> for Database {
    type Result = Result<(), PersistError>;
    fn handle(&mut self, _: CheckReady, _: &mut SyncContext<Self>) -> Self::Result {
        self.with_conn(|c| {
            c.ping()?;
            if c.migrations_applied()? {
                Ok(())
            } else {
                Err(PersistError::Unavailable(
                    "migrations are not applied yet".into(),
                ))
            }
        })
    }
}

/// Sent at start-up (and by the readiness retry loop) to apply the embedded migrations.
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct RunMigrations;

impl Handler<RunMigrations> for Database {
    type Result = Result<(), PersistError>;
    fn handle(&mut self, _: RunMigrations, _: &mut SyncContext<Self>) -> Self::Result {
        self.with_conn(|c| c.run_migrations())
    }
}

/// Sent by the notification routes: a page of a user's notifications, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<StoredNotification>, PersistError>")]
pub struct ListNotifications {
    pub user: UserId,
    pub unread_only: bool,
    pub kind: Option<String>,
    pub before: Option<(i64, String)>,
    pub limit: i64,
    pub now: i64,
}

impl Handler<ListNotifications> for Database {
    type Result = Result<Vec<StoredNotification>, PersistError>;
    fn handle(&mut self, msg: ListNotifications, _: &mut SyncContext<Self>) -> Self::Result {
        let q = NotificationQuery {
            user: &msg.user,
            unread_only: msg.unread_only,
            kind: msg.kind.as_deref(),
            before: msg.before.as_ref().map(|(at, id)| (*at, id.as_str())),
            limit: msg.limit,
            now: msg.now,
        };
        self.read("list notifications", |c| c.notifications(&q))
    }
}

/// Sent by the engine when a session opens: everything the session start needs from the
/// database in one round trip.
#[derive(Message)]
#[rtype(result = "Result<SessionStartRecord, PersistError>")]
pub struct LoadSessionStart {
    pub user: UserId,
    /// The connecting device, whose positions are read too.
    pub device: Option<crate::domain::DeviceId>,
    pub rooms_limit: i64,
    pub now: i64,
}

/// Most blockers a session start loads to hide (a user blocked by more is an abuse case
/// for moderation; the rest are still refused DMs, invitations and watches).
pub const MAX_HIDDEN_BLOCKERS: i64 = 10_000;

/// What a session start reads.
pub struct SessionStartRecord {
    /// The user's rooms with watermarks and unread counts.
    pub rooms: Vec<RoomSummary>,
    /// The stored status and last-seen; `None` for a new user or when it could not be read.
    pub user: Option<UserRecord>,
    /// The unread notification count; `None` when it could not be read.
    pub unread_notifications: Option<i64>,
    /// The device's positions (room id → last seq it reported); empty without a device.
    pub device_positions: std::collections::HashMap<RoomId, i64>,
    /// Users who blocked this one (hidden from its presence and typing in shared rooms).
    pub blocked_by: Vec<UserId>,
}

impl Handler<LoadSessionStart> for Database {
    type Result = Result<SessionStartRecord, PersistError>;
    fn handle(&mut self, msg: LoadSessionStart, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("session start", |c| {
            let rooms = c.user_rooms(&msg.user, None, msg.rooms_limit)?;
            // The status and the badge are niceties: a failure here must not refuse the
            // connection.
            let user = c
                .user(msg.user.as_str())
                .map_err(|e| log::warn!("stored status unavailable at connect: {e}"))
                .ok()
                .flatten();
            let unread_notifications = c
                .notification_unread(std::slice::from_ref(&msg.user), msg.now)
                .map_err(|e| log::warn!("unread notification count unavailable at connect: {e}"))
                .ok()
                .map(|v| v.first().map_or(0, |x| x.1));
            let device_positions = match &msg.device {
                Some(d) => c.device_positions(&msg.user, d)?,
                None => Default::default(),
            };
            let blocked_by =
                match c.consent_read(&crate::db::models::ConsentRead::AllBlockersOf {
                    user: msg.user.clone(),
                    limit: MAX_HIDDEN_BLOCKERS,
                })? {
                    crate::db::models::ConsentAnswer::Users(v) => v,
                    _ => Vec::new(),
                };
            Ok(SessionStartRecord {
                rooms,
                user,
                unread_notifications,
                device_positions,
                blocked_by,
            })
        })
    }
}

/// Sent by the notification center: unread notification counts of these users.
#[derive(Message)]
#[rtype(result = "Result<Vec<(UserId, i64)>, PersistError>")]
pub struct CountUnreadNotifications {
    pub users: Vec<UserId>,
    pub now: i64,
}

impl Handler<CountUnreadNotifications> for Database {
    type Result = Result<Vec<(UserId, i64)>, PersistError>;
    fn handle(&mut self, msg: CountUnreadNotifications, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("unread notifications", |c| {
            c.notification_unread(&msg.users, msg.now)
        })
    }
}

/// Sent by the notification center's sweep: notifications held back by quiet hours or DND.
#[derive(Message)]
#[rtype(result = "Result<Vec<StoredNotification>, PersistError>")]
pub struct LoadHeldNotifications {
    /// Only these users' (the ones with live sessions).
    pub users: Vec<UserId>,
    pub now: i64,
    pub limit: i64,
}

impl Handler<LoadHeldNotifications> for Database {
    type Result = Result<Vec<StoredNotification>, PersistError>;
    fn handle(&mut self, msg: LoadHeldNotifications, _: &mut SyncContext<Self>) -> Self::Result {
        let users: Vec<&str> = msg.users.iter().map(|u| u.as_str()).collect();
        self.read("held notifications", |c| {
            c.held_notifications(&users, msg.now, msg.limit)
        })
    }
}

/// Sent by the notification center and routes: stored preferences (users without any are
/// left out).
#[derive(Message)]
#[rtype(result = "Result<Vec<(UserId, Preferences)>, PersistError>")]
pub struct LoadPreferences {
    pub users: Vec<UserId>,
}

impl Handler<LoadPreferences> for Database {
    type Result = Result<Vec<(UserId, Preferences)>, PersistError>;
    fn handle(&mut self, msg: LoadPreferences, _: &mut SyncContext<Self>) -> Self::Result {
        let users: Vec<&str> = msg.users.iter().map(|u| u.as_str()).collect();
        self.read("notification preferences", |c| c.preferences(&users))
    }
}

/// Sent by the room supervisor's outbox sweep: messages whose notifications were never
/// processed (outbox rows written before `created_before`), oldest first, at most `limit`.
#[derive(Message)]
#[rtype(result = "Result<Vec<StoredMessage>, PersistError>")]
pub struct LoadPendingOutbox {
    pub created_before: i64,
    pub limit: i64,
}

impl Handler<LoadPendingOutbox> for Database {
    type Result = Result<Vec<StoredMessage>, PersistError>;
    fn handle(&mut self, msg: LoadPendingOutbox, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("pending outbox", |c| {
            c.pending_outbox(msg.created_before, msg.limit)
        })
    }
}

/// Sent by the engine's consent operations (invitations, blocks, reports; issue 18).
#[derive(Message)]
#[rtype(result = "Result<crate::db::models::ConsentAnswer, PersistError>")]
pub struct ReadConsent {
    pub query: crate::db::models::ConsentRead,
}

impl Handler<ReadConsent> for Database {
    type Result = Result<crate::db::models::ConsentAnswer, PersistError>;
    fn handle(&mut self, msg: ReadConsent, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("consent", |c| c.consent_read(&msg.query))
    }
}

/// Sent by the engine's admin operations (API keys, the audit log, exports; issue 19).
#[derive(Message)]
#[rtype(result = "Result<crate::db::models::AdminAnswer, PersistError>")]
pub struct ReadAdmin {
    pub query: crate::db::models::AdminRead,
}

impl Handler<ReadAdmin> for Database {
    type Result = Result<crate::db::models::AdminAnswer, PersistError>;
    fn handle(&mut self, msg: ReadAdmin, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("admin", |c| c.admin_read(&msg.query))
    }
}

/// Sent by the webhook sender and the webhook admin routes: read the webhook outbox.
#[derive(Message)]
#[rtype(result = "Result<crate::db::models::WebhookAnswer, PersistError>")]
pub struct ReadWebhooks {
    pub query: crate::db::models::WebhookRead,
}

impl Handler<ReadWebhooks> for Database {
    type Result = Result<crate::db::models::WebhookAnswer, PersistError>;
    fn handle(&mut self, msg: ReadWebhooks, _: &mut SyncContext<Self>) -> Self::Result {
        self.read("webhooks", |c| c.webhook_read(&msg.query))
    }
}

#[cfg(test)]
mod page_tests {
    use super::cap_page_bytes;
    use crate::db::models::StoredMessage;
    use crate::domain::{MessageKind, Priority, RoomId, UserId};

    fn page(n: i64, body: usize) -> Vec<StoredMessage> {
        (1..=n)
            .map(|seq| StoredMessage {
                id: format!("m{seq}"),
                room: RoomId::parse("public:r").unwrap(),
                seq,
                from: UserId::parse("u").unwrap(),
                kind: MessageKind::Text,
                body: "x".repeat(body),
                priority: Priority::Normal,
                client_msg_id: None,
                created_at: 0,
                edited_at: None,
                deleted_at: None,
                reactions: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn pages_are_cut_to_the_byte_budget_from_the_right_end() {
        // 10 bodies of ~10 KB in a 32 KiB budget: 3 fit.
        let mut newest = page(10, 10_000);
        assert!(cap_page_bytes(&mut newest, 32 * 1024, true));
        assert_eq!(
            newest.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        let mut oldest = page(10, 10_000);
        assert!(cap_page_bytes(&mut oldest, 32 * 1024, false));
        assert_eq!(
            oldest.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // One message larger than the budget is still returned.
        let mut big = page(2, 100_000);
        assert!(cap_page_bytes(&mut big, 1024, true));
        assert_eq!(big.len(), 1);
        let mut small = page(5, 10);
        assert!(
            !cap_page_bytes(&mut small, 1024 * 1024, true),
            "nothing cut"
        );
        assert_eq!(small.len(), 5);
    }
}
