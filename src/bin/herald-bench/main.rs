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
//!
//! Every run is bounded in count and time. A progress line goes to stderr once per second, a
//! table to stdout at the end, and with `--json` one single-line JSON object as the last
//! stdout line. See docs/benchmarks.md.

mod client;
mod scenarios;
mod stats;

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use scenarios::{BenchResult, Ctx, Progress};

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
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "HERALD_BENCH_URL",
        default_value = "ws://127.0.0.1:8080"
    )]
    url: String,
    /// The server's HS256 JWT secret (at least 32 bytes).
    #[arg(long, global = true, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Print one single-line JSON object as the last line of stdout.
    #[arg(long, global = true)]
    json: bool,
    /// The server's process id: its RSS and CPU are read from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
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
    #[arg(long, global = true)]
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
    let (host, port) = parse_url(&c.url)?;
    let fd_limit = raise_fd_limit();
    let max_conns = fd_limit.saturating_sub(FD_RESERVE) as usize;

    let loopback = host == "localhost" || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback());
    let addrs: Vec<IpAddr> = if loopback {
        (0..c.source_addrs)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2u8.saturating_add(i))))
            .collect()
    } else {
        Vec::new()
    };
    let run_id = c
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());

    // Whatever happens inside the runtime, the process ends shortly after the deadline.
    let deadline = c.deadline;
    std::thread::spawn(move || {
        std::thread::sleep(deadline + Duration::from_secs(30));
        eprintln!("herald-bench: deadline passed and the run did not stop; exiting");
        std::process::exit(3);
    });

    let json = c.json;
    actix_web::rt::System::new().block_on(async move {
        let server = resolve(&host, port).await?;
        let progress = Rc::new(Progress::default());
        progress.quiet.set(c.quiet);
        let ctx = Ctx {
            ws_url: format!("ws://{host}:{port}/v1/ws"),
            http_url: format!("http://{host}:{port}"),
            keys: herald::auth::JwtKeys::hs256(&herald::config::Secret::new(secret)),
            pool: client::ClientPool::new(server, format!("{host}:{port}"), addrs, c.timeout),
            run_id,
            server_pid: c.server_pid,
            timeout: c.timeout,
            concurrency: c.connect_concurrency.max(1),
            max_conns,
            fd_limit,
            progress: progress.clone(),
            machine_cpu: std::cell::RefCell::new(stats::MachineCpu::start()),
            cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        };
        if let Some(pid) = ctx.server_pid {
            if stats::rss_kib(pid).is_none() {
                return Err(format!("--server-pid {pid}: no such process (or /proc unreadable)"));
            }
        }
        if !c.quiet {
            eprintln!(
                "herald-bench: run {} against {} (fd limit {}, at most {} sockets, {} source address(es))",
                ctx.run_id,
                ctx.ws_url,
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
            }
        };
        let mut report = match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("the run exceeded --deadline {}", humantime::format_duration(deadline))),
        };
        report.set("run_id", ctx.run_id.as_str());
        report.set("fd_limit", fd_limit);
        report.set("source_addrs", ctx.pool.addrs.len() as u64);
        report.set("date", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        report.print(json);
        Ok(())
    })
}

/// `ws://host:port` (a path, if any, is ignored) → (host, port).
fn parse_url(url: &str) -> BenchResult<(String, u16)> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("--url {url}: expected ws://HOST:PORT (TLS is not supported)"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.parse::<u16>()
                .map_err(|_| format!("--url {url}: bad port {p:?}"))?,
        ),
        None => (authority.to_owned(), 80),
    };
    if host.is_empty() {
        return Err(format!("--url {url}: no host"));
    }
    Ok((host, port))
}

/// The server's socket address (IPv4: the sockets are IPv4 and bound to 127.0.0.x).
async fn resolve(host: &str, port: u16) -> BenchResult<std::net::SocketAddr> {
    let addrs = actix_web::rt::net::TcpStream::connect((host, port))
        .await
        .and_then(|s| s.peer_addr())
        .map_err(|e| format!("cannot reach {host}:{port}: {e}"))?;
    if !addrs.is_ipv4() {
        return Err(format!(
            "{host}:{port} resolved to {addrs}; only IPv4 is supported"
        ));
    }
    Ok(addrs)
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
    fn urls() {
        assert_eq!(
            parse_url("ws://127.0.0.1:8080").ok(),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            parse_url("ws://localhost:9/v1/ws").ok(),
            Some(("localhost".into(), 9))
        );
        assert!(parse_url("wss://x:1").is_err());
    }

    #[test]
    fn tags() {
        let f = r#"{"type":"message","data":{"body":{"text":"hb1 t=123 id=7 xxx"}}}"#;
        assert_eq!(scenarios::parse_tag(f), Some((123, 7)));
        assert_eq!(scenarios::frame_type(f), "message");
        assert_eq!(scenarios::parse_tag(r#"{"type":"message"}"#), None);
    }
}
