//! The run context every scenario gets ([`Ctx`]: servers, tokens, limits, the stop flag, this
//! process's shard of the run and its barriers) and pausing that ends early when the run is
//! stopped.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::time::sleep;

use crate::client::ClientPool;
use crate::procs::Barrier;
use crate::servers::ServerMeter;
use crate::shard::{self, Shard};
use crate::stats::{self, Report};

use super::{BenchResult, Progress};
/// Everything a scenario needs to reach the server and to report.
pub struct Ctx {
    /// `ws://host:port/v1/ws` of every server (for display; sockets use `pool.servers`).
    pub ws_urls: Vec<String>,
    /// `http://host:port` of every server (REST calls go to the first).
    pub http_urls: Vec<String>,
    pub keys: herald::auth::JwtKeys,
    pub pool: ClientPool,
    /// Short random id put in user and room names so runs never share state.
    pub run_id: String,
    /// The server processes (`--server-pid`; empty in a child of `--procs`).
    pub server_pids: Vec<u32>,
    /// This process's share of the run (`--procs`).
    pub shard: Shard,
    /// In a child of `--procs`: the barriers shared with the other children.
    pub barrier: Option<Barrier>,
    /// Per-operation timeout (connect, join, ack).
    pub timeout: Duration,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// Most sockets this process may open (the file-descriptor limit minus a reserve).
    pub max_conns: usize,
    /// The file-descriptor limit that `max_conns` comes from.
    pub fd_limit: u64,
    pub progress: Rc<Progress>,
    /// Machine-wide CPU since the measured phase began (reset with [`Ctx::measure_from_now`]).
    pub machine_cpu: RefCell<stats::MachineCpu>,
    pub cores: f64,
}

impl Ctx {
    /// Starts the machine-wide CPU meter (call where the server and bench meters start).
    pub fn measure_from_now(&self) {
        *self.machine_cpu.borrow_mut() = stats::MachineCpu::start();
    }

    pub fn token(&self, user: &str) -> BenchResult<String> {
        self.keys
            .mint(user, None, &[], Duration::from_secs(3600))
            .map_err(|e| format!("minting a token for {user}: {e}"))
    }

    pub fn admin_token(&self) -> BenchResult<String> {
        self.keys
            .mint(
                &format!("bench-admin-{}", self.run_id),
                None,
                &["admin"],
                Duration::from_secs(3600),
            )
            .map_err(|e| format!("minting the admin token: {e}"))
    }

    /// Why the run must stop early, if it must.
    pub fn aborted(&self) -> Option<String> {
        self.progress.abort.borrow().clone()
    }

    /// Caps a requested socket count to what the file-descriptor limit allows, with a note.
    pub fn cap(&self, requested: usize, what: &str, report: &mut Report) -> usize {
        if requested > self.max_conns {
            report.note(format!(
                "{what}: {requested} requested, capped to {} by the file-descriptor limit \
                 ({} per process; sockets of one client process)",
                self.max_conns, self.fd_limit
            ));
            report.set("capped_from", requested as u64);
            self.max_conns
        } else {
            requested
        }
    }

    /// RSS of all server processes, summed.
    pub fn server_rss_kib(&self) -> Option<u64> {
        let v: Vec<u64> = self
            .server_pids
            .iter()
            .filter_map(|&p| stats::rss_kib(p))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// Starts measuring the server processes' CPU.
    pub fn server_meter(&self) -> ServerMeter {
        ServerMeter::start(&self.server_pids)
    }

    /// The number of servers (`--url`s).
    pub fn servers(&self) -> usize {
        self.pool.servers.len()
    }

    /// The server of global connection `i` (round-robin).
    pub fn server_of(&self, i: usize) -> usize {
        shard::server_of(i, self.servers())
    }

    /// The REST base URL (the first server).
    pub fn http_url(&self) -> &str {
        &self.http_urls[0]
    }

    /// Waits until every child of `--procs` has reached barrier `name` (and the parent has
    /// taken its readings); returns at once in a single process.
    pub async fn barrier(&self, name: &str) {
        if let Some(b) = &self.barrier {
            if let Err(e) = b.wait(name).await {
                self.progress.stop(e);
            }
        }
    }

    /// `GET /v1/admin/stats` of server `i`, best effort.
    pub async fn server_stats(&self, i: usize) -> Option<Value> {
        let token = self.admin_token().ok()?;
        let url = self.http_urls.get(i)?;
        let fut = async {
            let mut res = self
                .pool
                .http()
                .get(format!("{url}/v1/admin/stats"))
                .bearer_auth(token)
                .send()
                .await
                .ok()?;
            let body = res.body().limit(1 << 20).await.ok()?;
            serde_json::from_slice::<Value>(&body).ok()
        };
        tokio::time::timeout(self.timeout, fut).await.ok().flatten()
    }

    /// `POST /v1/rooms/{room}/members/{user}` with an admin token.
    pub async fn add_member(&self, admin: &str, room: &str, user: &str) -> BenchResult<()> {
        let fut = async {
            let mut res = self
                .pool
                .http()
                .post(format!(
                    "{}/v1/rooms/{room}/members/{user}",
                    self.http_url()
                ))
                .bearer_auth(admin)
                .send()
                .await
                .map_err(|e| format!("add {user} to {room}: {e}"))?;
            if res.status().is_success() {
                Ok(())
            } else {
                let body = res.body().await.unwrap_or_default();
                Err(format!(
                    "add {user} to {room}: HTTP {}: {}",
                    res.status(),
                    String::from_utf8_lossy(&body)
                ))
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("add {user} to {room}: timeout"))?
    }
}

/// Sleeps for `d`, returning early when the run is stopped.
pub async fn pause(ctx: &Ctx, d: Duration) {
    let until = Instant::now() + d;
    while ctx.aborted().is_none() {
        let now = Instant::now();
        if now >= until {
            break;
        }
        sleep((until - now).min(Duration::from_millis(100))).await;
    }
}
