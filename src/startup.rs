//! `Application`: builds the whole server from [`Settings`] — secret, database pool and
//! migrations, the engine's actors, the HTTP server on its listener (port 0 allowed) — and runs
//! it until SIGINT/SIGTERM, then shuts down gracefully.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use crate::actors::database::RunMigrations;
use crate::auth::{load_or_create_secret, JwtKeys, SecretError};
use crate::config::Settings;
use crate::db;
use crate::engine::Engine;
use crate::error::PersistError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("database: {0}")]
    Database(#[from] PersistError),
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
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let secret = load_or_create_secret(&settings)?;
        let keys = JwtKeys::hs256(&secret);
        let pool = db::build_pool(
            settings.database_url.expose(),
            settings.db_pool_size + 1,
            settings.db_timeout,
        )?;
        let bind = settings.bind.clone();
        let workers = settings.workers;
        let engine = Engine::start(settings, pool, keys);
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
        }
        let listener = TcpListener::bind(&bind).map_err(|source| StartupError::Bind {
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
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(crate::routes::configure)
        })
        .disable_signals()
        .shutdown_timeout(5);
        if workers > 0 {
            server = server.workers(workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: bind.clone(),
                source,
            })?
            .run();
        log::info!(
            "herald listening on {}",
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
                return;
            }
            Ok(Err(e)) => log::warn!("database still unavailable: {e}"),
            Err(e) => log::warn!("database actor unavailable: {e}"),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
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
