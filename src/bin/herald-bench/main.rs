//! `herald-bench`: a load generator for a running Herald server.
//!
//! It mints tokens for synthetic users with the server's HS256 secret (`HERALD_JWT_SECRET`
//! or `--secret`), raises its open-file limit to the hard limit, spreads its sockets over
//! loopback source addresses (127.0.0.2, 127.0.0.3, ...) and runs one scenario:
//!
//! - `idle`: many authenticated, joined, presence-tracked connections; connect rate and the
//!   server's memory per connection (`--server-pid`).
//! - `fanout`: one room, K publishers, N subscribers; deliveries/s, loss, latency.
//! - `direct`: 1:1 messages with `send` `to`; ack (durable) and delivery latency.
//! - `churn`: connects and disconnects per second with N connections held in one room, and
//!   how fast observers see the `room_presence` joins.
//! - `persist`: stored messages/s and ack latency with many senders.
//! - `hostile`: a mix of hostile clients in loops, from their own loopback addresses, with
//!   the server's RSS and open descriptors sampled once a second (run it next to a normal
//!   workload for a soak).
//! - `nodekill`: cluster mode; users on one node, an observer on another, the users' node
//!   killed (SIGKILL): how long until the observer has seen every user go offline.
//!
//! Several `--url`s (cluster nodes) take the connections round-robin, and several
//! `--server-pid`s are read and summed. With `--procs N` the run is spread over N bench
//! processes (`procs/`), each with its share of the connections (`shard.rs`), and their
//! results are merged.
//!
//! Every run is bounded in count and time. A progress line goes to stderr once per second, a
//! table to stdout at the end, and with `--json` one single-line JSON object as the last
//! stdout line. See docs/benchmarks.md.

mod client;
mod procs;
mod scenarios;
mod servers;
mod shard;
mod stats;
mod targets;

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use scenarios::{BenchResult, Ctx, Progress};
use shard::Shard;

/// Sockets kept free of the file-descriptor budget (stdio, timers, HTTP, /proc reads).
const FD_RESERVE: u64 = 10;

#[derive(Parser)]
#[command(
    name = "herald-bench",
    version,
    about = "Load generator for a running Herald server",
    after_help = "Example: HERALD_JWT_SECRET=... herald-bench fanout --subs 1000 --pubs 4 --rate 500 --secs 10 --json"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Clone)]
#[command(next_help_heading = "Common options")]
struct Common {
    /// The server's base URL; several (repeated or comma-separated): cluster nodes, which
    /// take the connections round-robin.
    #[arg(
        long,
        global = true,
        env = "HERALD_BENCH_URL",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080"
    )]
    url: Vec<String>,
    /// The server's HS256 JWT secret (at least 32 bytes).
    #[arg(long, global = true, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Print one single-line JSON object as the last line of stdout.
    #[arg(long, global = true)]
    json: bool,
    /// The server's process id: its RSS and CPU are read from /proc. Several (repeated or
    /// comma-separated): summed, and reported per process.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Spread the run over N bench processes (each with its share of the connections and its
    /// own source addresses); the results are merged.
    #[arg(long, global = true, default_value_t = 1)]
    procs: usize,
    /// Set by a `--procs` parent in its children: `INDEX/COUNT`.
    #[arg(long, global = true, hide = true, env = procs::SHARD_ENV)]
    shard: Option<String>,
    /// Loopback source addresses to spread sockets over (127.0.0.2 ...); 0: let the kernel pick.
    #[arg(long, global = true, default_value_t = 8)]
    source_addrs: u8,
    /// Connection attempts in flight at once.
    #[arg(long, global = true, default_value_t = 256)]
    connect_concurrency: usize,
    /// Timeout of each operation (connect, join, ack, HTTP).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Hard limit on the whole run; the process exits when it passes.
    #[arg(long, global = true, default_value = "10m", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Stop the run when the server's RSS exceeds this (needs --server-pid).
    #[arg(long, global = true, default_value_t = 12_288)]
    max_server_rss_mib: u64,
    /// Id put in user and room names (default: random), so runs never share state.
    #[arg(long, global = true, env = procs::RUN_ID_ENV)]
    run_id: Option<String>,
    /// No progress line.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Scenario {
    /// Idle connections: connect rate and server memory per connection.
    Idle(scenarios::idle::IdleArgs),
    /// One room, K publishers, N subscribers: deliveries/s, loss, latency.
    Fanout(scenarios::fanout::FanoutArgs),
    /// 1:1 messages (`send` with `to`): ack and delivery latency.
    Direct(scenarios::direct::DirectArgs),
    /// Connects and disconnects per second with N held, and presence join latency.
    Churn(scenarios::churn::ChurnArgs),
    /// Stored messages per second and ack latency.
    Persist(scenarios::persist::PersistArgs),
    /// Hostile clients in loops (run next to a normal workload): what the server refused and closed, its RSS and fds.
    Hostile(scenarios::hostile::HostileArgs),
    /// Cluster: kill the node of N users (SIGKILL) and time until an observer on another node saw them all offline.
    Nodekill(scenarios::nodekill::NodekillArgs),
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Idle(_) => "idle",
            Scenario::Fanout(_) => "fanout",
            Scenario::Direct(_) => "direct",
            Scenario::Churn(_) => "churn",
            Scenario::Persist(_) => "persist",
            Scenario::Hostile(_) => "hostile",
            Scenario::Nodekill(_) => "nodekill",
        }
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("HERALD_BENCH_LOG", "error"))
        .init();
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> BenchResult<()> {
    let c = cli.common;
    let secret = c
        .secret
        .clone()
        .ok_or("no secret: set HERALD_JWT_SECRET or pass --secret (the server's HS256 secret)")?;
    if secret.len() < 32 {
        return Err(format!(
            "the secret is {} bytes long; Herald requires at least 32",
            secret.len()
        ));
    }
    let targets = targets::parse_urls(&c.url)?;
    let shard = match &c.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::SOLO,
    };
    let run_id = c
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
    for &pid in &c.server_pid {
        if stats::rss_kib(pid).is_none() {
            return Err(format!(
                "--server-pid {pid}: no such process (or /proc unreadable)"
            ));
        }
    }
    if c.procs > 1 && !shard.is_child() {
        spawn_watchdog(c.deadline);
        return procs::run_parent(procs::ParentOptions {
            procs: c.procs,
            scenario: cli.scenario.name(),
            server_pids: c.server_pid.clone(),
            run_id,
            json: c.json,
            quiet: c.quiet,
            max_server_rss_kib: c.max_server_rss_mib.saturating_mul(1024),
        });
    }
    let fd_limit = raise_fd_limit();
    let max_conns = fd_limit.saturating_sub(FD_RESERVE) as usize;
    let addrs: Vec<IpAddr> = if targets::all_loopback(&targets) {
        shard.source_addrs(c.source_addrs)?
    } else {
        Vec::new()
    };
    // A child's server readings are taken by its parent.
    let server_pids = if shard.is_child() {
        Vec::new()
    } else {
        c.server_pid.clone()
    };
    let barrier = shard.is_child().then(procs::Barrier::from_stdin);

    let deadline = c.deadline;
    spawn_watchdog(deadline);
    // A child always hands its parent a JSON line.
    let json = c.json || shard.is_child();
    actix_web::rt::System::new().block_on(async move {
        let servers = targets::resolve_all(&targets).await?;
        let progress = Rc::new(Progress::default());
        progress.quiet.set(c.quiet);
        let ctx = Ctx {
            ws_urls: targets
                .iter()
                .map(|(h, p)| format!("ws://{h}:{p}/v1/ws"))
                .collect(),
            http_urls: targets
                .iter()
                .map(|(h, p)| format!("http://{h}:{p}"))
                .collect(),
            keys: herald::auth::JwtKeys::hs256(&herald::config::Secret::new(secret)),
            pool: client::ClientPool::new(servers, addrs, c.timeout),
            run_id,
            server_pids,
            shard,
            barrier,
            timeout: c.timeout,
            concurrency: c.connect_concurrency.max(1),
            max_conns,
            fd_limit,
            progress: progress.clone(),
            machine_cpu: std::cell::RefCell::new(stats::MachineCpu::start()),
            cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        };
        if !c.quiet {
            eprintln!(
                "herald-bench: run {}{} against {} (fd limit {}, at most {} sockets, {} source address(es))",
                ctx.run_id,
                if shard.is_child() { format!(" shard {}/{}", shard.index, shard.count) } else { String::new() },
                ctx.ws_urls.join(", "),
                fd_limit,
                max_conns,
                ctx.pool.addrs.len()
            );
        }
        scenarios::spawn_progress(&ctx, c.max_server_rss_mib.saturating_mul(1024));
        {
            let progress = progress.clone();
            actix_web::rt::spawn(async move {
                if actix_web::rt::signal::ctrl_c().await.is_ok() {
                    progress.stop("interrupted (Ctrl-C)".into());
                }
            });
        }
        let fut = async {
            match &cli.scenario {
                Scenario::Idle(a) => scenarios::idle::run(&ctx, a).await,
                Scenario::Fanout(a) => scenarios::fanout::run(&ctx, a).await,
                Scenario::Direct(a) => scenarios::direct::run(&ctx, a).await,
                Scenario::Churn(a) => scenarios::churn::run(&ctx, a).await,
                Scenario::Persist(a) => scenarios::persist::run(&ctx, a).await,
                Scenario::Hostile(a) => scenarios::hostile::run(&ctx, a).await,
                Scenario::Nodekill(a) => scenarios::nodekill::run(&ctx, a).await,
            }
        };
        let mut report = match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("the run exceeded --deadline {}", humantime::format_duration(deadline))),
        };
        report.set("run_id", ctx.run_id.as_str());
        report.set("fd_limit", fd_limit);
        report.set("source_addrs", ctx.pool.addrs.len() as u64);
        report.set("servers_urls", serde_json::json!(ctx.ws_urls));
        if shard.is_child() {
            report.set("shard", format!("{}/{}", shard.index, shard.count));
            report.keep_private = true;
        }
        report.set("date", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        report.print(json);
        Ok(())
    })
}

/// Whatever happens inside the runtime, the process ends shortly after the deadline.
fn spawn_watchdog(deadline: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline + Duration::from_secs(30));
        eprintln!("herald-bench: deadline passed and the run did not stop; exiting");
        std::process::exit(3);
    });
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            } else {
                eprintln!(
                    "herald-bench: could not raise the open-file limit from {} to {}",
                    lim.rlim_cur, lim.rlim_max
                );
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_and_pids_parse() {
        let cli = Cli::try_parse_from([
            "herald-bench",
            "--url",
            "ws://127.0.0.1:1,ws://127.0.0.1:2",
            "--url=ws://127.0.0.1:3",
            "--server-pid",
            "10,11",
            "--server-pid",
            "12",
            "idle",
            "--procs",
            "3",
        ]);
        let c = cli.map(|c| c.common);
        assert!(c.is_ok());
        if let Ok(c) = c {
            assert_eq!(c.url.len(), 3);
            assert_eq!(c.server_pid, vec![10, 11, 12]);
            assert_eq!(c.procs, 3);
        }
    }

    #[test]
    fn tags() {
        let f = r#"{"type":"message","data":{"body":{"text":"hb1 t=123 id=7 xxx"}}}"#;
        assert_eq!(scenarios::parse_tag(f), Some((123, 7, None)));
        let g = r#"{"type":"message","data":{"body":{"text":"hb1 t=123 id=7 s=2 xxx"}}}"#;
        assert_eq!(scenarios::parse_tag(g), Some((123, 7, Some(2))));
        assert_eq!(scenarios::frame_type(f), "message");
        assert_eq!(scenarios::parse_tag(r#"{"type":"message"}"#), None);
    }
}
