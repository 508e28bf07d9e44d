//! `Application`: builds the whole server from [`Settings`] — token keys, TLS, database pool and
//! migrations, the engine's actors, the HTTP server on its listener (port 0 allowed) with CORS
//! and REST rate limits — and runs it until SIGINT/SIGTERM, then shuts down gracefully.
//!
//! - **Token keys**: the configured algorithm ([`JwtKeys::from_settings`]); the secret is loaded
//!   (or generated) only for HS algorithms.
//! - **TLS**: with `tls_cert` and `tls_key` the listener serves https and wss with rustls 0.23
//!   (ring provider); a missing or unreadable file is a start-up error.
//! - **CORS**: no `allowed_origins` lets any origin call the REST API (`*`, no credentials);
//!   with a list only those origins get CORS headers and preflights.
//! - **REST rate limits**: GCRA token buckets of `limits.rest_rate` per second and
//!   `limits.rest_burst`, one per valid token and one per client IP for requests without a
//!   valid token; 429 `rate_limited` with `Retry-After`. WebSocket and Socket.IO endpoints and
//!   `/healthz`, `/readyz`, `/metrics` are not limited.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr, TcpListener};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, ResponseError};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use std::rc::Rc;

use crate::actors::database::RunMigrations;
use crate::auth::{
    bearer_token, load_or_create_secret, parse_algorithm, uses_secret, JwtKeys, KeyError,
    SecretError,
};
use crate::config::{Limits, Settings};
use crate::db;
use crate::engine::Engine;
use crate::error::{AppError, ErrorCode, PersistError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "HERALD_ALLOWED_ORIGINS: {0:?} is not an origin; write scheme://host[:port] \
         (no path, no trailing slash)"
    )]
    Origin(String),
    #[error("database: {0}")]
    Database(#[from] PersistError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("HERALD_TLS_CERT and HERALD_TLS_KEY must be set together ({0} is not set)")]
    Incomplete(&'static str),
    #[error("TLS certificate file {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("TLS key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS certificate and key cannot be used together: {0}")]
    Config(String),
}

pub struct Application {
    port: u16,
    server: Server,
    engine: Engine,
}

impl Application {
    /// Builds and starts everything; the server serves once `run_until_stopped` is awaited
    /// (or the returned server is polled).
    pub async fn build(mut settings: Settings) -> Result<Self, StartupError> {
        // Everything that can be misconfigured is checked before any actor starts.
        let redis = crate::cluster::client_for(&mut settings)?;
        let algorithm = parse_algorithm(&settings.auth.algorithm)?;
        let tls = tls_config(settings.tls_cert.as_deref(), settings.tls_key.as_deref())?;
        let origins = allowed_origins(&settings.allowed_origins)?;
        let secret = if uses_secret(algorithm) {
            Some(load_or_create_secret(&settings)?)
        } else {
            None
        };
        let keys = JwtKeys::from_settings(&settings.auth, secret.as_ref())?;
        let pool = db::build_pool(
            settings.database_url.expose(),
            settings.db_pool_size + 1,
            settings.db_timeout,
        )?;
        let bind = settings.bind.clone();
        let reuse_port = settings.reuse_port;
        let workers = settings.workers;
        let limits = settings.limits.clone();
        let transport = crate::ws_transport::TransportLimits {
            outbox_bytes: settings.outbox_bytes,
            write_timeout: settings.write_timeout,
            handshake_timeout: settings.handshake_timeout,
        };
        log::info!(
            "tokens: {:?}{}{}",
            keys.algorithm(),
            settings
                .auth
                .issuer
                .as_deref()
                .map(|i| format!(", iss {i:?}"))
                .unwrap_or_default(),
            settings
                .auth
                .audience
                .as_deref()
                .map(|a| format!(", aud {a:?}"))
                .unwrap_or_default(),
        );
        if let Some(node) = redis.as_ref().map(|_| settings.cluster.node_id.clone()) {
            log::info!("cluster mode: node {node}");
        }
        let engine = Engine::start_with(settings, pool, keys, redis);
        // A database that is down at start-up does not stop the server: /readyz says why,
        // and migrations are retried with backoff until they succeed.
        if let Err(e) = engine
            .store
            .reader
            .send(RunMigrations)
            .await
            .map_err(PersistError::from)
            .and_then(|r| r)
        {
            log::warn!("database not ready at start-up ({e}); retrying in the background");
            actix_web::rt::spawn(migrate_with_backoff(engine.clone()));
        } else {
            engine.sweep_outbox_at_start();
        }
        let listener = bind_listener(&bind, reuse_port).map_err(|source| StartupError::Bind {
            addr: bind.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: bind.clone(),
                source,
            })?
            .port();
        let data = web::Data::new(engine.clone());
        let limiter = RestLimiter::new(
            &limits,
            engine.keys.clone(),
            engine.settings.trusted_proxies.clone(),
        )
        .map(Arc::new);
        let make_app = move || app(data.clone(), limiter.clone(), origins.clone());
        let scheme = if tls.is_some() {
            log::info!("TLS on: serving https and wss");
            "https"
        } else {
            "http"
        };
        if tls.is_some() {
            log::info!("TLS on: serving https and wss");
        }
        let server =
            build_server(listener, workers, transport, tls, make_app).map_err(|source| {
                StartupError::Bind {
                    addr: bind.clone(),
                    source,
                }
            })?;
        // Tools read the port from the end of this line.
        log::info!(
            "herald listening on {scheme}://{}",
            bind.rsplit_once(':')
                .map(|(h, _)| format!("{h}:{port}"))
                .unwrap_or(bind)
        );
        Ok(Application {
            port,
            server,
            engine,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until SIGINT or SIGTERM, then: close sessions with 1001, flush last-seen and
    /// every pending write batch, stop the HTTP server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let engine = self.engine.clone();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            log::info!("shutdown signal received");
            engine.shutdown().await;
            handle.stop(true).await;
        });
        self.server.await
    }

    /// Stops the server as a signal would (tests use this).
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.engine.shutdown().await;
        let handle = self.server.handle();
        actix_web::rt::spawn(self.server);
        handle.stop(true).await;
        Ok(())
    }

    /// Splits into the server future (to spawn) and the engine.
    pub fn into_parts(self) -> (u16, Server, Engine) {
        (self.port, self.server, self.engine)
    }
}

/// The rustls server configuration of `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8,
/// PKCS#1 or SEC1), or `None` when neither is set.
fn tls_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(TlsError::Incomplete("HERALD_TLS_KEY")),
        (None, Some(_)) => return Err(TlsError::Incomplete("HERALD_TLS_CERT")),
        (Some(c), Some(k)) => (c, k),
    };
    let cert_error = |reason: String| TlsError::Certificate {
        path: cert.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in it".into()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key in it (PKCS#8, PKCS#1 or SEC1)".into()
            }
            other => other.to_string(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Some(config))
}

/// How long a graceful shutdown waits for connections to finish, in seconds.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// The application: routes, the REST rate limit and CORS (built once per worker).
fn app(
    data: web::Data<Engine>,
    limiter: Option<Arc<RestLimiter>>,
    origins: Arc<[String]>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(data)
        .configure(crate::routes::configure)
        .wrap(from_fn(move |req, next| {
            limit_rest(limiter.clone(), req, next)
        }))
        // Outermost: preflights are answered before the rate limit, and 429s carry
        // CORS headers so a browser can read them.
        .wrap(cors(&origins))
}

/// The server, assembled like `HttpServer::listen` plus actix-http's upgrade hook: WebSocket
/// upgrades leave the HTTP/1 dispatcher and its buffers (`ws_transport`), on plain TCP and
/// with TLS (rustls) alike, so every upgraded socket has the same byte-bounded outbox and
/// write deadline.
fn build_server<F, T, B>(
    listener: TcpListener,
    workers: usize,
    transport: crate::ws_transport::TransportLimits,
    tls: Option<rustls::ServerConfig>,
    make_app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: actix_web::dev::ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    use actix_service::{map_config, IntoServiceFactory as _, ServiceFactoryExt as _};
    use actix_web::dev::AppConfig;

    let mut builder = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
    if workers > 0 {
        builder = builder.workers(workers);
    }
    // Lets idle keep-alive connections close at once on shutdown instead of holding it up.
    let shutdown_signal = builder.graceful_shutdown_signal();
    // A macro, not a closure: the builder's stream type differs between the two listeners.
    macro_rules! http_service {
        () => {{
            let shutdown_signal = shutdown_signal.clone();
            actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = shutdown_signal.clone();
                    async move { signal.notified().await }
                })
                .tcp_nodelay(true)
                // The request head is the first stage before authentication.
                .client_request_timeout(transport.handshake_timeout)
        }};
    }
    let builder = match tls {
        None => builder.listen("herald", listener, move || {
            let http = make_app()
                .into_factory()
                .map_err(|err| err.error_response());
            http_service!()
                .upgrade(upgrade_service(make_app.clone(), transport))
                .finish(map_config(http, |_| AppConfig::default()))
                .tcp()
        }),
        Some(config) => builder.listen("herald", listener, move || {
            let http = make_app()
                .into_factory()
                .map_err(|err| err.error_response());
            http_service!()
                .upgrade(upgrade_service(make_app.clone(), transport))
                .finish(map_config(http, |_| AppConfig::default()))
                .rustls_0_23(config.clone())
        }),
    };
    builder.map(|b| b.run())
}

/// The service that takes an upgrade request (and its connection) over from the HTTP/1
/// dispatcher: one per worker, running the same `App` as the dispatcher.
fn upgrade_service<F, T, B, Io>(
    make_app: F,
    transport: crate::ws_transport::TransportLimits,
) -> impl actix_service::ServiceFactory<
    (
        actix_http::Request,
        actix_codec::Framed<Io, actix_http::h1::Codec>,
    ),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    F: Fn() -> App<T> + Clone + 'static,
    T: actix_web::dev::ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
    Io: actix_codec::AsyncRead + actix_codec::AsyncWrite + Unpin + 'static,
{
    use actix_service::{fn_factory, fn_service, IntoServiceFactory as _, ServiceFactory as _};
    use actix_web::dev::AppConfig;

    fn_factory(move || {
        let factory = make_app().into_factory();
        async move {
            let app = Rc::new(factory.new_service(AppConfig::default()).await?);
            Ok::<_, ()>(fn_service(
                move |(req, framed): (
                    actix_http::Request,
                    actix_codec::Framed<Io, actix_http::h1::Codec>,
                )| {
                    let app = app.clone();
                    async move {
                        // A peer that resets its socket ends the connection; not an error.
                        if let Err(e) =
                            crate::ws_transport::serve_upgrade(app, req, framed, transport).await
                        {
                            log::debug!("upgraded connection ended: {e}");
                        }
                        Ok::<_, actix_web::Error>(())
                    }
                },
            ))
        }
    })
}

/// The configured CORS origins, checked: each must be `scheme://host[:port]`.
fn allowed_origins(configured: &[String]) -> Result<Arc<[String]>, StartupError> {
    for origin in configured {
        let valid = origin.split_once("://").is_some_and(|(scheme, authority)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !authority.is_empty()
                && !authority
                    .chars()
                    .any(|c| "/?#@\\".contains(c) || c.is_whitespace() || c.is_control())
        });
        if !valid {
            return Err(StartupError::Origin(origin.clone()));
        }
    }
    Ok(configured.iter().cloned().collect())
}

/// CORS for the REST API: any origin (`*`) when `origins` is empty, else only those origins
/// (compared case-insensitively). Never with credentials: tokens travel in `Authorization`.
fn cors(origins: &Arc<[String]>) -> Cors {
    let cors = if origins.is_empty() {
        Cors::default().allow_any_origin().send_wildcard()
    } else {
        let origins = Arc::clone(origins);
        Cors::default().allowed_origin_fn(move |origin, _| {
            origin.to_str().is_ok_and(|o| {
                origins
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(o))
            })
        })
    };
    cors.allowed_methods(["GET", "POST", "PUT", "DELETE"])
        .allow_any_header()
        .expose_headers([header::RETRY_AFTER])
        .max_age(3600)
}

/// Paths the REST rate limit does not apply to: WebSocket upgrades (they have their own
/// limits), Socket.IO (long polling is many requests by design) and operations endpoints.
fn exempt_from_rest_limit(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/v1/ws" | "/socket.io"
    ) || path.starts_with("/v1/ws/")
        || path.starts_with("/ws/")
        || path.starts_with("/socket.io/")
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestKey {
    /// A request with a valid token: the token's bucket.
    Token(u64),
    /// Anything else (no token, a bad or expired one): the client address's bucket (IPv6 by
    /// /64, the block one subscriber usually gets).
    Ip(IpAddr),
}

/// The REST rate limits: one GCRA token bucket per valid token and one per client IP for
/// requests without a valid token, each `rest_rate` per second with `rest_burst`.
pub struct RestLimiter {
    per_token: DefaultKeyedRateLimiter<u64>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    keys: Arc<JwtKeys>,
    hasher: RandomState,
    checks: AtomicU64,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted: Vec<crate::admission::Cidr>,
}

impl RestLimiter {
    /// Buckets pruned of idle keys every this many checks.
    const PRUNE_EVERY: u64 = 1024;

    /// The limiter of `limits`, or `None` when `rest_rate` is 0 (unlimited).
    pub fn new(
        limits: &Limits,
        keys: Arc<JwtKeys>,
        trusted: Vec<crate::admission::Cidr>,
    ) -> Option<Self> {
        let rate = NonZeroU32::new(limits.rest_rate)?;
        let burst = NonZeroU32::new(limits.rest_burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(RestLimiter {
            per_token: DefaultKeyedRateLimiter::keyed(quota),
            per_ip: DefaultKeyedRateLimiter::keyed(quota),
            keys,
            hasher: RandomState::new(),
            checks: AtomicU64::new(0),
            trusted,
        })
    }

    fn key(&self, req: &ServiceRequest) -> RestKey {
        if let Some(token) = bearer_token(req.request()) {
            if self.keys.verify(&token).is_ok() {
                return RestKey::Token(self.hasher.hash_one(&token));
            }
        }
        let ip = crate::admission::client_ip(req.request(), &self.trusted)
            .map(crate::admission::ip_key)
            .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        RestKey::Ip(ip)
    }

    /// Takes one request from the request's bucket; `Err` holds how long until one is free.
    fn admit(&self, req: &ServiceRequest) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % Self::PRUNE_EVERY == Self::PRUNE_EVERY - 1
        {
            self.per_token.retain_recent();
            self.per_ip.retain_recent();
        }
        match self.key(req) {
            RestKey::Token(t) => self
                .per_token
                .check_key(&t)
                .map_err(|n| n.wait_time_from(self.per_token.clock().now())),
            RestKey::Ip(ip) => self
                .per_ip
                .check_key(&ip)
                .map_err(|n| n.wait_time_from(self.per_ip.clock().now())),
        }
    }
}

/// The REST rate-limit middleware: 429 `rate_limited` with `Retry-After` (whole seconds,
/// rounded up) once the request's bucket is empty.
async fn limit_rest<B: MessageBody>(
    limiter: Option<Arc<RestLimiter>>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    if let Some(limiter) = limiter.as_deref() {
        if !exempt_from_rest_limit(req.path()) {
            if let Err(wait) = limiter.admit(&req) {
                let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                let mut resp = AppError::new(
                    ErrorCode::RateLimited,
                    format!("too many requests; retry in {secs} s"),
                )
                .error_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return Ok(req.into_response(resp).map_into_right_body());
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Retries the migrations until they succeed: 200 ms, doubling up to 5 s between attempts.
async fn migrate_with_backoff(engine: Engine) {
    let mut delay = Duration::from_millis(200);
    loop {
        actix::clock::sleep(delay).await;
        match engine.store.reader.send(RunMigrations).await {
            Ok(Ok(())) => {
                log::info!("database reachable; migrations applied");
                engine.sweep_outbox_at_start();
                return;
            }
            Ok(Err(e)) => log::warn!("database still unavailable: {e}"),
            Err(e) => log::warn!("database actor unavailable: {e}"),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Accept queue for connection bursts (std's `bind` leaves it at 128).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the listener with a deep accept queue and `TCP_NODELAY` (inherited by accepted
/// sockets on Linux; TLS connections rely on that, plain ones also set it on connect).
/// `reuse_port`: SO_REUSEPORT, so several nodes on one machine share the port and the
/// kernel spreads connections over them (cluster mode only; checked at start).
fn bind_listener(bind: &str, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let addr = bind.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_socketio_and_operations_paths_are_exempt() {
        for p in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/ws",
            "/v1/ws/echo",
            "/ws/notifications/",
            "/ws/notifications",
            "/socket.io/",
            "/socket.io",
        ] {
            assert!(exempt_from_rest_limit(p), "{p}");
        }
        for p in ["/v1/rooms", "/v1/wsx", "/v1/admin/stats", "/", "/healthzz"] {
            assert!(!exempt_from_rest_limit(p), "{p}");
        }
    }

    #[test]
    fn origins_must_be_scheme_host_port() {
        let ok = ["https://app.example", "http://localhost:3000", "app://x"];
        let list: Vec<String> = ok.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(allowed_origins(&list).unwrap().len(), 3);
        for bad in [
            "https://app.example/",
            "app.example",
            "*",
            "https://",
            "https://a.example/path",
            "1http://a",
            "https://a b",
        ] {
            assert!(
                matches!(
                    allowed_origins(&[bad.to_owned()]),
                    Err(StartupError::Origin(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn tls_files_are_checked() {
        let f = |n: &str| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(n)
        };
        assert!(tls_config(None, None).unwrap().is_none());
        assert!(
            tls_config(Some(&f("tls-cert.pem")), Some(&f("tls-key.pem")))
                .unwrap()
                .is_some()
        );
        let e = tls_config(Some(&f("tls-cert.pem")), None).unwrap_err();
        assert!(e.to_string().contains("HERALD_TLS_KEY"), "{e}");
        let e = tls_config(Some(&f("missing.pem")), Some(&f("tls-key.pem"))).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = tls_config(Some(&f("tls-key.pem")), Some(&f("tls-key.pem"))).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = tls_config(Some(&f("tls-cert.pem")), Some(&f("tls-cert.pem"))).unwrap_err();
        assert!(e.to_string().contains("no PEM private key"), "{e}");
        let e =
            tls_config(Some(&f("tls-cert.pem")), Some(&f("jwt-es256-private.pem"))).unwrap_err();
        assert!(matches!(e, TlsError::Config(_)), "{e}");
    }
}
