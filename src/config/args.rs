//! The clap flags (`CommonArgs`, `ServeArgs`) and `Settings::from_args`, which turns them into
//! [`Settings`].

use super::*;

/// Database and secret flags, shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// TOML file of settings: `key = value` per line, keys the flag names in snake_case
    /// (`replay_max = 1000`). Flags and environment variables override it.
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://FILE (default) or postgres://USER@HOST/DB.
    // hide_env_values: `--help` would otherwise print the environment's URL, password included.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// HS256 secret for JWTs (at least 32 bytes). Unset: generated once and kept in a file beside the database.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// Where the generated secret is kept (default: herald.secret beside the SQLite file, or in the working directory).
    #[arg(long, env = "HERALD_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,
    /// Token algorithm: HS256, HS384, HS512 (secret) or RS256, ES256 (public key file).
    #[arg(long, env = "HERALD_JWT_ALGORITHM", global = true)]
    pub jwt_algorithm: Option<String>,
    /// PEM public key for RS256/ES256 tokens.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY_FILE", global = true)]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "HERALD_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "HERALD_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp`/`nbf`.
    #[arg(long, env = "HERALD_JWT_LEEWAY_SECS", global = true)]
    pub jwt_leeway_secs: Option<u64>,
}

/// Flags of `herald serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Milliseconds a session has to send `auth` after its token expired.
    #[arg(long, global = true, env = "HERALD_TOKEN_GRACE_MS")]
    pub token_grace_ms: Option<u64>,
    /// Comma-separated browser origins allowed (WebSocket upgrades, CORS); empty: any.
    #[arg(
        long,
        global = true,
        env = "HERALD_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// PEM certificate chain for https/wss.
    #[arg(long, global = true, env = "HERALD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for https/wss.
    #[arg(long, global = true, env = "HERALD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Expose diagnostic endpoints (GET /v1/ws/echo).
    #[arg(
        long,
        global = true,
        env = "HERALD_DIAGNOSTICS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub diagnostics: Option<bool>,
    /// Development only: POST /v1/dev/login mints a short-lived token for any user name.
    /// Refused (turned off, with a warning) unless the server binds a loopback address.
    #[arg(
        long,
        global = true,
        env = "HERALD_DEV_LOGIN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub dev_login: Option<bool>,
    /// Deepest JSON nesting in a frame.
    #[arg(long, global = true, env = "HERALD_MAX_JSON_DEPTH")]
    pub max_json_depth: Option<usize>,
    /// Sends per second per session.
    #[arg(long, global = true, env = "HERALD_SEND_RATE")]
    pub send_rate: Option<u32>,
    /// Send burst per session.
    #[arg(long, global = true, env = "HERALD_SEND_BURST")]
    pub send_burst: Option<u32>,
    /// Presence changes per second per session.
    #[arg(long, global = true, env = "HERALD_PRESENCE_RATE")]
    pub presence_rate: Option<u32>,
    /// Presence change burst per session.
    #[arg(long, global = true, env = "HERALD_PRESENCE_BURST")]
    pub presence_burst: Option<u32>,
    /// Rate-limited frames in a row before the connection is closed (1008).
    #[arg(long, global = true, env = "HERALD_ABUSE_THRESHOLD")]
    pub abuse_threshold: Option<u32>,
    /// Rooms per user.
    #[arg(long, global = true, env = "HERALD_MAX_ROOMS_PER_USER")]
    pub max_rooms_per_user: Option<usize>,
    /// Members per room.
    #[arg(long, global = true, env = "HERALD_MAX_ROOM_MEMBERS")]
    pub max_room_members: Option<usize>,
    /// Watched users per session.
    #[arg(long, global = true, env = "HERALD_MAX_WATCH")]
    pub max_watch: Option<usize>,
    /// Concurrent sessions per user.
    #[arg(long, global = true, env = "HERALD_MAX_SESSIONS_PER_USER")]
    pub max_sessions_per_user: Option<usize>,
    /// Concurrent WebSocket connections per IP (0: unlimited).
    #[arg(long, global = true, env = "HERALD_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Devices whose stored positions are kept per user (the least recently moved go first).
    #[arg(long, global = true, env = "HERALD_MAX_DEVICES_PER_USER")]
    pub max_devices_per_user: Option<usize>,
    /// REST requests per second per IP and per token (0: unlimited).
    #[arg(long, global = true, env = "HERALD_REST_RATE")]
    pub rest_rate: Option<u32>,
    /// REST request burst per IP and per token.
    #[arg(long, global = true, env = "HERALD_REST_BURST")]
    pub rest_burst: Option<u32>,
    /// join/leave frames per second per session.
    #[arg(long, global = true, env = "HERALD_MEMBERSHIP_RATE")]
    pub membership_rate: Option<u32>,
    /// join/leave burst per session.
    #[arg(long, global = true, env = "HERALD_MEMBERSHIP_BURST")]
    pub membership_burst: Option<u32>,
    /// history frames per second per session.
    #[arg(long, global = true, env = "HERALD_HISTORY_RATE")]
    pub history_rate: Option<u32>,
    /// history burst per session.
    #[arg(long, global = true, env = "HERALD_HISTORY_BURST")]
    pub history_burst: Option<u32>,
    /// watch/unwatch frames per second per session.
    #[arg(long, global = true, env = "HERALD_WATCH_RATE")]
    pub watch_rate: Option<u32>,
    /// watch/unwatch burst per session.
    #[arg(long, global = true, env = "HERALD_WATCH_BURST")]
    pub watch_burst: Option<u32>,
    /// auth frames per second per session.
    #[arg(long, global = true, env = "HERALD_AUTH_RATE")]
    pub auth_rate: Option<u32>,
    /// auth burst per session.
    #[arg(long, global = true, env = "HERALD_AUTH_BURST")]
    pub auth_burst: Option<u32>,
    /// Other frames (typing, receipt, ping, notification socket) per second per session.
    #[arg(long, global = true, env = "HERALD_FRAME_RATE")]
    pub frame_rate: Option<u32>,
    /// Other frames burst per session.
    #[arg(long, global = true, env = "HERALD_FRAME_BURST")]
    pub frame_burst: Option<u32>,
    /// Custom `event` frames per second per session.
    #[arg(long, global = true, env = "HERALD_EVENT_RATE")]
    pub event_rate: Option<u32>,
    /// Custom `event` frames burst per session.
    #[arg(long, global = true, env = "HERALD_EVENT_BURST")]
    pub event_burst: Option<u32>,
    /// Largest `data` of a custom `event`, in bytes of JSON.
    #[arg(long, global = true, env = "HERALD_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<usize>,
    /// Most API keys a deployment keeps (revoked ones included).
    #[arg(long, global = true, env = "HERALD_MAX_API_KEYS")]
    pub max_api_keys: Option<usize>,
    /// Seconds after sending during which a sender may edit or delete a message.
    #[arg(long, global = true, env = "HERALD_EDIT_WINDOW_SECS")]
    pub edit_window_secs: Option<u64>,
    /// Most distinct emoji on one message.
    #[arg(long, global = true, env = "HERALD_MAX_REACTIONS_PER_MESSAGE")]
    pub max_reactions_per_message: Option<usize>,
    /// Longest reaction emoji, in bytes.
    #[arg(long, global = true, env = "HERALD_MAX_EMOJI_BYTES")]
    pub max_emoji_bytes: Option<usize>,
    /// Requests of one session waiting for their answer at once.
    #[arg(long, global = true, env = "HERALD_MAX_INFLIGHT")]
    pub max_inflight: Option<usize>,
    /// New connections per second per client address (0: unlimited).
    #[arg(long, global = true, env = "HERALD_CONNECT_RATE_PER_IP")]
    pub connect_rate_per_ip: Option<u32>,
    /// New connection burst per client address.
    #[arg(long, global = true, env = "HERALD_CONNECT_BURST_PER_IP")]
    pub connect_burst_per_ip: Option<u32>,
    /// New sessions per second per user (0: unlimited).
    #[arg(long, global = true, env = "HERALD_CONNECT_RATE_PER_USER")]
    pub connect_rate_per_user: Option<u32>,
    /// New session burst per user.
    #[arg(long, global = true, env = "HERALD_CONNECT_BURST_PER_USER")]
    pub connect_burst_per_user: Option<u32>,
    /// Socket.IO sessions not yet authenticated, in all.
    #[arg(long, global = true, env = "HERALD_MAX_UNAUTHENTICATED")]
    pub max_unauthenticated: Option<usize>,
    /// Socket.IO sessions not yet authenticated, per client address.
    #[arg(long, global = true, env = "HERALD_MAX_UNAUTHENTICATED_PER_IP")]
    pub max_unauthenticated_per_ip: Option<usize>,
    /// Proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client address.
    #[arg(
        long,
        global = true,
        env = "HERALD_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<crate::admission::Cidr>,
    /// Address to listen on.
    #[arg(long, global = true, env = "HERALD_BIND")]
    pub bind: Option<String>,
    /// Read pool size.
    #[arg(long, global = true, env = "HERALD_DB_POOL_SIZE")]
    pub db_pool_size: Option<u32>,
    /// Milliseconds to wait for a database connection.
    #[arg(long, global = true, env = "HERALD_DB_TIMEOUT_MS")]
    pub db_timeout_ms: Option<u64>,
    /// Milliseconds a request waits for its write to commit before `unavailable`.
    #[arg(long, global = true, env = "HERALD_DB_WRITE_TIMEOUT_MS")]
    pub db_write_timeout_ms: Option<u64>,
    /// WebSocket ping interval in milliseconds.
    #[arg(long, global = true, env = "HERALD_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Presence grace period after a user's last session closes, in milliseconds.
    #[arg(long, global = true, env = "HERALD_PRESENCE_GRACE_MS")]
    pub presence_grace_ms: Option<u64>,
    /// Milliseconds without client activity after which a user turns away (0: off).
    #[arg(long, global = true, env = "HERALD_AUTO_AWAY_MS")]
    pub auto_away_ms: Option<u64>,
    /// Allow watching any user, not only users who share a room.
    #[arg(
        long,
        global = true,
        env = "HERALD_OPEN_WATCH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub open_watch: Option<bool>,
    /// Window in which room presence changes are coalesced into one diff, in milliseconds.
    #[arg(long, global = true, env = "HERALD_PRESENCE_COALESCE_MS")]
    pub presence_coalesce_ms: Option<u64>,
    /// Typing start broadcasts allowed per user and room per second.
    #[arg(long, global = true, env = "HERALD_TYPING_RATE")]
    pub typing_rate: Option<u32>,
    /// Notify @mentioned room members.
    #[arg(long, global = true, env = "HERALD_NOTIFY_MENTIONS", value_parser = clap::builder::BoolishValueParser::new())]
    pub notify_mentions: Option<bool>,
    /// Notify recipients of direct messages who are offline.
    #[arg(long, global = true, env = "HERALD_NOTIFY_OFFLINE_DIRECT", value_parser = clap::builder::BoolishValueParser::new())]
    pub notify_offline_direct: Option<bool>,
    /// Interval of the notification expiry/release sweep, in milliseconds.
    #[arg(long, global = true, env = "HERALD_NOTIFICATION_SWEEP_MS")]
    pub notification_sweep_ms: Option<u64>,
    /// Interval of the notification outbox sweep (re-processes mention and offline-DM
    /// notifications a crash interrupted), in milliseconds.
    #[arg(long, global = true, env = "HERALD_OUTBOX_SWEEP_MS")]
    pub outbox_sweep_ms: Option<u64>,
    /// Days message bodies are kept, for every room kind (0 or unset: for ever).
    #[arg(long, global = true, env = "HERALD_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Days for public rooms (overrides HERALD_RETENTION_DAYS; 0: for ever).
    #[arg(long, global = true, env = "HERALD_RETENTION_PUBLIC_DAYS")]
    pub retention_public_days: Option<u64>,
    /// Days for private rooms (overrides HERALD_RETENTION_DAYS; 0: for ever).
    #[arg(long, global = true, env = "HERALD_RETENTION_PRIVATE_DAYS")]
    pub retention_private_days: Option<u64>,
    /// Days for direct rooms (overrides HERALD_RETENTION_DAYS; 0: for ever).
    #[arg(long, global = true, env = "HERALD_RETENTION_DIRECT_DAYS")]
    pub retention_direct_days: Option<u64>,
    /// Days read notifications are kept after being read (0 or unset: for ever).
    #[arg(long, global = true, env = "HERALD_NOTIFICATION_RETENTION_DAYS")]
    pub notification_retention_days: Option<u64>,
    /// How often the retention job runs, in milliseconds.
    #[arg(long, global = true, env = "HERALD_RETENTION_SWEEP_MS")]
    pub retention_sweep_ms: Option<u64>,
    /// Rows per transaction of the retention job.
    #[arg(long, global = true, env = "HERALD_RETENTION_BATCH")]
    pub retention_batch: Option<i64>,
    /// Socket.IO event names for clients that do not choose (`auth.events`): `herald`, or
    /// `seed` (`send_message` in, `new_message` out).
    #[arg(long, global = true, env = "HERALD_SIO_EVENTS", value_parser = ["herald", "seed"])]
    pub sio_events: Option<String>,
    /// Socket.IO (Engine.IO) ping interval in milliseconds.
    #[arg(long, global = true, env = "HERALD_SIO_PING_INTERVAL_MS")]
    pub sio_ping_interval_ms: Option<u64>,
    /// Socket.IO (Engine.IO) ping timeout in milliseconds.
    #[arg(long, global = true, env = "HERALD_SIO_PING_TIMEOUT_MS")]
    pub sio_ping_timeout_ms: Option<u64>,
    /// Socket.IO (Engine.IO) maxPayload in bytes.
    #[arg(long, global = true, env = "HERALD_SIO_MAX_PAYLOAD")]
    pub sio_max_payload: Option<usize>,
    /// Typing indicator expiry in milliseconds.
    #[arg(long, global = true, env = "HERALD_TYPING_TIMEOUT_MS")]
    pub typing_timeout_ms: Option<u64>,
    /// Frames queued per session before it is closed as a slow consumer.
    #[arg(long, global = true, env = "HERALD_OUTBOX_FRAMES")]
    pub outbox_frames: Option<usize>,
    /// Bytes queued per connection before it is closed as a slow consumer (4008).
    #[arg(long, global = true, env = "HERALD_OUTBOX_BYTES")]
    pub outbox_bytes: Option<usize>,
    /// Bytes of frames waiting for one HTTP worker thread to queue them for its sessions.
    #[arg(long, global = true, env = "HERALD_WORKER_INBOX_BYTES")]
    pub worker_inbox_bytes: Option<usize>,
    /// Milliseconds queued bytes may wait for the peer before the connection is dropped.
    #[arg(long, global = true, env = "HERALD_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    /// Milliseconds allowed for each stage before authentication (upgrade request,
    /// Engine.IO CONNECT, upgrade probe).
    #[arg(long, global = true, env = "HERALD_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// Accept permessage-deflate (RFC 7692) when a client offers it.
    #[arg(long, global = true, env = "HERALD_WS_DEFLATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub ws_deflate: Option<bool>,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, global = true, env = "HERALD_WS_DEFLATE_THRESHOLD")]
    pub ws_deflate_threshold: Option<usize>,
    /// Keep a deflate context per connection for clients that allow it (costs memory).
    #[arg(long, global = true, env = "HERALD_WS_DEFLATE_CONTEXT_TAKEOVER", value_parser = clap::builder::BoolishValueParser::new())]
    pub ws_deflate_context_takeover: Option<bool>,
    /// zlib compression level, 1 (fastest) to 9 (smallest).
    #[arg(long, global = true, env = "HERALD_WS_DEFLATE_LEVEL")]
    pub ws_deflate_level: Option<u32>,
    /// Longest wait of a busy session's delivered frames to be written together, in ms (0: off).
    #[arg(long, global = true, env = "HERALD_WS_WRITE_GATHER_MS")]
    pub ws_write_gather_ms: Option<u64>,
    /// Largest WebSocket message in bytes.
    #[arg(long, global = true, env = "HERALD_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Largest text message body in bytes.
    #[arg(long, global = true, env = "HERALD_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Most messages returned as `missed` by a join with since_seq.
    #[arg(long, global = true, env = "HERALD_JOIN_MISSED_LIMIT")]
    pub join_missed_limit: Option<i64>,
    /// Most connected users listed in a join ack's `members` (the rest are paged).
    #[arg(long, global = true, env = "HERALD_JOIN_MEMBERS_LIMIT")]
    pub join_members_limit: Option<usize>,
    /// Most messages one room replays to a session before the rest is left out with a
    /// `replay_truncated` marker.
    #[arg(long, global = true, env = "HERALD_REPLAY_MAX")]
    pub replay_max: Option<i64>,
    /// Days after which a device's stored positions are deleted when none of them moved.
    #[arg(long, global = true, env = "HERALD_DEVICE_TTL_DAYS")]
    pub device_ttl_days: Option<u64>,
    /// How long (ms) an ended Socket.IO session can be recovered with its pid and offset;
    /// 0 disables recovery.
    #[arg(long, global = true, env = "HERALD_SIO_RECOVERY_MS")]
    pub sio_recovery_ms: Option<u64>,
    /// Most bytes of message bodies per history page or join `missed` list.
    #[arg(long, global = true, env = "HERALD_HISTORY_MAX_BYTES")]
    pub history_max_bytes: Option<usize>,
    /// Most write groups per commit batch.
    #[arg(long, global = true, env = "HERALD_COMMIT_MAX_BATCH")]
    pub commit_max_batch: Option<usize>,
    /// Least time between the starts of two commit batches, in ms (0: commit at once).
    #[arg(long, global = true, env = "HERALD_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: Option<u64>,
    /// Idle room actors stop after this many milliseconds.
    #[arg(long, global = true, env = "HERALD_ROOM_IDLE_MS")]
    pub room_idle_ms: Option<u64>,
    /// How long a room retries loading from the database before it gives up (milliseconds).
    #[arg(long, global = true, env = "HERALD_ROOM_LOAD_RETRY_MS")]
    pub room_load_retry_ms: Option<u64>,
    /// HTTP worker threads (0: one per core).
    #[arg(long, global = true, env = "HERALD_WORKERS")]
    pub workers: Option<usize>,
    /// Distinct @mentions acted on per message.
    #[arg(long, global = true, env = "HERALD_MAX_MENTIONS")]
    pub max_mentions: Option<usize>,
    /// Write groups waiting in the commit queue before writes are refused (unavailable).
    #[arg(long, global = true, env = "HERALD_COMMIT_QUEUE_MAX")]
    pub commit_queue_max: Option<usize>,
    /// Redis URL of the cluster backplane (redis://HOST:PORT/DB); set: cluster mode, which
    /// needs a PostgreSQL database_url.
    #[arg(long, global = true, env = "HERALD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// This node's id in the cluster (unset: generated at start).
    #[arg(long, global = true, env = "HERALD_NODE_ID")]
    pub node_id: Option<String>,
    /// Prefix of the cluster's Redis keys and channels.
    #[arg(long, global = true, env = "HERALD_CLUSTER_PREFIX")]
    pub cluster_prefix: Option<String>,
    /// Milliseconds after its last heartbeat at which a node counts as dead (its users go
    /// offline everywhere).
    #[arg(long, global = true, env = "HERALD_NODE_TIMEOUT_MS")]
    pub node_timeout_ms: Option<u64>,
    /// Milliseconds between a node's heartbeats.
    #[arg(long, global = true, env = "HERALD_CLUSTER_HEARTBEAT_MS")]
    pub cluster_heartbeat_ms: Option<u64>,
    /// Milliseconds a room waits for a missing message from the backplane before reading it
    /// from the database.
    #[arg(long, global = true, env = "HERALD_CLUSTER_GAP_MS")]
    pub cluster_gap_ms: Option<u64>,
    /// Let several nodes listen on the same port (SO_REUSEPORT); cluster mode only.
    #[arg(
        long,
        global = true,
        env = "HERALD_REUSE_PORT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub reuse_port: Option<bool>,
    /// Invitations, blocks, reports and the DM policy (`config/consent.rs`).
    #[command(flatten)]
    pub consent: super::consent::ConsentArgs,
    /// Webhook endpoints and limits (`config/webhooks.rs`).
    #[command(flatten)]
    pub webhooks: super::webhooks::WebhookArgs,
}

impl Settings {
    /// The settings the parsed flags, environment and config file name; whatever none of
    /// them set keeps its value from [`Settings::default`], the one place defaults are
    /// written. Out-of-range values are raised (or lowered) to the nearest sane one.
    /// `serve` is `None` for commands that only read the database and token settings.
    pub fn from_args(common: &CommonArgs, serve: Option<&ServeArgs>) -> Self {
        let ms = Duration::from_millis;
        let mut s = Settings::default();
        let c = common;
        if let Some(url) = &c.database_url {
            s.database_url = Secret::new(url.clone());
        }
        s.jwt_secret = c.jwt_secret.clone().map(Secret::new);
        s.jwt_secret_file = c.jwt_secret_file.clone();
        if let Some(alg) = &c.jwt_algorithm {
            s.auth.algorithm = alg.to_ascii_uppercase();
        }
        s.auth.public_key_file = c.jwt_public_key_file.clone();
        s.auth.issuer = c.jwt_issuer.clone();
        s.auth.audience = c.jwt_audience.clone();
        s.auth.leeway = c.jwt_leeway_secs.map_or(s.auth.leeway, Duration::from_secs);
        let Some(a) = serve else {
            return s;
        };
        if let Some(bind) = &a.bind {
            s.bind = bind.clone();
        }
        s.auth.refresh_grace = a.token_grace_ms.map_or(s.auth.refresh_grace, ms);
        s.allowed_origins = a
            .allowed_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        s.trusted_proxies = a.trusted_proxies.clone();
        s.tls_cert = a.tls_cert.clone();
        s.tls_key = a.tls_key.clone();
        s.diagnostics = a.diagnostics.unwrap_or(s.diagnostics);
        s.dev_login = a.dev_login.unwrap_or(s.dev_login);

        let l = &mut s.limits;
        l.max_json_depth = a.max_json_depth.map_or(l.max_json_depth, |v| v.max(2));
        l.send_rate = a.send_rate.map_or(l.send_rate, |v| v.max(1));
        l.send_burst = a.send_burst.map_or(l.send_burst, |v| v.max(1));
        l.presence_rate = a.presence_rate.map_or(l.presence_rate, |v| v.max(1));
        l.presence_burst = a.presence_burst.map_or(l.presence_burst, |v| v.max(1));
        l.abuse_threshold = a.abuse_threshold.map_or(l.abuse_threshold, |v| v.max(1));
        l.max_rooms_per_user = a
            .max_rooms_per_user
            .map_or(l.max_rooms_per_user, |v| v.max(1));
        l.max_room_members = a.max_room_members.map_or(l.max_room_members, |v| v.max(2));
        l.max_watch = a.max_watch.map_or(l.max_watch, |v| v.max(1));
        l.max_sessions_per_user = a
            .max_sessions_per_user
            .map_or(l.max_sessions_per_user, |v| v.max(1));
        l.max_connections_per_ip = a.max_connections_per_ip.unwrap_or(l.max_connections_per_ip);
        l.max_devices_per_user = a
            .max_devices_per_user
            .map_or(l.max_devices_per_user, |v| v.clamp(1, 10_000));
        l.rest_rate = a.rest_rate.unwrap_or(l.rest_rate);
        l.rest_burst = a.rest_burst.map_or(l.rest_burst, |v| v.max(1));
        l.membership_rate = a.membership_rate.map_or(l.membership_rate, |v| v.max(1));
        l.membership_burst = a.membership_burst.map_or(l.membership_burst, |v| v.max(1));
        l.history_rate = a.history_rate.map_or(l.history_rate, |v| v.max(1));
        l.history_burst = a.history_burst.map_or(l.history_burst, |v| v.max(1));
        l.watch_rate = a.watch_rate.map_or(l.watch_rate, |v| v.max(1));
        l.watch_burst = a.watch_burst.map_or(l.watch_burst, |v| v.max(1));
        l.auth_rate = a.auth_rate.map_or(l.auth_rate, |v| v.max(1));
        l.auth_burst = a.auth_burst.map_or(l.auth_burst, |v| v.max(1));
        l.frame_rate = a.frame_rate.map_or(l.frame_rate, |v| v.max(1));
        l.frame_burst = a.frame_burst.map_or(l.frame_burst, |v| v.max(1));
        l.event_rate = a.event_rate.map_or(l.event_rate, |v| v.max(1));
        l.event_burst = a.event_burst.map_or(l.event_burst, |v| v.max(1));
        l.max_event_bytes = a.max_event_bytes.map_or(l.max_event_bytes, |v| v.max(2));
        l.max_api_keys = a.max_api_keys.map_or(l.max_api_keys, |v| v.max(1));
        l.edit_window = a
            .edit_window_secs
            .map_or(l.edit_window, std::time::Duration::from_secs);
        l.max_reactions_per_message = a
            .max_reactions_per_message
            .map_or(l.max_reactions_per_message, |v| v.max(1));
        l.max_emoji_bytes = a.max_emoji_bytes.map_or(l.max_emoji_bytes, |v| v.max(1));
        l.max_inflight = a.max_inflight.map_or(l.max_inflight, |v| v.max(1));
        l.connect_rate_per_ip = a.connect_rate_per_ip.unwrap_or(l.connect_rate_per_ip);
        l.connect_burst_per_ip = a
            .connect_burst_per_ip
            .map_or(l.connect_burst_per_ip, |v| v.max(1));
        l.connect_rate_per_user = a.connect_rate_per_user.unwrap_or(l.connect_rate_per_user);
        l.connect_burst_per_user = a
            .connect_burst_per_user
            .map_or(l.connect_burst_per_user, |v| v.max(1));
        l.max_unauthenticated = a
            .max_unauthenticated
            .map_or(l.max_unauthenticated, |v| v.max(1));
        l.max_unauthenticated_per_ip = a
            .max_unauthenticated_per_ip
            .map_or(l.max_unauthenticated_per_ip, |v| v.max(1));

        s.db_pool_size = a.db_pool_size.map_or(s.db_pool_size, |v| v.max(1));
        s.db_timeout = a.db_timeout_ms.map_or(s.db_timeout, |v| ms(v.max(100)));
        s.db_write_timeout = a
            .db_write_timeout_ms
            .map_or(s.db_write_timeout, |v| ms(v.max(100)));
        s.heartbeat_interval = a
            .heartbeat_ms
            .map_or(s.heartbeat_interval, |v| ms(v.max(100)));
        s.presence_grace = a.presence_grace_ms.map_or(s.presence_grace, ms);
        // The sweep ends grace periods: its interval is what a leave waits beyond the grace.
        s.presence_sweep = (s.presence_grace / 4).clamp(ms(20), ms(50));
        if let Some(v) = a.auto_away_ms {
            s.auto_away = (v > 0).then(|| ms(v));
        }
        s.open_watch = a.open_watch.unwrap_or(s.open_watch);
        s.presence_coalesce = a.presence_coalesce_ms.map_or(s.presence_coalesce, ms);
        s.typing_rate = a.typing_rate.map_or(s.typing_rate, |v| v.max(1));
        if let Some(v) = a
            .sio_events
            .as_deref()
            .and_then(crate::socketio::Vocabulary::parse)
        {
            s.sio_events = v;
        }
        s.sio_ping_interval = a
            .sio_ping_interval_ms
            .map_or(s.sio_ping_interval, |v| ms(v.max(100)));
        s.sio_ping_timeout = a
            .sio_ping_timeout_ms
            .map_or(s.sio_ping_timeout, |v| ms(v.max(100)));
        s.sio_max_payload = a.sio_max_payload.map_or(s.sio_max_payload, |v| v.max(1024));
        s.notify_mentions = a.notify_mentions.unwrap_or(s.notify_mentions);
        s.notify_offline_direct = a.notify_offline_direct.unwrap_or(s.notify_offline_direct);
        s.notification_sweep = a
            .notification_sweep_ms
            .map_or(s.notification_sweep, |v| ms(v.max(100)));
        s.outbox_sweep = a.outbox_sweep_ms.map_or(s.outbox_sweep, |v| ms(v.max(100)));
        s.typing_timeout = a
            .typing_timeout_ms
            .map_or(s.typing_timeout, |v| ms(v.max(100)));
        s.outbox_frames = a.outbox_frames.map_or(s.outbox_frames, |v| v.max(1));
        s.outbox_bytes = a.outbox_bytes.map_or(s.outbox_bytes, |v| v.max(64 * 1024));
        s.worker_inbox_bytes = a
            .worker_inbox_bytes
            .map_or(s.worker_inbox_bytes, |v| v.max(1024 * 1024));
        s.write_timeout = a
            .write_timeout_ms
            .map_or(s.write_timeout, |v| ms(v.max(100)));
        s.handshake_timeout = a
            .handshake_timeout_ms
            .map_or(s.handshake_timeout, |v| ms(v.max(100)));
        s.max_frame_bytes = a.max_frame_bytes.map_or(s.max_frame_bytes, |v| v.max(1024));
        s.ws_deflate.enabled = a.ws_deflate.unwrap_or(s.ws_deflate.enabled);
        s.ws_deflate.threshold = a.ws_deflate_threshold.unwrap_or(s.ws_deflate.threshold);
        s.ws_deflate.context_takeover = a
            .ws_deflate_context_takeover
            .unwrap_or(s.ws_deflate.context_takeover);
        s.ws_deflate.level = a
            .ws_deflate_level
            .map_or(s.ws_deflate.level, |v| v.clamp(1, 9));
        s.ws_write_gather = a
            .ws_write_gather_ms
            .map_or(s.ws_write_gather, |v| ms(v.min(1000)));
        s.max_text_bytes = a.max_text_bytes.map_or(s.max_text_bytes, |v| v.max(1));
        s.join_missed_limit = a
            .join_missed_limit
            .map_or(s.join_missed_limit, |v| v.clamp(0, 1000));
        s.join_members_limit = a.join_members_limit.map_or(s.join_members_limit, |v| {
            v.clamp(1, crate::protocol::MEMBERS_MAX_LIMIT)
        });
        s.replay_max = a.replay_max.map_or(s.replay_max, |v| v.clamp(1, 1_000_000));
        s.device_ttl = a.device_ttl_days.map_or(s.device_ttl, |v| {
            Duration::from_secs(v.clamp(1, 3650) * DAY_SECS)
        });
        s.sio_recovery_window = a
            .sio_recovery_ms
            .map_or(s.sio_recovery_window, |v| ms(v.min(DAY_SECS * 1000)));
        s.history_max_bytes = a
            .history_max_bytes
            .map_or(s.history_max_bytes, |v| v.max(64 * 1024));
        s.commit_max_batch = a.commit_max_batch.map_or(s.commit_max_batch, |v| v.max(1));
        s.commit_interval = a
            .commit_interval_ms
            .map_or(s.commit_interval, |v| ms(v.min(100)));
        s.room_idle = a.room_idle_ms.map_or(s.room_idle, ms);
        s.room_load_retry = a.room_load_retry_ms.map_or(s.room_load_retry, ms);
        s.workers = a.workers.unwrap_or(s.workers);
        s.costs.max_mentions = a.max_mentions.unwrap_or(s.costs.max_mentions);
        s.costs.commit_queue_max = a
            .commit_queue_max
            .map_or(s.costs.commit_queue_max, |v| v.max(1));
        s.redis_url = a
            .redis_url
            .clone()
            .filter(|u| !u.is_empty())
            .map(Secret::new);
        let c = &mut s.cluster;
        if let Some(id) = &a.node_id {
            c.node_id = id.clone();
        }
        if let Some(p) = &a.cluster_prefix {
            c.prefix = p.clone();
        }
        c.node_timeout = a
            .node_timeout_ms
            .map_or(c.node_timeout, |v| ms(v.max(1000)));
        c.heartbeat = a
            .cluster_heartbeat_ms
            .map_or(c.heartbeat, |v| ms(v.max(100)));
        c.gap_timeout = a.cluster_gap_ms.map_or(c.gap_timeout, ms);
        s.reuse_port = a.reuse_port.unwrap_or(s.reuse_port);
        a.consent.apply(&mut s.consent);
        a.webhooks.apply(&mut s.webhooks);
        s
    }

    /// How long a session's client may be silent and still count as answering (for "is the
    /// recipient online?" decisions): one ping interval plus half of one as slack for the
    /// pong's round trip and a late timer, i.e. 1.5 × the longer of the native heartbeat and
    /// the Socket.IO ping interval (37.5 s by default). A healthy idle client is heard at
    /// least once per interval; the heartbeat drops a silent one only after two.
    pub fn answering_window(&self) -> Duration {
        self.heartbeat_interval.max(self.sio_ping_interval) * 3 / 2
    }

    /// Where the generated JWT secret lives: the configured file, else `herald.secret` beside
    /// the SQLite database, else in the working directory.
    pub fn secret_file_path(&self) -> PathBuf {
        if let Some(p) = &self.jwt_secret_file {
            return p.clone();
        }
        match crate::db::DatabaseUrl::parse(self.database_url.expose()) {
            Ok(crate::db::DatabaseUrl::Sqlite(path)) => {
                let parent = Path::new(&path)
                    .parent()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_default();
                parent.join("herald.secret")
            }
            _ => PathBuf::from("herald.secret"),
        }
    }
}
