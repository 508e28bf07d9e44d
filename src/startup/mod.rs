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
//!
//! Files: this one holds `Application` (build, run, shut down), the start-up errors, the
//! migration retry, the listener and the signals; `tls.rs` the rustls configuration;
//! `server.rs` the per-worker `App` and the server with its WebSocket upgrade hook; `cors.rs`
//! the allowed origins; `rest_limit.rs` the REST rate limit middleware.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;

use crate::actors::database::RunMigrations;
use crate::auth::{
    load_or_create_secret, parse_algorithm, uses_secret, JwtKeys, KeyError, SecretError,
};
use crate::config::Settings;
use crate::db;
use crate::engine::Engine;
use crate::error::PersistError;

use cors::allowed_origins;
use server::app;
use server::build_server;
use tls::tls_config;

mod cors;
mod rest_limit;
mod server;
#[cfg(test)]
mod tests;
mod tls;

pub use rest_limit::RestLimiter;
pub use tls::TlsError;

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
        crate::routes::dev::refuse_off_loopback(&mut settings);
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
            deflate: settings.ws_deflate,
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
