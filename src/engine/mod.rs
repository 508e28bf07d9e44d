//! `Engine`: the handles of the running actors, and the operations sessions, REST routes and
//! tests perform with them.
//!
//! Each operation turns a validated request into actor messages and maps the replies to
//! typed results, so the WebSocket session, the REST handlers and the testkit share one code
//! path. `Engine::start` wires the actors: the database readers and single writer on
//! `SyncArbiter`s, the commit queue, the room supervisor and the presence registry.
//!
//! Client sessions do not hold the `Engine`: they hold a [`SessionPort`] (`session_port`),
//! which offers only what a session may ask of it.
//!
//! The operations live in one file per concern, each an `impl Engine` block:
//! - `session_start`: `open_session`, the replay plan and the `sync` frame;
//! - `admission`: `admit`, `close_session`, `disconnect_user`;
//! - `requests`: `execute` (the client request dispatch) and `refresh_auth`;
//! - `messaging`: join, leave, membership, send, system messages, typing, receipts, history;
//! - `presence`: status, watch, unwatch, presence lookups;
//! - `policy`: who may see whose presence;
//! - `queries`: REST and admin reads, stats;
//! - `notifications`: notify, mark read, delete, list, preferences;
//! - `shutdown`: the graceful shutdown;
//! - `device_expiry`: the periodic expiry of device positions.
//! - `retention`: the periodic expiry of old message bodies and read notifications.

mod admin;
mod admission;
mod consent;
mod device_expiry;
mod messaging;
mod notifications;
mod policy;
mod presence;
mod queries;
mod requests;
pub mod retention;
mod session_port;
mod session_start;
mod shutdown;
mod webhooks;

pub use admin::{api_key_id, api_key_user, API_KEY_PREFIX, MAX_EXPORT_MESSAGES};
pub use consent::{report_ack, INVITATION_NOTIFICATION, MAX_LISTED_INVITATIONS};
pub use session_port::SessionPort;
pub use session_start::{sync_frame, Resume, RoomReplay, SessionStart};

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::actors::commit_queue::CommitQueue;
use crate::actors::database::Database;
use crate::actors::notification_center::NotificationCenter;
use crate::actors::presence_registry::{PresencePolicy, PresenceRegistry};
use crate::actors::room_supervisor::{
    AttachOnlineLookup, AttachPresence, RoomSupervisor, SweepOutbox,
};
use crate::auth::JwtKeys;
use crate::cluster::backplane::AttachCluster;
use crate::cluster::{Backplane, Cluster};
use crate::config::Settings;
use crate::db::DbPool;
use crate::error::{EngineError, PersistError};

// Defined beside the actors (core actors must not import the engine); re-exported here.
pub use crate::actors::store::Store;

/// Handles to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    /// Cluster mode's backplane handle (`Cluster::single()` on one node).
    pub cluster: Cluster,
    pub rooms: Addr<RoomSupervisor>,
    pub presence: Addr<PresenceRegistry>,
    pub notifications: Addr<NotificationCenter>,
    /// Engine.IO session ids of Socket.IO clients.
    pub eio: Addr<crate::actors::eio_registry::EioRegistry>,
    pub store: Store,
    pub settings: Arc<Settings>,
    pub keys: Arc<JwtKeys>,
    /// Rates of new connections per client address and per user.
    pub gate: Arc<crate::admission::ConnectGate>,
    pub started_at: Instant,
    /// The cached `/readyz` answer, shared by all HTTP workers.
    pub readiness: Arc<crate::readiness::Readiness>,
}

/// A persistence actor's reply (mailbox and persistence errors alike) as an engine result.
fn persist<T>(r: Result<Result<T, PersistError>, MailboxError>) -> Result<T, EngineError> {
    // A persistence failure was logged by the database actor; a mailbox error means the
    // actor itself is gone, which nothing else reports.
    let r = r.inspect_err(|e| log::warn!("persistence actor unavailable: {e}"));
    Ok(r.map_err(PersistError::from).and_then(|r| r)?)
}

impl Engine {
    /// Starts every actor in the current actix system.
    /// A single node (no backplane).
    pub fn start(settings: Settings, pool: DbPool, keys: JwtKeys) -> Engine {
        Engine::start_with(settings, pool, keys, None)
    }

    /// With `redis` (cluster mode), the node joins the backplane (see [`crate::cluster`]).
    pub fn start_with(
        settings: Settings,
        pool: DbPool,
        keys: JwtKeys,
        redis: Option<redis::Client>,
    ) -> Engine {
        let cluster = match redis {
            Some(client) => {
                let backplane = Backplane::new(settings.cluster.clone(), client).start();
                Cluster::new(settings.cluster.clone(), backplane)
            }
            None => Cluster::single(),
        };
        let readers = settings.db_pool_size.max(1) as usize;
        let read_pool = pool.clone();
        let reader = SyncArbiter::start(readers, move || Database::new(read_pool.clone()));
        let writer = SyncArbiter::start(1, move || Database::new(pool.clone()));
        let commits = CommitQueue::new(
            writer,
            settings.commit_max_batch,
            settings.costs.commit_queue_max,
            settings.commit_interval,
        )
        .start();
        let store = Store {
            reader,
            commits,
            write_timeout: settings.db_write_timeout,
            commit_interval: settings.commit_interval,
            webhooks: crate::webhook::WebhookTopics::new(&settings.webhooks),
        };
        if !settings.webhooks.endpoints.is_empty() {
            crate::actors::webhook_sender::WebhookSender::new(
                store.clone(),
                settings.webhooks.clone(),
            )
            .start();
        }
        let notifications = NotificationCenter::new(
            store.clone(),
            settings.clock.clone(),
            settings.notification_sweep,
            cluster.clone(),
        )
        .start();
        let rooms = RoomSupervisor::new(
            store.clone(),
            crate::actors::room::RoomPolicy {
                typing_timeout: settings.typing_timeout,
                typing_rate: settings.typing_rate,
                presence_coalesce: settings.presence_coalesce,
                max_room_members: settings.limits.max_room_members,
                max_rooms_per_user: settings.limits.max_rooms_per_user,
                load_retry: settings.room_load_retry,
                max_devices_per_user: settings.limits.max_devices_per_user as i64,
                edit_window: settings.limits.edit_window,
                max_reactions_per_message: settings.limits.max_reactions_per_message,
            },
            settings.room_idle,
            crate::actors::room::MessageNotifier {
                center: notifications.clone().recipient(),
                mentions: settings.notify_mentions,
                offline_direct: settings.notify_offline_direct,
                max_mentions: settings.costs.max_mentions,
                answering_window: settings.answering_window(),
            },
            settings.outbox_sweep,
            cluster.clone(),
        )
        .start();
        let presence = PresenceRegistry::new(
            store.clone(),
            rooms.clone(),
            cluster.clone(),
            PresencePolicy {
                grace: settings.presence_grace,
                sweep: settings.presence_sweep,
                auto_away: settings.auto_away,
                max_watch: settings.limits.max_watch,
                clock: settings.clock.clone(),
            },
        )
        .start();
        // The supervisor reports users' room changes to the registry; given now that both
        // run (the registry already holds the supervisor's address: no cycle at start).
        notifications.do_send(crate::actors::notification_center::AttachConnectivity {
            presence: presence.clone().recipient(),
        });
        rooms.do_send(AttachPresence {
            presence: presence.clone().recipient(),
        });
        if let Some(backplane) = cluster.backplane() {
            // Rooms list members connected on other nodes too (join acks, `members`).
            rooms.do_send(AttachOnlineLookup {
                lookup: presence.clone().recipient(),
            });
            backplane.do_send(AttachCluster {
                presence: presence.clone().recipient(),
                supervisor: rooms.clone().recipient(),
                notifications: notifications.clone().recipient(),
                resumed: vec![rooms.clone().recipient(), presence.clone().recipient()],
                live: presence.clone().recipient(),
            });
        }
        device_expiry::expire_device_positions(store.commits.clone(), settings.device_ttl);
        retention::start(
            store.commits.clone(),
            settings.retention.clone(),
            settings.clock.clone(),
        );
        actix::spawn(async {
            let mut tick = actix::clock::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                crate::metrics::RATES.sample();
            }
        });
        let engine = Engine {
            cluster,
            rooms,
            presence,
            notifications,
            eio: crate::actors::eio_registry::EioRegistry::new(
                settings.limits.max_unauthenticated,
                settings.limits.max_unauthenticated_per_ip,
                settings.sio_recovery_window,
            )
            .start(),
            gate: Arc::new(crate::admission::ConnectGate::new(
                crate::admission::ConnectRates {
                    per_ip: settings.limits.connect_rate_per_ip,
                    per_ip_burst: settings.limits.connect_burst_per_ip,
                    per_user: settings.limits.connect_rate_per_user,
                    per_user_burst: settings.limits.connect_burst_per_user,
                    history_per_user: settings.limits.history_rate,
                    history_per_user_burst: settings.limits.history_burst,
                },
            )),
            store,
            settings: Arc::new(settings),
            keys: Arc::new(keys),
            started_at: Instant::now(),
            readiness: Arc::default(),
        };
        engine.publish_node_stats();
        engine
    }

    /// Cluster mode: this node's figures go to the backplane every heartbeat, for the
    /// cluster view of `/v1/admin/stats` on any node.
    fn publish_node_stats(&self) {
        let (Some(backplane), Some(every)) = (
            self.cluster.backplane().cloned(),
            self.cluster.settings().map(|s| s.heartbeat),
        ) else {
            return;
        };
        let engine = self.clone();
        actix::spawn(async move {
            let mut tick = actix::clock::interval(every);
            loop {
                tick.tick().await;
                match engine.node_stats().await {
                    Ok(v) => backplane.do_send(crate::cluster::backplane::SetNodeStats(v)),
                    // The engine is stopping.
                    Err(_) => return,
                }
            }
        });
    }

    /// Re-processes the notifications a previous process left unsettled (its outbox rows),
    /// without waiting for the first periodic sweep.
    pub fn sweep_outbox_at_start(&self) {
        self.rooms.do_send(SweepOutbox {
            min_age: self.settings.outbox_sweep,
        });
    }
}
