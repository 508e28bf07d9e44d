//! Settings: every tunable of the server, read from `HERALD_*` environment variables and CLI
//! flags (docs/configuration.md lists them all), with defaults that run out of the box.
//!
//! Tests build a [`Settings`] value directly (`Settings::default()` plus field changes)
//! instead of touching the environment.
//!
//! This file holds [`Settings`] and its sub-structs with their defaults. The rest lives by
//! concern: `secret` (secrets and URL redaction), `args` (the clap flags and
//! [`Settings::from_args`]), `file` (the TOML config file and precedence), `show`
//! (`herald config` and the defaults in `--help`), `hooks` (test pauses).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::clock::{Clock, SystemClock};

mod args;
mod consent;
mod file;
mod hooks;
mod secret;
mod show;
#[cfg(test)]
mod tests;
mod webhooks;

pub use args::{CommonArgs, ServeArgs};
pub use consent::{ConsentArgs, ConsentSettings, DmPolicy};
pub use file::{load, setting_keys, ConfigError, ConfigFile, LoadError, Loaded, Origin};
pub use hooks::{Hook, HookFn, Hooks};
pub use secret::{redact_url, scrub_url, Secret, MIN_SECRET_LEN};
pub use show::{render, with_default_help};
pub use webhooks::{webhook_url, WebhookArgs, WebhookEndpoint, WebhookSettings};

const DAY_SECS: u64 = 24 * 3600;

/// All settings of one server process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub bind: String,
    /// `sqlite://path`, a plain path, or `postgres://...`.
    pub database_url: Secret,
    /// Connections in the read pool (the writer holds one more).
    pub db_pool_size: u32,
    /// How long to wait for a pooled connection before answering `unavailable`.
    pub db_timeout: Duration,
    /// How long a request waits for its write to commit before it gets `unavailable`.
    pub db_write_timeout: Duration,
    /// HS256 secret; `None` means "use or create the secret file".
    pub jwt_secret: Option<Secret>,
    /// Where the generated secret is kept when `jwt_secret` is not set.
    pub jwt_secret_file: Option<PathBuf>,
    /// Interval of WebSocket pings; a client silent for two intervals is dropped.
    pub heartbeat_interval: Duration,
    /// How long a user stays online after their last session closed (no flapping on reconnect).
    pub presence_grace: Duration,
    /// How often presence deadlines (grace, idle, status expiry) are checked.
    pub presence_sweep: Duration,
    /// Users with no client activity on any device for this long turn `away` (None: never).
    pub auto_away: Option<Duration>,
    /// Let anyone `watch` anyone (otherwise only users who share a room).
    pub open_watch: bool,
    /// `room_presence` changes are collected per room for this long and sent as one diff.
    pub presence_coalesce: Duration,
    /// Most `typing` start broadcasts per user and room per second; extra ones are dropped.
    pub typing_rate: u32,
    /// Notify `@mentioned` room members (type `mention`).
    pub notify_mentions: bool,
    /// Notify the recipient of a direct message who has no online session (type `message`).
    pub notify_offline_direct: bool,
    /// How often expired notifications are deleted and held ones released.
    pub notification_sweep: Duration,
    /// How often the notification outbox is swept: messages stored but whose mention or
    /// offline-DM notifications were never processed (a crash between the two commits) are
    /// processed again. Also the minimum age (at least 1 s) of a row the sweep takes, so
    /// messages being processed right now are left alone.
    pub outbox_sweep: Duration,
    /// Engine.IO `pingInterval` of Socket.IO connections.
    pub sio_ping_interval: Duration,
    /// Retention of message bodies and read notifications (docs/protocol.md "Retention").
    pub retention: Retention,
    /// The Socket.IO event names clients speak unless their CONNECT `auth.events` says.
    pub sio_events: crate::socketio::Vocabulary,
    /// Engine.IO `pingTimeout`: a client that does not answer a ping within it is dropped.
    pub sio_ping_timeout: Duration,
    /// Engine.IO `maxPayload`: largest polling request body / WebSocket message, in bytes.
    pub sio_max_payload: usize,
    /// Abuse limits (docs/configuration.md lists defaults).
    pub limits: Limits,
    /// Token verification beyond the secret.
    pub auth: AuthSettings,
    /// Browser origins allowed to open WebSockets and call REST (CORS); empty allows any.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client address for per-address limits.
    pub trusted_proxies: Vec<crate::admission::Cidr>,
    /// PEM certificate chain and private key: serve https/wss with rustls.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Expose diagnostic endpoints (`GET /v1/ws/echo`, for RFC 6455 conformance suites).
    pub diagnostics: bool,
    /// Development only: `POST /v1/dev/login` mints a token for any user name, so the demo
    /// page at `/` can be tried without a token issuer. Start-up turns it off (with a
    /// warning) unless `bind` is a loopback address.
    pub dev_login: bool,
    /// Time source for presence decisions (tests substitute a manual clock).
    pub clock: Arc<dyn Clock>,
    /// A `typing` `start` without `stop` ends by itself after this long.
    pub typing_timeout: Duration,
    /// Frames a session may have queued before it counts as a slow consumer and is closed.
    pub outbox_frames: usize,
    /// Bytes of encoded frames queued for one connection's socket before it counts as a slow
    /// consumer and is closed with 4008.
    pub outbox_bytes: usize,
    /// Bytes of frames (and their batches) rooms have handed to one HTTP worker thread that
    /// it has not yet queued for its sessions; past it, new frames for its sessions are
    /// dropped and their messages caught up from the database.
    pub worker_inbox_bytes: usize,
    /// How long queued bytes may wait without the peer taking any of them before the
    /// connection is dropped.
    pub write_timeout: Duration,
    /// Deadline of each stage before authentication: the request before the upgrade, the
    /// Engine.IO CONNECT, an upgrade probe's first packet.
    pub handshake_timeout: Duration,
    /// Largest WebSocket message accepted (after reassembling fragments).
    pub max_frame_bytes: usize,
    /// permessage-deflate on WebSockets (docs/configuration.md, "Compression").
    pub ws_deflate: crate::ws_deflate::DeflateSettings,
    /// Longest wait of a busy session's delivered frames for its worker's release, so they
    /// are taken in one turn and written together (`actors::session::inbox`).
    pub ws_write_gather: Duration,
    /// Largest `text` of a text message, and the bound (plus 1 KiB) of any message body.
    pub max_text_bytes: usize,
    /// Most messages a `join` with `since_seq` returns in `missed`, and the size of one
    /// replay page.
    pub join_missed_limit: i64,
    /// Most connected users a `join` ack lists in `members`; the rest are paged with the
    /// `members` request (`protocol::MEMBERS_MAX_LIMIT` at most).
    pub join_members_limit: usize,
    /// Most messages one room replays to a session (at connect, after a join, or after the
    /// session fell behind); an older backlog is left out with a `replay_truncated` marker.
    pub replay_max: i64,
    /// Test-only pauses inside the engine (see [`Hooks`]); none in production.
    pub hooks: Hooks,
    /// A device's stored positions are deleted once none has moved for this long.
    pub device_ttl: Duration,
    /// How long an ended Socket.IO session can be recovered (`pid` and offset); 0 disables.
    pub sio_recovery_window: Duration,
    /// Most bytes of message bodies in one `history` page or `missed` list; a longer page
    /// is cut and says `has_more`.
    pub history_max_bytes: usize,
    /// Most write groups one commit batch takes.
    pub commit_max_batch: usize,
    /// Least time between the starts of two commit batches: under steady traffic each fsync
    /// then carries everything that came meanwhile (group commit), at the cost of up to this
    /// much ack latency. Idle, a write commits at once.
    pub commit_interval: Duration,
    /// A room actor with no subscribers and no traffic for this long is stopped.
    pub room_idle: Duration,
    /// A room that cannot be read from the database retries (with backoff) for this long,
    /// holding the requests and subscriptions sent to it, then gives up: its sessions are
    /// unsubscribed and told (`unavailable` naming the room).
    pub room_load_retry: Duration,
    /// Cluster mode's Redis backplane; `None`: a single node.
    pub redis_url: Option<Secret>,
    /// Cluster mode's node identity and timings (used only with `redis_url`).
    pub cluster: crate::cluster::ClusterSettings,
    /// Listen with SO_REUSEPORT so several nodes share a port (cluster mode only).
    pub reuse_port: bool,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Bounds on the work one request can cause (mentions per message, queued writes).
    pub costs: CostLimits,
    /// Invitations, blocks, reports and the direct-message policy (`config/consent.rs`).
    pub consent: ConsentSettings,
    /// Webhook endpoints and the sender's limits (`config/webhooks.rs`).
    pub webhooks: WebhookSettings,
}

/// Bounds on the work a cheap request can cause on the server, so that work stays cheap.
#[derive(Debug, Clone)]
pub struct CostLimits {
    /// Distinct `@mentions` of one message acted on (notified); the rest are ignored.
    pub max_mentions: usize,
    /// Write groups the commit queue holds waiting for the writer; beyond it, writes are
    /// refused with `unavailable` and a `retry_after_ms` instead of queueing without bound.
    pub commit_queue_max: usize,
}

impl Default for CostLimits {
    fn default() -> Self {
        CostLimits {
            max_mentions: 50,
            commit_queue_max: 20_000,
        }
    }
}

/// Limits on what one client may do. Every one is a setting and documented; the defaults never
/// throttle the benchmark scenarios.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Deepest JSON nesting accepted in a frame.
    pub max_json_depth: usize,
    /// `send` frames per second per session (token bucket) and the bucket's burst.
    pub send_rate: u32,
    pub send_burst: u32,
    /// `presence` changes per second per session and burst.
    pub presence_rate: u32,
    pub presence_burst: u32,
    /// Rate-limited frames in a row after which the connection is closed with 1008.
    pub abuse_threshold: u32,
    /// Rooms one user may be a member of.
    pub max_rooms_per_user: usize,
    /// Members one room may have.
    pub max_room_members: usize,
    /// Users one session may watch.
    pub max_watch: usize,
    /// Concurrent sessions of one user.
    pub max_sessions_per_user: usize,
    /// Concurrent WebSocket connections from one IP address (0: unlimited).
    pub max_connections_per_ip: usize,
    /// Devices whose stored positions are kept per user (`device_id`); a new one beyond it
    /// evicts the least recently moved.
    pub max_devices_per_user: usize,
    /// REST requests per second per IP address and per token, and burst (0: unlimited).
    pub rest_rate: u32,
    pub rest_burst: u32,
    /// `join`/`leave` frames per second per session, and burst.
    pub membership_rate: u32,
    pub membership_burst: u32,
    /// `history` frames per second per session, and burst.
    pub history_rate: u32,
    pub history_burst: u32,
    /// `watch`/`unwatch` frames per second per session, and burst.
    pub watch_rate: u32,
    pub watch_burst: u32,
    /// `auth` frames per second per session, and burst.
    pub auth_rate: u32,
    pub auth_burst: u32,
    /// Every other frame (`typing`, `receipt`, `ping`, notification-socket frames) per
    /// second per session, and burst.
    pub frame_rate: u32,
    pub frame_burst: u32,
    /// Custom `event` frames per second per session, and burst.
    pub event_rate: u32,
    pub event_burst: u32,
    /// Largest `data` of a custom `event` (bytes of JSON).
    pub max_event_bytes: usize,
    /// Most API keys a deployment keeps (revoked ones included).
    pub max_api_keys: usize,
    /// How long after sending a sender may edit or delete their message.
    pub edit_window: Duration,
    /// Most distinct emoji on one message, and the longest emoji.
    pub max_reactions_per_message: usize,
    pub max_emoji_bytes: usize,
    /// Requests of one session waiting for their answer at once.
    pub max_inflight: usize,
    /// New connections per second per client address (IPv6 per /64), and burst (0: unlimited).
    pub connect_rate_per_ip: u32,
    pub connect_burst_per_ip: u32,
    /// New sessions per second per user, and burst (0: unlimited).
    pub connect_rate_per_user: u32,
    pub connect_burst_per_user: u32,
    /// Engine.IO sessions that have not authenticated yet, in all and per client address.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json_depth: 32,
            send_rate: 200,
            send_burst: 400,
            presence_rate: 10,
            presence_burst: 20,
            abuse_threshold: 100,
            max_rooms_per_user: 10_000,
            max_room_members: 100_000,
            max_watch: 1_000,
            max_sessions_per_user: 32,
            max_connections_per_ip: 0,
            max_devices_per_user: 50,
            rest_rate: 200,
            rest_burst: 400,
            membership_rate: 20,
            membership_burst: 100,
            history_rate: 10,
            history_burst: 20,
            watch_rate: 5,
            watch_burst: 20,
            auth_rate: 1,
            auth_burst: 5,
            frame_rate: 100,
            frame_burst: 400,
            event_rate: 20,
            event_burst: 40,
            max_event_bytes: 4096,
            max_api_keys: 1000,
            edit_window: Duration::from_secs(48 * 3600),
            max_reactions_per_message: 20,
            max_emoji_bytes: 32,
            max_inflight: 256,
            connect_rate_per_ip: 100,
            connect_burst_per_ip: 500,
            connect_rate_per_user: 5,
            connect_burst_per_user: 40,
            max_unauthenticated: 10_000,
            max_unauthenticated_per_ip: 100,
        }
    }
}

/// How tokens are verified.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// HS256, HS384 or HS512 (with the secret), RS256 or ES256 (with `public_key_file`).
    pub algorithm: String,
    /// PEM public key for RS256/ES256.
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// After a session's token expires (plus leeway), how long it has to send `auth`.
    pub refresh_grace: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            algorithm: "HS256".into(),
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
            refresh_grace: Duration::from_secs(10),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: "127.0.0.1:8080".into(),
            database_url: Secret::new("sqlite://herald.db"),
            db_pool_size: 4,
            db_timeout: Duration::from_secs(5),
            db_write_timeout: Duration::from_secs(10),
            jwt_secret: None,
            jwt_secret_file: None,
            heartbeat_interval: Duration::from_secs(25),
            presence_grace: Duration::from_secs(3),
            presence_sweep: Duration::from_millis(50),
            auto_away: None,
            open_watch: false,
            presence_coalesce: Duration::from_millis(200),
            typing_rate: 5,
            notify_mentions: true,
            notify_offline_direct: true,
            notification_sweep: Duration::from_secs(30),
            outbox_sweep: Duration::from_secs(5),
            sio_ping_interval: Duration::from_secs(25),
            sio_events: crate::socketio::Vocabulary::Herald,
            retention: Retention::default(),
            sio_ping_timeout: Duration::from_secs(20),
            sio_max_payload: 1_000_000,
            limits: Limits::default(),
            auth: AuthSettings::default(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            diagnostics: false,
            dev_login: false,
            clock: Arc::new(SystemClock),
            typing_timeout: Duration::from_secs(5),
            outbox_frames: 1024,
            outbox_bytes: 8 * 1024 * 1024,
            worker_inbox_bytes: 64 * 1024 * 1024,
            history_max_bytes: 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_frame_bytes: 1024 * 1024,
            ws_deflate: Default::default(),
            ws_write_gather: Duration::from_millis(40),
            max_text_bytes: 64 * 1024,
            join_missed_limit: 100,
            join_members_limit: 100,
            replay_max: 1000,
            hooks: Hooks::default(),
            device_ttl: Duration::from_secs(30 * DAY_SECS),
            sio_recovery_window: Duration::from_secs(120),
            commit_max_batch: 512,
            commit_interval: Duration::from_millis(5),
            room_idle: Duration::from_secs(60),
            room_load_retry: Duration::from_secs(30),
            workers: 0,
            redis_url: None,
            cluster: crate::cluster::ClusterSettings::default(),
            reuse_port: false,
            costs: CostLimits::default(),
            consent: ConsentSettings::default(),
            webhooks: WebhookSettings::default(),
        }
    }
}

/// How long message bodies and read notifications are kept (`None`: for ever).
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub public: Option<Duration>,
    pub private: Option<Duration>,
    pub direct: Option<Duration>,
    /// Read notifications, counted from when they were read.
    pub read_notifications: Option<Duration>,
    /// How often the retention job runs.
    pub sweep: Duration,
    /// Rows one transaction of the job touches (writers wait at most for one batch).
    pub batch: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            public: None,
            private: None,
            direct: None,
            read_notifications: None,
            sweep: Duration::from_secs(60),
            batch: 1000,
        }
    }
}

impl Retention {
    /// The retention of a room kind.
    pub fn of(&self, kind: crate::domain::RoomKind) -> Option<Duration> {
        match kind {
            crate::domain::RoomKind::Public => self.public,
            crate::domain::RoomKind::Private => self.private,
            crate::domain::RoomKind::Direct => self.direct,
        }
    }
}
