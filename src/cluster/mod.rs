//! Cluster mode: several Herald nodes sharing one PostgreSQL database and a Redis backplane
//! (docs/cluster.md). On when `HERALD_REDIS_URL` is set; without it nothing here runs and
//! Herald is the single node it always was.
//!
//! What lives where:
//! - `backplane.rs`: the [`Backplane`] actor, the only code that talks to Redis
//!   (publishing, subscriptions, heartbeats, dead-node cleanup).
//! - `wire.rs`: channel names and the events nodes exchange.
//! - `reorder.rs`: a room's per-seq reorder buffer (messages from several nodes arrive in
//!   any order; clients see them in seq order).
//! - `presence.rs`: the other nodes' presence entries, kept by the presence registry.
//!
//! [`Cluster`] is the handle the rest of the engine holds: in single-node mode it is
//! `Cluster::single()` and every publish is a no-op.

pub mod backplane;
pub mod presence;
pub mod reorder;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

pub use backplane::Backplane;
use backplane::{PublishCluster, PublishRoom};
use wire::{ClusterEvent, RoomEnvelope, RoomEvent};

use crate::config::Settings;
use crate::domain::RoomId;

/// Why cluster mode cannot start with these settings.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "HERALD_REDIS_URL is set but HERALD_DATABASE_URL is SQLite: cluster mode needs a \
         PostgreSQL database shared by every node (postgres://...)"
    )]
    NeedsPostgres,
    #[error("HERALD_REUSE_PORT needs cluster mode (HERALD_REDIS_URL): one node alone cannot share its port")]
    ReusePortWithoutCluster,
    #[error("HERALD_REDIS_URL: {0}")]
    RedisUrl(String),
    #[error("HERALD_NODE_ID {0:?}: 1..=64 characters of [A-Za-z0-9_.-]")]
    NodeId(String),
}

/// The Redis client of cluster mode, or `None` on a single node; checks the settings that
/// only make sense together and fills in a generated node id.
pub fn client_for(settings: &mut Settings) -> Result<Option<redis::Client>, ClusterError> {
    let Some(url) = settings.redis_url.as_ref() else {
        if settings.reuse_port {
            return Err(ClusterError::ReusePortWithoutCluster);
        }
        return Ok(None);
    };
    if !matches!(
        crate::db::DatabaseUrl::parse(settings.database_url.expose()),
        Ok(crate::db::DatabaseUrl::Postgres(_))
    ) {
        return Err(ClusterError::NeedsPostgres);
    }
    let client = redis::Client::open(url.expose()).map_err(|e| {
        ClusterError::RedisUrl(crate::config::scrub_url(&e.to_string(), url.expose()))
    })?;
    let c = &mut settings.cluster;
    if c.node_id.is_empty() {
        c.node_id = generate_node_id();
    }
    let ok = c.node_id.len() <= 64
        && c.node_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'));
    if !ok || c.node_id.is_empty() {
        return Err(ClusterError::NodeId(c.node_id.clone()));
    }
    Ok(Some(client))
}

/// Settings of cluster mode (`HERALD_REDIS_URL` and friends).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node's name, unique in the cluster; also the prefix of its session ids.
    pub node_id: String,
    /// Prefix of every Redis key and channel (several clusters can share one Redis).
    pub prefix: String,
    /// How often the node refreshes its heartbeat and checks the others'.
    pub heartbeat: Duration,
    /// A node whose heartbeat is this old is dead: its users go offline everywhere.
    pub node_timeout: Duration,
    /// How long a room waits for a missing seq from the backplane before it reads it from
    /// the database.
    pub gap_timeout: Duration,
    /// Most events waiting to be published; more are dropped (and counted).
    pub publish_queue: usize,
    /// Connect and response timeout of Redis commands.
    pub redis_timeout: Duration,
    /// Fault injection for tests (no flag, no variable): drop every Nth message event this
    /// node publishes, as a lossy backplane would; 0 drops nothing.
    pub drop_message_events_every: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: String::new(),
            prefix: "herald".to_owned(),
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(10),
            gap_timeout: Duration::from_millis(100),
            publish_queue: 100_000,
            redis_timeout: Duration::from_secs(2),
            drop_message_events_every: 0,
        }
    }
}

/// A generated node id: short, readable in logs, unique enough for a cluster.
pub fn generate_node_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("node-{}", &u[..8])
}

/// The engine's handle on cluster mode.
#[derive(Clone, Default)]
pub struct Cluster {
    inner: Option<Arc<ClusterInner>>,
}

struct ClusterInner {
    settings: ClusterSettings,
    backplane: Addr<Backplane>,
}

impl Cluster {
    /// Single-node mode: nothing is published.
    pub fn single() -> Self {
        Cluster { inner: None }
    }

    pub fn new(settings: ClusterSettings, backplane: Addr<Backplane>) -> Self {
        Cluster {
            inner: Some(Arc::new(ClusterInner {
                settings,
                backplane,
            })),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// This node's id (`None` on a single node).
    pub fn node_id(&self) -> Option<&str> {
        self.inner.as_deref().map(|i| i.settings.node_id.as_str())
    }

    pub fn settings(&self) -> Option<&ClusterSettings> {
        self.inner.as_deref().map(|i| &i.settings)
    }

    pub fn backplane(&self) -> Option<&Addr<Backplane>> {
        self.inner.as_deref().map(|i| &i.backplane)
    }

    /// Tells the other nodes running `room` about `event`.
    pub fn publish_room(&self, room: &RoomId, event: RoomEvent) {
        if let Some(i) = &self.inner {
            i.backplane.do_send(PublishRoom(RoomEnvelope {
                node: i.settings.node_id.clone(),
                room: room.clone(),
                event,
            }));
        }
    }

    /// Tells every other node about `event`.
    pub fn publish(&self, event: ClusterEvent) {
        if let Some(i) = &self.inner {
            i.backplane.do_send(PublishCluster(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn settings(db: &str, redis: Option<&str>) -> Settings {
        Settings {
            database_url: Secret::new(db),
            redis_url: redis.map(Secret::new),
            ..Settings::default()
        }
    }

    #[test]
    fn sqlite_with_redis_is_refused() {
        let mut s = settings("sqlite://herald.db", Some("redis://127.0.0.1:6379"));
        let e = client_for(&mut s).unwrap_err();
        assert!(matches!(e, ClusterError::NeedsPostgres), "{e}");
        assert!(e.to_string().contains("PostgreSQL"), "{e}");
    }

    #[test]
    fn reuse_port_without_cluster_mode_is_refused() {
        let mut s = settings("sqlite://herald.db", None);
        s.reuse_port = true;
        assert!(matches!(
            client_for(&mut s),
            Err(ClusterError::ReusePortWithoutCluster)
        ));
    }

    #[test]
    fn a_single_node_has_no_client_and_a_cluster_node_gets_an_id() {
        let mut s = settings("sqlite://herald.db", None);
        assert!(client_for(&mut s).unwrap().is_none());
        let mut s = settings("postgres://u@h/db", Some("redis://127.0.0.1:6379"));
        assert!(client_for(&mut s).unwrap().is_some());
        assert!(
            s.cluster.node_id.starts_with("node-"),
            "{}",
            s.cluster.node_id
        );
        let mut s = settings("postgres://u@h/db", Some("redis://127.0.0.1:6379"));
        s.cluster.node_id = "bad id!".into();
        assert!(matches!(client_for(&mut s), Err(ClusterError::NodeId(_))));
    }

    #[test]
    fn a_bad_redis_url_is_refused_without_its_password() {
        let mut s = settings("postgres://u@h/db", Some("nope://:s3cretpw@h"));
        let e = client_for(&mut s).unwrap_err().to_string();
        assert!(!e.contains("s3cretpw"), "{e}");
    }
}
