//! Settings: every tunable of the server, read from `HERALD_*` environment variables and CLI
//! flags (docs/configuration.md lists them all), with defaults that run out of the box.
//!
//! Tests build a [`Settings`] value directly (`Settings::default()` plus field changes)
//! instead of touching the environment.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::clock::{Clock, SystemClock};

/// Shortest JWT secret accepted, in bytes (HS256 wants at least 256 bits of key).
pub const MIN_SECRET_LEN: usize = 32;

/// A secret whose `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `url` with its password replaced by `***`, for logs and error messages: the userinfo
/// password (`postgres://user:pw@host/db`) and any `password` or `sslpassword` query
/// parameter. URLs without a password come back unchanged.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            // The password ends at the last '@' of the authority (an '@' in it must be
            // percent-encoded, but be safe with sloppy URLs).
            match rest[..authority_end].rfind('@') {
                Some(at) => match rest[..at].split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
                    None => base.to_owned(),
                },
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        out.push('?');
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// The passwords `url` carries (userinfo and `*password` query parameters), raw and
/// percent-decoded, so text that may quote them can be scrubbed.
fn url_passwords(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some((_, rest)) = base.split_once("://") {
        let authority = &rest[..rest.find(['/', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            if let Some((_, pw)) = authority[..at].split_once(':') {
                found.push(pw.to_owned());
            }
        }
    }
    for p in query.split('&') {
        if let Some((k, v)) = p.split_once('=') {
            if k.to_ascii_lowercase().contains("password") {
                found.push(v.to_owned());
            }
        }
    }
    let decoded: Vec<String> = found.iter().map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    found
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` (an error message or log line) with the database URL and its password replaced by
/// their redacted forms. Drivers sometimes quote the URL or a piece of it (libpq quotes a
/// badly percent-encoded password, for one). Passwords shorter than 4 characters are only
/// removed as part of the URL: blanking every "ab" in a message would garble it, and such a
/// password is no secret anyway.
pub fn scrub_url(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    for pw in url_passwords(url) {
        if pw.chars().count() >= 4 {
            out = out.replace(&pw, "***");
        }
    }
    out
}

/// Points inside the engine where a test may pause it (see [`Hooks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// In `open_session`, after the user's rooms are read, before the session is subscribed.
    BeforeSubscribe,
    /// In `open_session`, after the session is subscribed, before the replay is read.
    BeforeReplay,
}

/// What a hook runs: it may do anything through its own handles (post messages, wait).
pub type HookFn =
    Arc<dyn Fn(Hook) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + Sync>;

/// Test-only pauses that make races deterministic: a test installs a function that runs at
/// each [`Hook`] point (e.g. posting messages between the snapshot and the subscription).
/// Empty in production.
#[derive(Clone, Default)]
pub struct Hooks(Option<HookFn>);

impl Hooks {
    pub fn new(f: HookFn) -> Self {
        Hooks(Some(f))
    }

    pub async fn run(&self, at: Hook) {
        if let Some(f) = &self.0 {
            f(at).await;
        }
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hooks(set)"
        } else {
            "Hooks(none)"
        })
    }
}

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
    /// Time source for presence decisions (tests substitute a manual clock).
    pub clock: Arc<dyn Clock>,
    /// A `typing` `start` without `stop` ends by itself after this long.
    pub typing_timeout: Duration,
    /// Frames a session may have queued before it counts as a slow consumer and is closed.
    pub outbox_frames: usize,
    /// Bytes of encoded frames queued for one connection's socket before it counts as a slow
    /// consumer and is closed with 4008.
    pub outbox_bytes: usize,
    /// How long queued bytes may wait without the peer taking any of them before the
    /// connection is dropped.
    pub write_timeout: Duration,
    /// Deadline of each stage before authentication: the request before the upgrade, the
    /// Engine.IO CONNECT, an upgrade probe's first packet.
    pub handshake_timeout: Duration,
    /// Largest WebSocket message accepted (after reassembling fragments).
    pub max_frame_bytes: usize,
    /// Largest `text` of a text message, and the bound (plus 1 KiB) of any message body.
    pub max_text_bytes: usize,
    /// Most messages a `join` with `since_seq` returns in `missed`, and the size of one
    /// replay page.
    pub join_missed_limit: i64,
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
    /// A room actor with no subscribers and no traffic for this long is stopped.
    pub room_idle: Duration,
    /// A room that cannot be read from the database retries (with backoff) for this long,
    /// holding the requests and subscriptions sent to it, then gives up: its sessions are
    /// unsubscribed and told (`unavailable` naming the room).
    pub room_load_retry: Duration,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Bounds on the work one request can cause (mentions per message, queued writes).
    pub costs: CostLimits,
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
            sio_ping_timeout: Duration::from_secs(20),
            sio_max_payload: 1_000_000,
            limits: Limits::default(),
            auth: AuthSettings::default(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            diagnostics: false,
            clock: Arc::new(SystemClock),
            typing_timeout: Duration::from_secs(5),
            outbox_frames: 1024,
            outbox_bytes: 8 * 1024 * 1024,
            history_max_bytes: 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_frame_bytes: 1024 * 1024,
            max_text_bytes: 64 * 1024,
            join_missed_limit: 100,
            replay_max: 1000,
            hooks: Hooks::default(),
            device_ttl: Duration::from_secs(30 * DAY_SECS),
            sio_recovery_window: Duration::from_secs(120),
            commit_max_batch: 512,
            room_idle: Duration::from_secs(60),
            room_load_retry: Duration::from_secs(30),
            workers: 0,
            costs: CostLimits::default(),
        }
    }
}

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
    /// Milliseconds queued bytes may wait for the peer before the connection is dropped.
    #[arg(long, global = true, env = "HERALD_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    /// Milliseconds allowed for each stage before authentication (upgrade request,
    /// Engine.IO CONNECT, upgrade probe).
    #[arg(long, global = true, env = "HERALD_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// Largest WebSocket message in bytes.
    #[arg(long, global = true, env = "HERALD_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Largest text message body in bytes.
    #[arg(long, global = true, env = "HERALD_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Most messages returned as `missed` by a join with since_seq.
    #[arg(long, global = true, env = "HERALD_JOIN_MISSED_LIMIT")]
    pub join_missed_limit: Option<i64>,
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
}

/// Name of the flag (`--config`) that names the config file; not itself a setting.
const CONFIG_KEY: &str = "config";

const DAY_SECS: u64 = 24 * 3600;

/// Where a setting's effective value came from. Precedence, highest first: flag,
/// environment variable, config file, built-in default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    File,
    Default,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Flag => "flag",
            Origin::Env => "env",
            Origin::File => "file",
            Origin::Default => "default",
        }
    }
}

/// The setting keys, in `--help` order: the ids of the [`CommonArgs`] and [`ServeArgs`]
/// flags. Each is also a config-file key, and `HERALD_` plus the key upper-cased is its
/// environment variable.
pub fn setting_keys() -> Vec<String> {
    let cmd = ServeArgs::augment_args(CommonArgs::augment_args(clap::Command::new("herald")));
    cmd.get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != CONFIG_KEY)
        .collect()
}

/// How `herald config` (and `--help`) shows one setting's value.
#[derive(Debug, Clone, PartialEq)]
enum Shown {
    Int(i128),
    Bool(bool),
    Str(String),
    List(Vec<String>),
    /// An optional setting nobody set.
    Unset,
    /// A secret that is set: its value is never shown.
    Redacted,
}

impl Shown {
    fn millis(d: Duration) -> Shown {
        Shown::Int(d.as_millis() as i128)
    }

    fn path(p: &Option<PathBuf>) -> Shown {
        p.as_ref()
            .map_or(Shown::Unset, |p| Shown::Str(p.display().to_string()))
    }

    fn text(s: &Option<String>) -> Shown {
        s.as_ref().map_or(Shown::Unset, |s| Shown::Str(s.clone()))
    }

    /// The value as a TOML literal (`None`: no value to show).
    fn toml(&self) -> Option<String> {
        // A JSON string literal is a valid TOML basic string.
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        match self {
            Shown::Int(i) => Some(i.to_string()),
            Shown::Bool(b) => Some(b.to_string()),
            Shown::Str(s) => Some(quote(s)),
            Shown::List(l) => Some(format!(
                "[{}]",
                l.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
            )),
            Shown::Unset => None,
            Shown::Redacted => Some(quote("<redacted>")),
        }
    }

    /// The value as `--help` prints it after `default:` (`None`: nothing to print).
    fn plain(&self) -> Option<String> {
        match self {
            Shown::Int(i) => Some(i.to_string()),
            Shown::Bool(b) => Some(b.to_string()),
            Shown::Str(s) => Some(s.clone()),
            Shown::List(_) | Shown::Unset | Shown::Redacted => None,
        }
    }
}

/// The value of setting `key` in `s`, in the unit of its flag (milliseconds for `*_ms`,
/// days for `device_ttl_days`...); `None` for an unknown key. This is the inverse of
/// [`Settings::from_args`]: `--help` shows `Settings::default()` through it, so defaults
/// are written once, in the `Default` impls.
fn shown(s: &Settings, key: &str) -> Option<Shown> {
    let int = |v: u64| Shown::Int(v.into());
    let l = &s.limits;
    Some(match key {
        // The URL names the database; only its password is secret (as in the server's log).
        "database_url" => Shown::Str(redact_url(s.database_url.expose())),
        "jwt_secret" => s
            .jwt_secret
            .as_ref()
            .map_or(Shown::Unset, |_| Shown::Redacted),
        "jwt_secret_file" => Shown::path(&s.jwt_secret_file),
        "jwt_algorithm" => Shown::Str(s.auth.algorithm.clone()),
        "jwt_public_key_file" => Shown::path(&s.auth.public_key_file),
        "jwt_issuer" => Shown::text(&s.auth.issuer),
        "jwt_audience" => Shown::text(&s.auth.audience),
        "jwt_leeway_secs" => int(s.auth.leeway.as_secs()),
        "token_grace_ms" => Shown::millis(s.auth.refresh_grace),
        "allowed_origins" => Shown::List(s.allowed_origins.clone()),
        "trusted_proxies" => Shown::List(s.trusted_proxies.iter().map(|c| c.to_string()).collect()),
        "tls_cert" => Shown::path(&s.tls_cert),
        "tls_key" => Shown::path(&s.tls_key),
        "diagnostics" => Shown::Bool(s.diagnostics),
        "max_json_depth" => int(l.max_json_depth as u64),
        "send_rate" => int(l.send_rate.into()),
        "send_burst" => int(l.send_burst.into()),
        "presence_rate" => int(l.presence_rate.into()),
        "presence_burst" => int(l.presence_burst.into()),
        "abuse_threshold" => int(l.abuse_threshold.into()),
        "max_rooms_per_user" => int(l.max_rooms_per_user as u64),
        "max_room_members" => int(l.max_room_members as u64),
        "max_watch" => int(l.max_watch as u64),
        "max_sessions_per_user" => int(l.max_sessions_per_user as u64),
        "max_connections_per_ip" => int(l.max_connections_per_ip as u64),
        "max_devices_per_user" => int(l.max_devices_per_user as u64),
        "rest_rate" => int(l.rest_rate.into()),
        "rest_burst" => int(l.rest_burst.into()),
        "membership_rate" => int(l.membership_rate.into()),
        "membership_burst" => int(l.membership_burst.into()),
        "history_rate" => int(l.history_rate.into()),
        "history_burst" => int(l.history_burst.into()),
        "watch_rate" => int(l.watch_rate.into()),
        "watch_burst" => int(l.watch_burst.into()),
        "auth_rate" => int(l.auth_rate.into()),
        "auth_burst" => int(l.auth_burst.into()),
        "frame_rate" => int(l.frame_rate.into()),
        "frame_burst" => int(l.frame_burst.into()),
        "max_inflight" => int(l.max_inflight as u64),
        "connect_rate_per_ip" => int(l.connect_rate_per_ip.into()),
        "connect_burst_per_ip" => int(l.connect_burst_per_ip.into()),
        "connect_rate_per_user" => int(l.connect_rate_per_user.into()),
        "connect_burst_per_user" => int(l.connect_burst_per_user.into()),
        "max_unauthenticated" => int(l.max_unauthenticated as u64),
        "max_unauthenticated_per_ip" => int(l.max_unauthenticated_per_ip as u64),
        "bind" => Shown::Str(s.bind.clone()),
        "db_pool_size" => int(s.db_pool_size.into()),
        "db_timeout_ms" => Shown::millis(s.db_timeout),
        "db_write_timeout_ms" => Shown::millis(s.db_write_timeout),
        "heartbeat_ms" => Shown::millis(s.heartbeat_interval),
        "presence_grace_ms" => Shown::millis(s.presence_grace),
        "auto_away_ms" => Shown::millis(s.auto_away.unwrap_or_default()),
        "open_watch" => Shown::Bool(s.open_watch),
        "presence_coalesce_ms" => Shown::millis(s.presence_coalesce),
        "typing_rate" => int(s.typing_rate.into()),
        "notify_mentions" => Shown::Bool(s.notify_mentions),
        "notify_offline_direct" => Shown::Bool(s.notify_offline_direct),
        "notification_sweep_ms" => Shown::millis(s.notification_sweep),
        "outbox_sweep_ms" => Shown::millis(s.outbox_sweep),
        "sio_ping_interval_ms" => Shown::millis(s.sio_ping_interval),
        "sio_ping_timeout_ms" => Shown::millis(s.sio_ping_timeout),
        "sio_max_payload" => int(s.sio_max_payload as u64),
        "typing_timeout_ms" => Shown::millis(s.typing_timeout),
        "outbox_frames" => int(s.outbox_frames as u64),
        "outbox_bytes" => int(s.outbox_bytes as u64),
        "write_timeout_ms" => Shown::millis(s.write_timeout),
        "handshake_timeout_ms" => Shown::millis(s.handshake_timeout),
        "max_frame_bytes" => int(s.max_frame_bytes as u64),
        "max_text_bytes" => int(s.max_text_bytes as u64),
        "join_missed_limit" => Shown::Int(s.join_missed_limit.into()),
        "replay_max" => Shown::Int(s.replay_max.into()),
        "device_ttl_days" => int(s.device_ttl.as_secs() / DAY_SECS),
        "sio_recovery_ms" => Shown::millis(s.sio_recovery_window),
        "history_max_bytes" => int(s.history_max_bytes as u64),
        "commit_max_batch" => int(s.commit_max_batch as u64),
        "room_idle_ms" => Shown::millis(s.room_idle),
        "room_load_retry_ms" => Shown::millis(s.room_load_retry),
        "workers" => int(s.workers as u64),
        "max_mentions" => int(s.costs.max_mentions as u64),
        "commit_queue_max" => int(s.costs.commit_queue_max as u64),
        _ => return None,
    })
}

/// `cmd` with `[default: …]` appended to the help of every setting that has a default,
/// taken from `Settings::default()` (the flags themselves carry no default, so that an
/// unset flag can fall back to the config file).
pub fn with_default_help(mut cmd: clap::Command) -> clap::Command {
    let defaults = Settings::default();
    for key in setting_keys() {
        let Some(text) = shown(&defaults, &key).and_then(|v| v.plain()) else {
            continue;
        };
        cmd = cmd.mut_arg(&key, |arg| {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            arg.help(format!("{help} [default: {text}]"))
        });
    }
    cmd
}

/// A config file that was read: its settings as the raw strings a flag would take.
pub struct ConfigFile {
    path: PathBuf,
    values: Vec<(String, Vec<String>)>,
    has_secret: bool,
}

/// Names the keys only: the values may be secrets.
impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field(
                "keys",
                &self.values.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A config file that cannot be used: missing, not TOML, an unknown key, a bad value.
#[derive(Debug, thiserror::Error)]
#[error("config file {}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl ConfigFile {
    /// Reads and checks the file at `path` (which must exist).
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text`, the contents of the file at `path`: flat `key = value` pairs whose keys
    /// are [`setting_keys`] and whose values are strings, integers, booleans or arrays of
    /// those.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError {
            path: path.to_owned(),
            message,
        };
        let table: toml::Table = text.parse().map_err(|e| error(format!("{e}")))?;
        let keys = setting_keys();
        let scalar = |key: &str, v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(error(format!(
                "`{key}` must be a string, integer or boolean, not a {}",
                other.type_str()
            ))),
        };
        let mut values = Vec::new();
        for (key, value) in &table {
            if !keys.contains(key) {
                return Err(error(format!(
                    "unknown key `{key}` (keys are the setting names without `HERALD_`, in \
                     snake_case, e.g. `replay_max`)"
                )));
            }
            let raw = match value {
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| scalar(key, v))
                    .collect::<Result<Vec<_>, _>>()?,
                v => vec![scalar(key, v)?],
            };
            values.push((key.clone(), raw));
        }
        let has_secret = table.contains_key("jwt_secret")
            || table
                .get("database_url")
                .and_then(|v| v.as_str())
                .is_some_and(|url| redact_url(url) != url);
        Ok(ConfigFile {
            path: path.to_owned(),
            values,
            has_secret,
        })
    }

    fn contains(&self, key: &str) -> bool {
        self.values.iter().any(|(k, _)| k == key)
    }

    /// `cmd` with the file's values as the flags' defaults, so clap itself gives flags and
    /// the environment precedence over the file, and checks the file's values.
    fn apply(&self, mut cmd: clap::Command) -> clap::Command {
        for (key, raw) in &self.values {
            // A secret is never shown as a default, should clap print the argument.
            let hide = matches!(key.as_str(), "database_url" | "jwt_secret");
            let raw = raw.clone();
            cmd = cmd.mut_arg(key, move |arg| {
                arg.default_values(raw).hide_default_value(hide)
            });
        }
        cmd
    }

    /// A warning, when the file holds a secret (the JWT secret or a database password)
    /// and users other than its owner may read it; `mode_of` reads a file's mode.
    pub fn permission_warning(&self, mode_of: impl Fn(&Path) -> Option<u32>) -> Option<String> {
        let mode = mode_of(&self.path).filter(|m| self.has_secret && m & 0o077 != 0)?;
        Some(format!(
            "config file {} holds secrets and is readable by other users (mode {:03o}); \
             run chmod 600 on it",
            self.path.display(),
            mode & 0o777
        ))
    }
}

/// The command line parsed, with the config file (if any) beneath it.
#[derive(Debug)]
pub struct Loaded<P> {
    pub cli: P,
    /// Where each setting (by key, in [`setting_keys`] order) came from.
    pub origins: Vec<(String, Origin)>,
    /// Things worth logging (a config file others can read).
    pub warnings: Vec<String>,
}

/// Why the command line could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// Flags or environment (clap prints these itself, `--help` included).
    Cli(clap::Error),
    Config(ConfigError),
}

/// Parses `args` (flags, `HERALD_*` variables) into `P`, a parser that flattens
/// [`CommonArgs`] and [`ServeArgs`]. When `--config`/`HERALD_CONFIG` names a file,
/// its values fill the settings neither a flag nor a variable set; whatever is still unset
/// keeps its `Settings::default()` value in [`Settings::from_args`].
pub fn load<P: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
) -> Result<Loaded<P>, LoadError> {
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let cmd = with_default_help(P::command());
    let matches = cmd
        .clone()
        .try_get_matches_from(&args)
        .map_err(LoadError::Cli)?;
    let file = match matches.get_one::<PathBuf>(CONFIG_KEY) {
        Some(path) => Some(ConfigFile::read(path).map_err(LoadError::Config)?),
        None => None,
    };
    let matches = match &file {
        // Flags and environment parsed once already: a failure now is the file's value.
        Some(f) => f.apply(cmd).try_get_matches_from(&args).map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            LoadError::Config(ConfigError {
                path: f.path.clone(),
                message: first.trim_start_matches("error: ").to_owned(),
            })
        })?,
        None => matches,
    };
    let cli = P::from_arg_matches(&matches).map_err(LoadError::Cli)?;
    let origins = setting_keys()
        .into_iter()
        .map(|key| {
            let origin = match matches.value_source(&key) {
                Some(clap::parser::ValueSource::CommandLine) => Origin::Flag,
                Some(clap::parser::ValueSource::EnvVariable) => Origin::Env,
                Some(_) if file.as_ref().is_some_and(|f| f.contains(&key)) => Origin::File,
                _ => Origin::Default,
            };
            (key, origin)
        })
        .collect();
    let warnings = file
        .iter()
        .filter_map(|f| f.permission_warning(crate::auth::file_mode))
        .collect();
    Ok(Loaded {
        cli,
        origins,
        warnings,
    })
}

/// The effective configuration as TOML, for `herald config`: every setting with its value
/// and, as a trailing comment, where it came from. Secrets read `"<redacted>"` (the
/// database URL keeps all but its password); unset optional settings are commented out.
pub fn render(settings: &Settings, origins: &[(String, Origin)]) -> String {
    let lines: Vec<(String, Origin)> = origins
        .iter()
        .map(|(key, origin)| {
            let value = shown(settings, key).and_then(|v| v.toml());
            let line = match value {
                Some(v) => format!("{key} = {v}"),
                None => format!("# {key} (not set)"),
            };
            (line, *origin)
        })
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.len())
        .max()
        .unwrap_or(0)
        .min(48);
    let mut out = String::from(
        "# Effective configuration (flag > env > file > default). Secrets are redacted.\n",
    );
    for (line, origin) in lines {
        out.push_str(&format!("{line:width$}  # {}\n", origin.as_str()));
    }
    out
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
        s.write_timeout = a
            .write_timeout_ms
            .map_or(s.write_timeout, |v| ms(v.max(100)));
        s.handshake_timeout = a
            .handshake_timeout_ms
            .map_or(s.handshake_timeout, |v| ms(v.max(100)));
        s.max_frame_bytes = a.max_frame_bytes.map_or(s.max_frame_bytes, |v| v.max(1024));
        s.max_text_bytes = a.max_text_bytes.map_or(s.max_text_bytes, |v| v.max(1));
        s.join_missed_limit = a
            .join_missed_limit
            .map_or(s.join_missed_limit, |v| v.clamp(0, 1000));
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
        s.room_idle = a.room_idle_ms.map_or(s.room_idle, ms);
        s.room_load_retry = a.room_load_retry_ms.map_or(s.room_load_retry, ms);
        s.workers = a.workers.unwrap_or(s.workers);
        s.costs.max_mentions = a.max_mentions.unwrap_or(s.costs.max_mentions);
        s.costs.commit_queue_max = a
            .commit_queue_max
            .map_or(s.costs.commit_queue_max, |v| v.max(1));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_passwords_and_keeps_the_rest() {
        assert_eq!(
            redact_url("postgres://u:s3cretpw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgresql://u:p%40ss@h/db?sslmode=require&password=other"),
            "postgresql://u:***@h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslpassword=k3y&application_name=herald"),
            "postgres://u@h/db?sslpassword=***&application_name=herald"
        );
        // Nothing secret: unchanged.
        for plain in [
            "postgres://u@h/db",
            "postgres://h/db",
            "sqlite://herald.db",
            "herald.db",
            "postgres://h/db?sslmode=disable",
        ] {
            assert_eq!(redact_url(plain), plain);
        }
    }

    #[test]
    fn scrub_url_removes_the_url_and_quoted_passwords_from_messages() {
        let url = "postgres://u:s3cret%25pw@h/db";
        let msg = format!(
            "cannot connect to {url}: invalid percent-encoded token: \"s3cret%25pw\" (s3cret%pw)"
        );
        let out = scrub_url(&msg, url);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("postgres://u:***@h/db"), "{out}");
        // Short passwords are only removed as part of the URL.
        assert_eq!(
            scrub_url("an abc error", "postgres://u:ab@h/db"),
            "an abc error"
        );
    }

    #[test]
    fn settings_debug_never_prints_secrets() {
        let s = Settings {
            database_url: Secret::new("postgres://u:s3cretpw@h/db"),
            jwt_secret: Some(Secret::new("j".repeat(40))),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cretpw") && !shown.contains(&"j".repeat(40)));
    }

    /// Serialises the tests that parse a command line: clap reads `HERALD_*` variables from
    /// the process environment, which one of them sets.
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// A fresh file in the temp directory holding `text`.
    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "herald-config-{}-{}-{name}.toml",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::write(&path, text).expect("temp file");
        path
    }

    fn load_settings(args: &[&str]) -> Result<(Settings, Vec<(String, Origin)>), LoadError> {
        let loaded = load::<TestCli>(std::iter::once("herald").chain(args.iter().copied()))?;
        let settings = Settings::from_args(&loaded.cli.common, Some(&loaded.cli.serve));
        Ok((settings, loaded.origins))
    }

    fn origin_of(origins: &[(String, Origin)], key: &str) -> Origin {
        origins.iter().find(|(k, _)| k == key).expect(key).1
    }

    #[test]
    fn every_setting_is_shown_and_the_shown_defaults_read_back_as_the_defaults() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        // Arrange: `herald config` with nothing set, written to a file.
        let defaults = Settings::default();
        let keys = setting_keys();
        for key in &keys {
            assert!(shown(&defaults, key).is_some(), "`{key}` is not shown");
        }
        let origins: Vec<(String, Origin)> =
            keys.iter().map(|k| (k.clone(), Origin::Default)).collect();
        let path = temp_file("defaults", &render(&defaults, &origins));
        // Act
        let (read_back, origins) = load_settings(&["--config", path.to_str().unwrap()])
            .expect("the rendered defaults load");
        std::fs::remove_file(&path).ok();
        // Assert: the file changes nothing, and every value it names came from it.
        assert_eq!(format!("{read_back:?}"), format!("{defaults:?}"));
        for (key, origin) in origins {
            let expected = match shown(&defaults, &key) {
                Some(Shown::Unset) | Some(Shown::List(_)) => origin,
                _ => Origin::File,
            };
            assert_eq!(origin, expected, "{key}");
        }
    }

    #[test]
    fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        // Arrange
        let path = temp_file(
            "precedence",
            "replay_max = 10\nsend_rate = 11\nsend_burst = 12\nbind = \"0.0.0.0:9000\"\n",
        );
        std::env::set_var("HERALD_REPLAY_MAX", "20");
        std::env::set_var("HERALD_SEND_RATE", "21");
        // Act
        let result = load_settings(&["--config", path.to_str().unwrap(), "--replay-max", "30"]);
        std::env::remove_var("HERALD_REPLAY_MAX");
        std::env::remove_var("HERALD_SEND_RATE");
        std::fs::remove_file(&path).ok();
        // Assert
        let (s, origins) = result.expect("loads");
        assert_eq!(s.replay_max, 30);
        assert_eq!(origin_of(&origins, "replay_max"), Origin::Flag);
        assert_eq!(s.limits.send_rate, 21);
        assert_eq!(origin_of(&origins, "send_rate"), Origin::Env);
        assert_eq!(s.limits.send_burst, 12);
        assert_eq!(origin_of(&origins, "send_burst"), Origin::File);
        assert_eq!(s.bind, "0.0.0.0:9000");
        assert_eq!(s.limits.max_watch, Limits::default().max_watch);
        assert_eq!(origin_of(&origins, "max_watch"), Origin::Default);
    }

    #[test]
    fn a_config_file_value_gets_the_same_bounds_as_a_flag() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let path = temp_file(
            "bounds",
            "send_rate = 0\nreplay_max = 0\nauto_away_ms = 0\n",
        );
        let result = load_settings(&["--config", path.to_str().unwrap()]);
        std::fs::remove_file(&path).ok();
        let (s, _) = result.expect("loads");
        assert_eq!(
            (s.limits.send_rate, s.replay_max, s.auto_away),
            (1, 1, None)
        );
    }

    #[test]
    fn an_unknown_key_in_the_config_file_is_an_error_naming_it() {
        let err = ConfigFile::parse(Path::new("h.toml"), "replay_max = 1\nreplay_maxx = 2\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("`replay_maxx`"), "{err}");
        assert!(err.to_string().contains("h.toml"), "{err}");
        // `config` names the file; it is no setting.
        assert!(ConfigFile::parse(Path::new("h.toml"), "config = \"x\"").is_err());
    }

    #[test]
    fn a_missing_or_malformed_config_file_is_an_error() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let missing = std::env::temp_dir().join("herald-config-does-not-exist.toml");
        match load_settings(&["--config", missing.to_str().unwrap()]) {
            Err(LoadError::Config(e)) => assert_eq!(e.path, missing),
            other => panic!("expected a config error, got {:?}", other.map(|_| ())),
        }
        let path = temp_file("bad-value", "send_rate = \"fast\"\n");
        let result = load_settings(&["--config", path.to_str().unwrap()]);
        std::fs::remove_file(&path).ok();
        match result {
            Err(LoadError::Config(e)) => assert!(e.message.contains("fast"), "{e}"),
            other => panic!("expected a config error, got {:?}", other.map(|_| ())),
        }
        for bad in ["send_rate = 1.5", "[server]\nbind = \"x\"", "send_rate ="] {
            assert!(
                ConfigFile::parse(Path::new("h.toml"), bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn herald_config_redacts_secrets_and_names_each_origin() {
        // Arrange
        let secret = "j".repeat(40);
        let s = Settings {
            database_url: Secret::new("postgres://u:s3cretpw@h/db"),
            jwt_secret: Some(Secret::new(secret.clone())),
            ..Settings::default()
        };
        let origins = vec![
            ("database_url".to_owned(), Origin::Env),
            ("jwt_secret".to_owned(), Origin::File),
            ("jwt_issuer".to_owned(), Origin::Default),
            ("replay_max".to_owned(), Origin::Flag),
        ];
        // Act
        let out = render(&s, &origins);
        // Assert
        assert!(!out.contains("s3cretpw") && !out.contains(&secret), "{out}");
        let lines: Vec<Vec<&str>> = out
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec!["database_url", "=", "\"postgres://u:***@h/db\"", "#", "env"],
                vec!["jwt_secret", "=", "\"<redacted>\"", "#", "file"],
                vec!["#", "jwt_issuer", "(not", "set)", "#", "default"],
                vec!["replay_max", "=", "1000", "#", "flag"],
            ]
        );
    }

    #[test]
    fn a_config_file_with_secrets_readable_by_others_is_warned_about() {
        let with_secret =
            ConfigFile::parse(Path::new("h.toml"), "jwt_secret = \"x\"").expect("parses");
        let with_password = ConfigFile::parse(
            Path::new("h.toml"),
            "database_url = \"postgres://u:pw@h/db\"",
        )
        .expect("parses");
        let plain = ConfigFile::parse(Path::new("h.toml"), "database_url = \"postgres://u@h/db\"")
            .expect("parses");
        assert!(!format!("{with_password:?}").contains("pw@"));
        let warning = with_secret.permission_warning(|_| Some(0o100644));
        assert!(warning.is_some_and(|w| w.contains("h.toml") && w.contains("644")));
        assert!(with_password
            .permission_warning(|_| Some(0o100640))
            .is_some());
        assert!(with_secret.permission_warning(|_| Some(0o100600)).is_none());
        assert!(plain.permission_warning(|_| Some(0o100644)).is_none());
    }

    #[test]
    fn help_shows_the_defaults_of_settings_default() {
        let help = with_default_help(<TestCli as clap::CommandFactory>::command())
            .render_help()
            .to_string();
        assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
        assert!(help.contains("[default: 8388608]"), "{help}");
        assert!(help.contains("[default: sqlite://herald.db]"), "{help}");
    }
}
