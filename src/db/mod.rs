//! The persistence layer: connection URL parsing, the two-backend connection type and its
//! r2d2 pool, embedded migrations, and the query functions.
//!
//! Diesel is used only here and in `actors::database`, whose `SyncArbiter` threads are the
//! only callers. SQLite (the default) and PostgreSQL run the same queries: `queries.rs` is
//! compiled once per backend (see its header).

pub mod models;
pub mod schema;
mod sqlite_planner;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::domain::{RoomId, UserId};
use crate::error::PersistError;
use models::*;

mod sqlite {
    pub type Conn = diesel::SqliteConnection;
    pub type Db = diesel::sqlite::Sqlite;
    /// A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`): a
    /// deferred one that reads first and then writes gets `SQLITE_BUSY` at once, without the
    /// busy timeout, when another connection holds the lock.
    pub fn write_transaction<T, E>(
        c: &mut Conn,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        c.immediate_transaction(f)
    }
    pub mod queries {
        include!("queries.rs");
    }
    pub mod values_sql {
        include!("values_sql.rs");
    }
    pub mod consent_queries {
        include!("consent_queries.rs");
    }
    pub mod admin_queries {
        include!("admin_queries.rs");
    }
    pub mod change_queries {
        include!("change_queries.rs");
    }
    pub mod webhook_queries {
        include!("webhook_queries.rs");
    }
}

mod pg {
    pub type Conn = diesel::PgConnection;
    pub type Db = diesel::pg::Pg;
    /// A write transaction (PostgreSQL takes row locks as it goes; nothing to do up front).
    pub fn write_transaction<T, E>(
        c: &mut Conn,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        use diesel::Connection;
        c.transaction(f)
    }
    pub mod queries {
        include!("queries.rs");
    }
    pub mod values_sql {
        include!("values_sql.rs");
    }
    pub mod consent_queries {
        include!("consent_queries.rs");
    }
    pub mod admin_queries {
        include!("admin_queries.rs");
    }
    pub mod change_queries {
        include!("change_queries.rs");
    }
    pub mod webhook_queries {
        include!("webhook_queries.rs");
    }
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Key of the PostgreSQL advisory lock held while migrations run ("herald" in ASCII).
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64;

/// Which backend a database URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path (from `sqlite://PATH`, `sqlite:PATH` or a bare path).
    Sqlite(String),
    /// A libpq URL, passed as is.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, PersistError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            return Err(PersistError::Unavailable(format!(
                "unsupported database URL; use sqlite://FILE or postgres://... (got {})",
                url.split("://").next().unwrap_or("?")
            )));
        }
        Ok(DatabaseUrl::Sqlite(path.to_owned()))
    }
}

/// `e` with the URL's password removed from its text (see [`crate::config::scrub_url`]).
fn scrub_connection_error(e: ConnectionError, url: &str) -> ConnectionError {
    use crate::config::scrub_url;
    match e {
        ConnectionError::BadConnection(m) => ConnectionError::BadConnection(scrub_url(&m, url)),
        ConnectionError::InvalidConnectionUrl(m) => {
            ConnectionError::InvalidConnectionUrl(scrub_url(&m, url))
        }
        other => other,
    }
}

/// A connection to either backend.
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Calls the backend's copy of a `queries` function.
macro_rules! dispatch {
    ($conn:expr, $f:ident ( $($arg:expr),* )) => {
        match $conn {
            DbConnection::Sqlite(c) => sqlite::queries::$f(c $(, $arg)*),
            DbConnection::Postgres(c) => pg::queries::$f(c $(, $arg)*),
        }
    };
}

impl DbConnection {
    pub fn establish(url: &DatabaseUrl) -> Result<Self, ConnectionError> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                sqlite_planner::plan_without_bound_values();
                let mut c = SqliteConnection::establish(path)?;
                // Durable as the SPEC defines it: WAL with synchronous=FULL. busy_timeout covers
                // readers racing the single writer's checkpoints. The rest is for group commit
                // (benchmarked in docs/benchmarks.md): statement journals in memory instead of
                // temporary files, a page cache (up to 32 MiB) that holds a large batch without
                // spilling, and checkpoints every ~16 MiB of WAL instead of every 4 MiB.
                c.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                     PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY; \
                     PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 4000;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(c))
            }
            DatabaseUrl::Postgres(u) => {
                // Without a connect timeout, a stalled network would hang a pool thread forever.
                let u = if u.contains("connect_timeout") {
                    u.clone()
                } else {
                    format!(
                        "{u}{}connect_timeout=5",
                        if u.contains('?') { '&' } else { '?' }
                    )
                };
                // libpq may quote part of the URL in its error (a badly percent-encoded
                // password, say); that text reaches logs and /readyz's log line.
                let mut c =
                    PgConnection::establish(&u).map_err(|e| scrub_connection_error(e, &u))?;
                c.batch_execute("SET synchronous_commit = on")
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Postgres(c))
            }
        }
    }

    /// Applies pending migrations. On PostgreSQL under a session advisory lock: nodes of a
    /// cluster starting together take turns, and each later one finds nothing pending.
    pub fn run_migrations(&mut self) -> Result<(), PersistError> {
        let r = match self {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
            DbConnection::Postgres(c) => {
                let lock = format!("SELECT pg_advisory_lock({MIGRATION_LOCK})");
                diesel::sql_query(lock).execute(c).map_err(|e| {
                    PersistError::Unavailable(format!("migration lock not taken: {e}"))
                })?;
                let r = c.run_pending_migrations(PG_MIGRATIONS).map(|_| ());
                let unlock = format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})");
                if let Err(e) = diesel::sql_query(unlock).execute(c) {
                    // The lock ends with the session anyway; r2d2 may keep it a while.
                    log::warn!("migration lock not released: {e}");
                }
                r
            }
        };
        r.map_err(|e| PersistError::Unavailable(format!("migrations failed: {e}")))
    }

    /// True when every embedded migration has been applied.
    pub fn migrations_applied(&mut self) -> Result<bool, PersistError> {
        let r = match self {
            DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => c.has_pending_migration(PG_MIGRATIONS),
        };
        r.map(|pending| !pending)
            .map_err(|e| PersistError::Unavailable(format!("cannot read migrations: {e}")))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            DbConnection::Sqlite(_) => "sqlite",
            DbConnection::Postgres(_) => "postgres",
        }
    }

    /// Installs a Diesel instrumentation (query logging; tests count the statements
    /// prepared for the cache with it).
    pub fn set_instrumentation(&mut self, i: impl diesel::connection::Instrumentation) {
        match self {
            DbConnection::Sqlite(c) => c.set_instrumentation(i),
            DbConnection::Postgres(c) => c.set_instrumentation(i),
        }
    }
    pub fn write_batch(
        &mut self,
        groups: &[Vec<WriteOp>],
    ) -> Result<Vec<Result<Vec<WriteOutcome>, PersistError>>, PersistError> {
        Ok(self.write_batch_report(groups)?.results)
    }
    /// [`write_batch`](Self::write_batch), also telling whether the batch had to be
    /// rewritten group by group.
    pub fn write_batch_report(
        &mut self,
        groups: &[Vec<WriteOp>],
    ) -> Result<models::BatchWrite, PersistError> {
        dispatch!(self, write_batch(groups))
    }
    pub fn load_room(&mut self, room: &RoomId) -> Result<Option<RoomRecord>, PersistError> {
        dispatch!(self, load_room(room))
    }
    pub fn device_positions(
        &mut self,
        user: &UserId,
        device: &crate::domain::DeviceId,
    ) -> Result<std::collections::HashMap<RoomId, i64>, PersistError> {
        Ok(dispatch!(self, device_positions(user, device))?)
    }
    pub fn user_rooms(
        &mut self,
        user: &UserId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RoomSummary>, PersistError> {
        dispatch!(self, user_rooms(user, after, limit))
    }
    pub fn history(
        &mut self,
        room: &RoomId,
        before: Option<i64>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<StoredMessage>, bool), PersistError> {
        dispatch!(self, history(room, before, after, limit))
    }
    pub fn retained_from(&mut self, room: &RoomId) -> Result<i64, PersistError> {
        dispatch!(self, retained_from(room))
    }
    pub fn changes(
        &mut self,
        room: &RoomId,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<StoredChange>, bool), PersistError> {
        match self {
            DbConnection::Sqlite(c) => sqlite::change_queries::changes(c, room, after, limit),
            DbConnection::Postgres(c) => pg::change_queries::changes(c, room, after, limit),
        }
    }
    pub fn attach_reactions(
        &mut self,
        room: &RoomId,
        page: &mut [StoredMessage],
        viewer: &UserId,
    ) -> Result<(), PersistError> {
        match self {
            DbConnection::Sqlite(c) => {
                sqlite::change_queries::attach_reactions(c, room, page, viewer)
            }
            DbConnection::Postgres(c) => {
                pg::change_queries::attach_reactions(c, room, page, viewer)
            }
        }
    }
    pub fn message_status(
        &mut self,
        room: &RoomId,
        message_id: &str,
    ) -> Result<Option<MessageStatusRecord>, PersistError> {
        dispatch!(self, message_status(room, message_id))
    }
    pub fn co_members(
        &mut self,
        user: &UserId,
        others: &[&str],
    ) -> Result<Vec<UserId>, PersistError> {
        dispatch!(self, co_members(user, others))
    }
    pub fn notifications(
        &mut self,
        q: &NotificationQuery,
    ) -> Result<Vec<StoredNotification>, PersistError> {
        dispatch!(self, notifications(q))
    }
    pub fn notification_unread(
        &mut self,
        users: &[UserId],
        now: i64,
    ) -> Result<Vec<(UserId, i64)>, PersistError> {
        dispatch!(self, notification_unread(users, now))
    }
    pub fn held_notifications(
        &mut self,
        users: &[&str],
        now: i64,
        limit: i64,
    ) -> Result<Vec<StoredNotification>, PersistError> {
        dispatch!(self, held_notifications(users, now, limit))
    }
    pub fn preferences(
        &mut self,
        users: &[&str],
    ) -> Result<Vec<(UserId, crate::notification::Preferences)>, PersistError> {
        dispatch!(self, preferences(users))
    }
    pub fn count_user_rooms(&mut self, user: &UserId) -> Result<i64, PersistError> {
        dispatch!(self, count_user_rooms(user))
    }
    pub fn user(&mut self, id: &str) -> Result<Option<UserRecord>, PersistError> {
        dispatch!(self, user(id))
    }
    pub fn users(&mut self, ids: &[&str]) -> Result<Vec<UserRecord>, PersistError> {
        dispatch!(self, users(ids))
    }
    pub fn pending_outbox(
        &mut self,
        created_before: i64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, PersistError> {
        dispatch!(self, pending_outbox(created_before, limit))
    }
    pub fn ping(&mut self) -> Result<(), PersistError> {
        dispatch!(self, ping())
    }
    /// API keys, the audit log, exports (`admin_queries.rs`).
    pub fn admin_read(&mut self, q: &AdminRead) -> Result<AdminAnswer, PersistError> {
        match self {
            DbConnection::Sqlite(c) => sqlite::admin_queries::read(c, q),
            DbConnection::Postgres(c) => pg::admin_queries::read(c, q),
        }
    }
    /// Invitations, blocks and reports (`consent_queries.rs`).
    pub fn consent_read(&mut self, q: &ConsentRead) -> Result<ConsentAnswer, PersistError> {
        match self {
            DbConnection::Sqlite(c) => sqlite::consent_queries::read(c, q),
            DbConnection::Postgres(c) => pg::consent_queries::read(c, q),
        }
    }
    /// The webhook outbox (`webhook_queries.rs`).
    pub fn webhook_read(&mut self, q: &WebhookRead) -> Result<WebhookAnswer, PersistError> {
        match self {
            DbConnection::Sqlite(c) => sqlite::webhook_queries::read(c, q),
            DbConnection::Postgres(c) => pg::webhook_queries::read(c, q),
        }
    }
}

/// The r2d2 manager: dispatches on the URL scheme (Diesel's SQLite `establish` does not
/// understand `sqlite://`) and applies the durability settings to every new connection.
pub struct Manager {
    url: DatabaseUrl,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        DbConnection::establish(&self.url).map_err(r2d2::Error::ConnectionError)
    }

    /// Checked at each checkout. A PostgreSQL connection can die with its server or the
    /// network; a SQLite one is a file handle in this process, and the statement would only
    /// cost a parse per read (`has_broken` still drops a connection that failed).
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        match conn {
            DbConnection::Sqlite(_) => Ok(()),
            DbConnection::Postgres(c) => {
                c.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)
            }
        }
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking()
            || match conn {
                DbConnection::Sqlite(c) => c.is_broken(),
                DbConnection::Postgres(c) => c.is_broken(),
            }
    }
}

pub type DbPool = r2d2::Pool<Manager>;

/// Builds a pool without connecting: a database that is down at start-up is retried later.
pub fn build_pool(url: &str, size: u32, timeout: Duration) -> Result<DbPool, PersistError> {
    let url = DatabaseUrl::parse(url)?;
    Ok(r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .connection_timeout(timeout)
        .test_on_check_out(true)
        .build_unchecked(Manager { url }))
}

/// Runs the embedded migrations of the URL's backend.
pub fn run_migrations(url: &str) -> Result<(), PersistError> {
    let url = DatabaseUrl::parse(url)?;
    let mut c =
        DbConnection::establish(&url).map_err(|e| PersistError::Unavailable(e.to_string()))?;
    c.run_migrations()
}

/// Creates a PostgreSQL database (for test isolation); `admin_url` names an existing one.
pub fn create_pg_database(admin_url: &str, name: &str) -> Result<(), PersistError> {
    let mut c =
        PgConnection::establish(admin_url).map_err(|e| PersistError::Unavailable(e.to_string()))?;
    c.batch_execute(&format!("CREATE DATABASE \"{name}\""))?;
    Ok(())
}

/// Drops a PostgreSQL database created by [`create_pg_database`].
pub fn drop_pg_database(admin_url: &str, name: &str) -> Result<(), PersistError> {
    let mut c =
        PgConnection::establish(admin_url).map_err(|e| PersistError::Unavailable(e.to_string()))?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_dispatch_on_scheme() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://a/b.db").unwrap(),
            DatabaseUrl::Sqlite("a/b.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("herald.db").unwrap(),
            DatabaseUrl::Sqlite("herald.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/d").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
    }

    #[test]
    fn a_connection_error_never_quotes_the_password() {
        // libpq quotes a badly percent-encoded password back in its error; port 1 refuses
        // anything that gets as far as connecting.
        for url in [
            "postgres://u:s3cret%zzpw@127.0.0.1:1/db",
            "postgres://u:s3cretpw@127.0.0.1:1/db?connect_timeout=1",
        ] {
            let e = match DbConnection::establish(&DatabaseUrl::parse(url).unwrap()) {
                Ok(_) => panic!("{url} connected"),
                Err(e) => e.to_string(),
            };
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
