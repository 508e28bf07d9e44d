//! `Store`: the handles of the persistence actors (the database readers and the commit
//! queue in front of the single writer), which every core actor reads and writes through.
//!
//! It lives beside the actors rather than in the engine so that the core actors (rooms, the
//! supervisor, presence, notifications) depend on persistence only, never on the engine that
//! wires them: the engine imports them, not the other way round.

use actix::Addr;

use super::commit_queue::CommitQueue;
use super::database::Database;

/// The persistence actors as the rest of the engine sees them.
#[derive(Clone)]
pub struct Store {
    /// Reader threads (reads only).
    pub reader: Addr<Database>,
    /// The group-commit front of the single writer thread.
    pub commits: Addr<CommitQueue>,
    /// How long a client waits for a commit before it is told `unavailable` (the write
    /// itself stays queued and may still complete; retries are idempotent).
    pub write_timeout: std::time::Duration,
    /// Least time between two commits of one room's messages (`HERALD_COMMIT_INTERVAL_MS`):
    /// what comes meanwhile waits and goes in the next one.
    pub commit_interval: std::time::Duration,
    /// Which webhook events have a subscribed endpoint: the sources write outbox rows only
    /// for those (docs/webhooks.md).
    pub webhooks: crate::webhook::WebhookTopics,
}
