//! Settings: every tunable of the server, read from `HERALD_*` environment variables and CLI
//! flags (docs/configuration.md lists them all), with defaults that run out of the box.
//!
//! Tests build a [`Settings`] value directly (`Settings::default()` plus field changes)
//! instead of touching the environment.

use std::fmt;
use std::path::PathBuf;
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
            device_ttl: Duration::from_secs(30 * 24 * 3600),
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
    /// Database URL: sqlite://FILE (default) or postgres://USER@HOST/DB.
    // hide_env_values: `--help` would otherwise print the environment's URL, password included.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "sqlite://herald.db",
        hide_env_values = true,
        global = true
    )]
    pub database_url: String,
    /// HS256 secret for JWTs (at least 32 bytes). Unset: generated once and kept in a file beside the database.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// Where the generated secret is kept (default: herald.secret beside the SQLite file, or in the working directory).
    #[arg(long, env = "HERALD_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,
    /// Token algorithm: HS256, HS384, HS512 (secret) or RS256, ES256 (public key file).
    #[arg(
        long,
        env = "HERALD_JWT_ALGORITHM",
        default_value = "HS256",
        global = true
    )]
    pub jwt_algorithm: String,
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
    #[arg(
        long,
        env = "HERALD_JWT_LEEWAY_SECS",
        default_value_t = 5,
        global = true
    )]
    pub jwt_leeway_secs: u64,
}

/// Flags of `herald serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Milliseconds a session has to send `auth` after its token expired.
    #[arg(
        long,
        global = true,
        env = "HERALD_TOKEN_GRACE_MS",
        default_value_t = 10_000
    )]
    pub token_grace_ms: u64,
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
        default_value_t = false,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub diagnostics: bool,
    /// Deepest JSON nesting in a frame.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_JSON_DEPTH",
        default_value_t = 32
    )]
    pub max_json_depth: usize,
    /// Sends per second per session.
    #[arg(long, global = true, env = "HERALD_SEND_RATE", default_value_t = 200)]
    pub send_rate: u32,
    /// Send burst per session.
    #[arg(long, global = true, env = "HERALD_SEND_BURST", default_value_t = 400)]
    pub send_burst: u32,
    /// Presence changes per second per session.
    #[arg(
        long,
        global = true,
        env = "HERALD_PRESENCE_RATE",
        default_value_t = 10
    )]
    pub presence_rate: u32,
    /// Presence change burst per session.
    #[arg(
        long,
        global = true,
        env = "HERALD_PRESENCE_BURST",
        default_value_t = 20
    )]
    pub presence_burst: u32,
    /// Rate-limited frames in a row before the connection is closed (1008).
    #[arg(
        long,
        global = true,
        env = "HERALD_ABUSE_THRESHOLD",
        default_value_t = 100
    )]
    pub abuse_threshold: u32,
    /// Rooms per user.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_ROOMS_PER_USER",
        default_value_t = 10_000
    )]
    pub max_rooms_per_user: usize,
    /// Members per room.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_ROOM_MEMBERS",
        default_value_t = 100_000
    )]
    pub max_room_members: usize,
    /// Watched users per session.
    #[arg(long, global = true, env = "HERALD_MAX_WATCH", default_value_t = 1_000)]
    pub max_watch: usize,
    /// Concurrent sessions per user.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_SESSIONS_PER_USER",
        default_value_t = 32
    )]
    pub max_sessions_per_user: usize,
    /// Concurrent WebSocket connections per IP (0: unlimited).
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0
    )]
    pub max_connections_per_ip: usize,
    /// Devices whose stored positions are kept per user (the least recently moved go first).
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_DEVICES_PER_USER",
        default_value_t = 50
    )]
    pub max_devices_per_user: usize,
    /// REST requests per second per IP and per token (0: unlimited).
    #[arg(long, global = true, env = "HERALD_REST_RATE", default_value_t = 200)]
    pub rest_rate: u32,
    /// REST request burst per IP and per token.
    #[arg(long, global = true, env = "HERALD_REST_BURST", default_value_t = 400)]
    pub rest_burst: u32,
    /// join/leave frames per second per session.
    #[arg(
        long,
        global = true,
        env = "HERALD_MEMBERSHIP_RATE",
        default_value_t = 20
    )]
    pub membership_rate: u32,
    /// join/leave burst per session.
    #[arg(
        long,
        global = true,
        env = "HERALD_MEMBERSHIP_BURST",
        default_value_t = 100
    )]
    pub membership_burst: u32,
    /// history frames per second per session.
    #[arg(long, global = true, env = "HERALD_HISTORY_RATE", default_value_t = 10)]
    pub history_rate: u32,
    /// history burst per session.
    #[arg(
        long,
        global = true,
        env = "HERALD_HISTORY_BURST",
        default_value_t = 50
    )]
    pub history_burst: u32,
    /// watch/unwatch frames per second per session.
    #[arg(long, global = true, env = "HERALD_WATCH_RATE", default_value_t = 5)]
    pub watch_rate: u32,
    /// watch/unwatch burst per session.
    #[arg(long, global = true, env = "HERALD_WATCH_BURST", default_value_t = 20)]
    pub watch_burst: u32,
    /// auth frames per second per session.
    #[arg(long, global = true, env = "HERALD_AUTH_RATE", default_value_t = 1)]
    pub auth_rate: u32,
    /// auth burst per session.
    #[arg(long, global = true, env = "HERALD_AUTH_BURST", default_value_t = 5)]
    pub auth_burst: u32,
    /// Other frames (typing, receipt, ping, notification socket) per second per session.
    #[arg(long, global = true, env = "HERALD_FRAME_RATE", default_value_t = 100)]
    pub frame_rate: u32,
    /// Other frames burst per session.
    #[arg(long, global = true, env = "HERALD_FRAME_BURST", default_value_t = 400)]
    pub frame_burst: u32,
    /// Requests of one session waiting for their answer at once.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_INFLIGHT",
        default_value_t = 256
    )]
    pub max_inflight: usize,
    /// New connections per second per client address (0: unlimited).
    #[arg(
        long,
        global = true,
        env = "HERALD_CONNECT_RATE_PER_IP",
        default_value_t = 100
    )]
    pub connect_rate_per_ip: u32,
    /// New connection burst per client address.
    #[arg(
        long,
        global = true,
        env = "HERALD_CONNECT_BURST_PER_IP",
        default_value_t = 500
    )]
    pub connect_burst_per_ip: u32,
    /// New sessions per second per user (0: unlimited).
    #[arg(
        long,
        global = true,
        env = "HERALD_CONNECT_RATE_PER_USER",
        default_value_t = 5
    )]
    pub connect_rate_per_user: u32,
    /// New session burst per user.
    #[arg(
        long,
        global = true,
        env = "HERALD_CONNECT_BURST_PER_USER",
        default_value_t = 40
    )]
    pub connect_burst_per_user: u32,
    /// Socket.IO sessions not yet authenticated, in all.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_UNAUTHENTICATED",
        default_value_t = 10_000
    )]
    pub max_unauthenticated: usize,
    /// Socket.IO sessions not yet authenticated, per client address.
    #[arg(
        long,
        global = true,
        env = "HERALD_MAX_UNAUTHENTICATED_PER_IP",
        default_value_t = 100
    )]
    pub max_unauthenticated_per_ip: usize,
    /// Proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client address.
    #[arg(
        long,
        global = true,
        env = "HERALD_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<crate::admission::Cidr>,
    /// Address to listen on.
    #[arg(
        long,
        global = true,
        env = "HERALD_BIND",
        default_value = "127.0.0.1:8080"
    )]
    pub bind: String,
    /// Read pool size.
    #[arg(long, global = true, env = "HERALD_DB_POOL_SIZE", default_value_t = 4)]
    pub db_pool_size: u32,
    /// Milliseconds to wait for a database connection.
    #[arg(
        long,
        global = true,
        env = "HERALD_DB_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub db_timeout_ms: u64,
    /// Milliseconds a request waits for its write to commit before `unavailable`.
    #[arg(
        long,
        global = true,
        env = "HERALD_DB_WRITE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub db_write_timeout_ms: u64,
    /// WebSocket ping interval in milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_HEARTBEAT_MS",
        default_value_t = 25_000
    )]
    pub heartbeat_ms: u64,
    /// Presence grace period after a user's last session closes, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_PRESENCE_GRACE_MS",
        default_value_t = 3000
    )]
    pub presence_grace_ms: u64,
    /// Milliseconds without client activity after which a user turns away (0: off).
    #[arg(long, global = true, env = "HERALD_AUTO_AWAY_MS", default_value_t = 0)]
    pub auto_away_ms: u64,
    /// Allow watching any user, not only users who share a room.
    #[arg(
        long,
        global = true,
        env = "HERALD_OPEN_WATCH",
        default_value_t = false,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub open_watch: bool,
    /// Window in which room presence changes are coalesced into one diff, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_PRESENCE_COALESCE_MS",
        default_value_t = 200
    )]
    pub presence_coalesce_ms: u64,
    /// Typing start broadcasts allowed per user and room per second.
    #[arg(long, global = true, env = "HERALD_TYPING_RATE", default_value_t = 5)]
    pub typing_rate: u32,
    /// Notify @mentioned room members.
    #[arg(long, global = true, env = "HERALD_NOTIFY_MENTIONS", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub notify_mentions: bool,
    /// Notify recipients of direct messages who are offline.
    #[arg(long, global = true, env = "HERALD_NOTIFY_OFFLINE_DIRECT", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub notify_offline_direct: bool,
    /// Interval of the notification expiry/release sweep, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_NOTIFICATION_SWEEP_MS",
        default_value_t = 30_000
    )]
    pub notification_sweep_ms: u64,
    /// Interval of the notification outbox sweep (re-processes mention and offline-DM
    /// notifications a crash interrupted), in milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_OUTBOX_SWEEP_MS",
        default_value_t = 5_000
    )]
    pub outbox_sweep_ms: u64,
    /// Socket.IO (Engine.IO) ping interval in milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_SIO_PING_INTERVAL_MS",
        default_value_t = 25_000
    )]
    pub sio_ping_interval_ms: u64,
    /// Socket.IO (Engine.IO) ping timeout in milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_SIO_PING_TIMEOUT_MS",
        default_value_t = 20_000
    )]
    pub sio_ping_timeout_ms: u64,
    /// Socket.IO (Engine.IO) maxPayload in bytes.
    #[arg(
        long,
        global = true,
        env = "HERALD_SIO_MAX_PAYLOAD",
        default_value_t = 1_000_000
    )]
    pub sio_max_payload: usize,
    /// Typing indicator expiry in milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_TYPING_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub typing_timeout_ms: u64,
    /// Frames queued per session before it is closed as a slow consumer.
    #[arg(
        long,
        global = true,
        env = "HERALD_OUTBOX_FRAMES",
        default_value_t = 1024
    )]
    pub outbox_frames: usize,
    /// Bytes queued per connection before it is closed as a slow consumer (4008).
    #[arg(long, global = true, env = "HERALD_OUTBOX_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub outbox_bytes: usize,
    /// Milliseconds queued bytes may wait for the peer before the connection is dropped.
    #[arg(
        long,
        global = true,
        env = "HERALD_WRITE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub write_timeout_ms: u64,
    /// Milliseconds allowed for each stage before authentication (upgrade request,
    /// Engine.IO CONNECT, upgrade probe).
    #[arg(
        long,
        global = true,
        env = "HERALD_HANDSHAKE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub handshake_timeout_ms: u64,
    /// Largest WebSocket message in bytes.
    #[arg(long, global = true, env = "HERALD_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub max_frame_bytes: usize,
    /// Largest text message body in bytes.
    #[arg(long, global = true, env = "HERALD_MAX_TEXT_BYTES", default_value_t = 64 * 1024)]
    pub max_text_bytes: usize,
    /// Most messages returned as `missed` by a join with since_seq.
    #[arg(
        long,
        global = true,
        env = "HERALD_JOIN_MISSED_LIMIT",
        default_value_t = 100
    )]
    pub join_missed_limit: i64,
    /// Most messages one room replays to a session before the rest is left out with a
    /// `replay_truncated` marker.
    #[arg(long, global = true, env = "HERALD_REPLAY_MAX", default_value_t = 1000)]
    pub replay_max: i64,
    /// Days after which a device's stored positions are deleted when none of them moved.
    #[arg(
        long,
        global = true,
        env = "HERALD_DEVICE_TTL_DAYS",
        default_value_t = 30
    )]
    pub device_ttl_days: u64,
    /// How long (ms) an ended Socket.IO session can be recovered with its pid and offset;
    /// 0 disables recovery.
    #[arg(
        long,
        global = true,
        env = "HERALD_SIO_RECOVERY_MS",
        default_value_t = 120_000
    )]
    pub sio_recovery_ms: u64,
    /// Most bytes of message bodies per history page or join `missed` list.
    #[arg(long, global = true, env = "HERALD_HISTORY_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub history_max_bytes: usize,
    /// Most write groups per commit batch.
    #[arg(
        long,
        global = true,
        env = "HERALD_COMMIT_MAX_BATCH",
        default_value_t = 512
    )]
    pub commit_max_batch: usize,
    /// Idle room actors stop after this many milliseconds.
    #[arg(
        long,
        global = true,
        env = "HERALD_ROOM_IDLE_MS",
        default_value_t = 60_000
    )]
    pub room_idle_ms: u64,
    /// How long a room retries loading from the database before it gives up (milliseconds).
    #[arg(
        long,
        global = true,
        env = "HERALD_ROOM_LOAD_RETRY_MS",
        default_value_t = 30_000
    )]
    pub room_load_retry_ms: u64,
    /// HTTP worker threads (0: one per core).
    #[arg(long, global = true, env = "HERALD_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Distinct @mentions acted on per message.
    #[arg(long, global = true, env = "HERALD_MAX_MENTIONS", default_value_t = 50)]
    pub max_mentions: usize,
    /// Write groups waiting in the commit queue before writes are refused (unavailable).
    #[arg(
        long,
        global = true,
        env = "HERALD_COMMIT_QUEUE_MAX",
        default_value_t = 20_000
    )]
    pub commit_queue_max: usize,
}

impl Settings {
    pub fn from_args(common: &CommonArgs, serve: Option<&ServeArgs>) -> Self {
        let mut s = Settings {
            database_url: Secret::new(common.database_url.clone()),
            jwt_secret: common.jwt_secret.clone().map(Secret::new),
            jwt_secret_file: common.jwt_secret_file.clone(),
            auth: AuthSettings {
                algorithm: common.jwt_algorithm.to_ascii_uppercase(),
                public_key_file: common.jwt_public_key_file.clone(),
                issuer: common.jwt_issuer.clone(),
                audience: common.jwt_audience.clone(),
                leeway: Duration::from_secs(common.jwt_leeway_secs),
                ..AuthSettings::default()
            },
            ..Settings::default()
        };
        if let Some(a) = serve {
            s.bind = a.bind.clone();
            s.auth.refresh_grace = Duration::from_millis(a.token_grace_ms);
            s.allowed_origins = a
                .allowed_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect();
            s.tls_cert = a.tls_cert.clone();
            s.tls_key = a.tls_key.clone();
            s.diagnostics = a.diagnostics;
            s.limits = Limits {
                max_json_depth: a.max_json_depth.max(2),
                send_rate: a.send_rate.max(1),
                send_burst: a.send_burst.max(1),
                presence_rate: a.presence_rate.max(1),
                presence_burst: a.presence_burst.max(1),
                abuse_threshold: a.abuse_threshold.max(1),
                max_rooms_per_user: a.max_rooms_per_user.max(1),
                max_room_members: a.max_room_members.max(2),
                max_watch: a.max_watch.max(1),
                max_sessions_per_user: a.max_sessions_per_user.max(1),
                max_connections_per_ip: a.max_connections_per_ip,
                max_devices_per_user: a.max_devices_per_user.clamp(1, 10_000),
                rest_rate: a.rest_rate,
                rest_burst: a.rest_burst.max(1),
                membership_rate: a.membership_rate.max(1),
                membership_burst: a.membership_burst.max(1),
                history_rate: a.history_rate.max(1),
                history_burst: a.history_burst.max(1),
                watch_rate: a.watch_rate.max(1),
                watch_burst: a.watch_burst.max(1),
                auth_rate: a.auth_rate.max(1),
                auth_burst: a.auth_burst.max(1),
                frame_rate: a.frame_rate.max(1),
                frame_burst: a.frame_burst.max(1),
                max_inflight: a.max_inflight.max(1),
                connect_rate_per_ip: a.connect_rate_per_ip,
                connect_burst_per_ip: a.connect_burst_per_ip.max(1),
                connect_rate_per_user: a.connect_rate_per_user,
                connect_burst_per_user: a.connect_burst_per_user.max(1),
                max_unauthenticated: a.max_unauthenticated.max(1),
                max_unauthenticated_per_ip: a.max_unauthenticated_per_ip.max(1),
            };
            s.trusted_proxies = a.trusted_proxies.clone();
            s.db_pool_size = a.db_pool_size.max(1);
            s.db_timeout = Duration::from_millis(a.db_timeout_ms.max(100));
            s.db_write_timeout = Duration::from_millis(a.db_write_timeout_ms.max(100));
            s.heartbeat_interval = Duration::from_millis(a.heartbeat_ms.max(100));
            s.presence_grace = Duration::from_millis(a.presence_grace_ms);
            // The sweep ends grace periods: its interval is what a leave waits beyond the grace.
            s.presence_sweep =
                (s.presence_grace / 4).clamp(Duration::from_millis(20), Duration::from_millis(50));
            s.auto_away = (a.auto_away_ms > 0).then(|| Duration::from_millis(a.auto_away_ms));
            s.open_watch = a.open_watch;
            s.presence_coalesce = Duration::from_millis(a.presence_coalesce_ms);
            s.typing_rate = a.typing_rate.max(1);
            s.sio_ping_interval = Duration::from_millis(a.sio_ping_interval_ms.max(100));
            s.sio_ping_timeout = Duration::from_millis(a.sio_ping_timeout_ms.max(100));
            s.sio_max_payload = a.sio_max_payload.max(1024);
            s.notify_mentions = a.notify_mentions;
            s.notify_offline_direct = a.notify_offline_direct;
            s.notification_sweep = Duration::from_millis(a.notification_sweep_ms.max(100));
            s.outbox_sweep = Duration::from_millis(a.outbox_sweep_ms.max(100));
            s.typing_timeout = Duration::from_millis(a.typing_timeout_ms.max(100));
            s.outbox_frames = a.outbox_frames.max(1);
            s.outbox_bytes = a.outbox_bytes.max(64 * 1024);
            s.write_timeout = Duration::from_millis(a.write_timeout_ms.max(100));
            s.handshake_timeout = Duration::from_millis(a.handshake_timeout_ms.max(100));
            s.max_frame_bytes = a.max_frame_bytes.max(1024);
            s.max_text_bytes = a.max_text_bytes.max(1);
            s.join_missed_limit = a.join_missed_limit.clamp(0, 1000);
            s.replay_max = a.replay_max.clamp(1, 1_000_000);
            s.device_ttl = Duration::from_secs(a.device_ttl_days.clamp(1, 3650) * 24 * 3600);
            s.sio_recovery_window = Duration::from_millis(a.sio_recovery_ms.min(24 * 3600 * 1000));
            s.history_max_bytes = a.history_max_bytes.max(64 * 1024);
            s.commit_max_batch = a.commit_max_batch.max(1);
            s.room_idle = Duration::from_millis(a.room_idle_ms);
            s.room_load_retry = Duration::from_millis(a.room_load_retry_ms);
            s.workers = a.workers;
            s.costs = CostLimits {
                max_mentions: a.max_mentions,
                commit_queue_max: a.commit_queue_max.max(1),
            };
        }
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
                let parent = std::path::Path::new(&path)
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
}
