//! `hostile`: a mix of hostile clients, each kind in a loop for `--secs`, to run next to a
//! normal workload (a soak). Every attack connects from its own loopback source address,
//! 127.0.0.`--attack-from` + offset, away from the 127.0.0.2+ addresses the other scenarios
//! spread over, so the per-address limits that stop the attackers never touch the normal
//! clients. With `--server-pid` the server's RSS and open descriptors (`/proc/PID/fd`) are
//! sampled once a second.
//!
//! | Offset | Attack |
//! |---|---|
//! | +0 | Token-less Engine.IO polling handshakes (`GET /socket.io/?EIO=4&transport=polling`) at `--eio-rate` |
//! | +1 | A silent WebSocket upgrade probe for every `--probe-every`th sid handed out |
//! | +2 | TCP connections that never send a request head, at `--silent-rate` |
//! | +3 | `--zombies` authenticated sessions with a 4 KiB receive buffer that join `--zombie-room` and never read; after `--zombie-hold` each drains its socket to see whether the server dropped it, and a new one takes its place |
//! | +4 | A frame flooder pipelining `history`, `typing` and `watch` at `--flood-rate`, reconnecting when closed |
//! | +5 | `POST /v1/rooms` with `Upgrade: websocket` headers and a `Content-Length` body that never arrives, at `--stall-rate` |
//! | +6 | A reconnect storm of one user at `--storm-rate` (upgrade, then drop the socket) |
//! | +7 | The feeder: a well-behaved member sending `--feed-rate` messages/s to the attackers' room, whose history the flooder asks for |
//!
//! Errors are counted by kind, never fatal. A connection the attacker holds waits at most
//! [`HOLD_LIMIT`] for the server to close it; what is still open then is counted as such.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_http::ws::{OpCode, Parser};
use actix_web::rt::net::{TcpSocket, TcpStream};
use actix_web::web::BytesMut;
use clap::Args;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{interval, MissedTickBehavior};

use super::{frame_type, join, pause, report_resources, BenchResult, Ctx};
use crate::client::{self, ConnectError, Event, Handler, Reply};
use crate::stats::{self, fmt_int, CpuMeter, Lat, Report};

/// Longest an attacker waits for the server to close a connection it holds.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// Most connections one attack holds at once; an attempt beyond it is skipped (and counted).
const MAX_HELD: u64 = 1000;

/// Receive buffer of a zombie socket.
const ZOMBIE_RCVBUF: u32 = 4096;

/// How long a zombie drains its socket before concluding the server still serves it.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Most bytes of an HTTP answer kept.
const MAX_ANSWER: usize = 64 * 1024;

/// Distinct users the flooder cycles through (new sessions per user are rate-limited).
const FLOOD_USERS: u64 = 4;

#[derive(Args, Clone, Debug)]
pub struct HostileArgs {
    /// Attack time in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub secs: f64,
    /// First loopback source address of the attackers (127.0.0.N); they use N to N+7.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(2..=247))]
    pub attack_from: u8,
    /// Token-less Engine.IO polling handshakes per second.
    #[arg(long, default_value_t = 20.0)]
    pub eio_rate: f64,
    /// Follow every Nth sid handed out with a silent WebSocket upgrade probe (0: never).
    #[arg(long, default_value_t = 4)]
    pub probe_every: u64,
    /// TCP connections per second that never send a request head.
    #[arg(long, default_value_t = 10.0)]
    pub silent_rate: f64,
    /// Zombie sessions held at once.
    #[arg(long, default_value_t = 20)]
    pub zombies: usize,
    /// How long a zombie stays silent before it drains its socket.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub zombie_hold: Duration,
    /// Room the zombies join (default: the attackers' room `public:hostile-<run>`).
    #[arg(long)]
    pub zombie_room: Option<String>,
    /// Frames per second the flooder pipelines (`history`, `typing`, `watch` in turn).
    #[arg(long, default_value_t = 1000.0)]
    pub flood_rate: f64,
    /// Stalled `POST`s with upgrade headers per second.
    #[arg(long, default_value_t = 5.0)]
    pub stall_rate: f64,
    /// Reconnects per second of the storming user.
    #[arg(long, default_value_t = 20.0)]
    pub storm_rate: f64,
    /// Messages per second the feeder sends to the attackers' room (0: no feeder).
    #[arg(long, default_value_t = 20.0)]
    pub feed_rate: f64,
    /// Padding bytes of each fed message.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    pub feed_pad: u32,
    /// Wait after the attack before the last RSS and descriptor reading.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
}

/// What one attack did and how the server answered.
#[derive(Default)]
struct Tally {
    /// Outcomes by name (`attempts`, `accepted`, `refused_http_429`, `closed_by_server`...).
    counts: RefCell<BTreeMap<String, u64>>,
    /// How long the server let a held connection live before closing it.
    held: RefCell<Lat>,
    /// Connections (or requests) the attack holds now.
    open: Cell<u64>,
    /// The most it held at once.
    peak_open: Cell<u64>,
}

impl Tally {
    fn add(&self, what: &str) {
        *self.counts.borrow_mut().entry(what.to_owned()).or_default() += 1;
    }

    fn get(&self, what: &str) -> u64 {
        self.counts.borrow().get(what).copied().unwrap_or(0)
    }

    /// Counts one held connection until the guard drops; `None` at [`MAX_HELD`].
    fn hold(self: &Rc<Self>) -> Option<Held> {
        if self.open.get() >= MAX_HELD {
            self.add("skipped_at_max_held");
            return None;
        }
        self.open.set(self.open.get() + 1);
        self.peak_open
            .set(self.peak_open.get().max(self.open.get()));
        Some(Held(self.clone()))
    }

    /// Records whether (and when) the server closed a held connection.
    fn closed(&self, after: Option<Duration>) {
        match after {
            Some(d) => {
                self.add("closed_by_server");
                self.held.borrow_mut().record(d);
            }
            None => self.add("still_open_at_hold_limit"),
        }
    }

    fn text(&self) -> String {
        let c = self.counts.borrow();
        if c.is_empty() {
            return "none".into();
        }
        c.iter()
            .map(|(k, v)| format!("{k}={}", fmt_int(*v as f64)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn to_json(&self) -> Value {
        let mut m: Map<String, Value> = self
            .counts
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        m.insert("peak_open".into(), json!(self.peak_open.get()));
        m.insert("open_at_report".into(), json!(self.open.get()));
        self.held.borrow().to_json("held_", &mut m);
        Value::Object(m)
    }
}

/// One connection held by an attack (see [`Tally::hold`]).
struct Held(Rc<Tally>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get().saturating_sub(1));
    }
}

/// The attacks' tallies, in report order: (key, label, tally).
struct Attacks(Vec<(&'static str, &'static str, Rc<Tally>)>);

impl Attacks {
    fn new() -> Self {
        Attacks(
            [
                ("eio", "token-less Engine.IO handshakes"),
                ("probe", "silent upgrade probes"),
                ("silent", "TCP without a request head"),
                ("zombie", "zombie sessions (4 KiB, never read)"),
                ("flood", "frame flooder"),
                ("stall", "upgrade-header POST, body never sent"),
                ("storm", "reconnect storm of one user"),
                ("feed", "feeder (well-behaved)"),
            ]
            .into_iter()
            .map(|(k, l)| (k, l, Rc::new(Tally::default())))
            .collect(),
        )
    }

    fn get(&self, key: &str) -> Rc<Tally> {
        self.0
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, t)| t.clone())
            .unwrap_or_default()
    }
}

/// Where raw attacker sockets connect (owned, so spawned attempts can keep it).
struct Target {
    server: SocketAddr,
    /// `host:port` for the `Host` header.
    authority: String,
    timeout: Duration,
}

/// Server RSS (KiB) and open descriptors, sampled once a second.
#[derive(Default)]
struct Samples {
    start: Option<(u64, usize)>,
    /// (KiB, seconds into the run).
    peak_rss: Option<(u64, f64)>,
    /// (descriptors, seconds into the run).
    peak_fds: Option<(usize, f64)>,
    /// (seconds, KiB, descriptors) every 10 s.
    timeline: Vec<(u64, u64, usize)>,
}

pub async fn run(ctx: &Ctx, a: &HostileArgs) -> BenchResult<Report> {
    let mut r = Report::new("hostile");
    let server_cpu = CpuMeter::start(ctx.server_pid);
    ctx.measure_from_now();
    let self_cpu = CpuMeter::start(None);
    let attacks = Attacks::new();
    let own_room = format!("public:hostile-{}", ctx.run_id);
    let zombie_room = a.zombie_room.clone().unwrap_or_else(|| own_room.clone());
    let target = Rc::new(Target {
        server: ctx.pool.server,
        authority: ctx.pool.authority.clone(),
        timeout: ctx.timeout,
    });
    let from = |offset: u8| Ipv4Addr::new(127, 0, 0, a.attack_from + offset);
    let secs = Duration::from_secs_f64(a.secs.max(0.0));
    let started = Instant::now();
    let end = started + secs;
    let done = Cell::new(false);
    let at_end: Cell<Option<(u64, usize)>> = Cell::new(None);

    ctx.progress.phase("attack");
    let attack = async {
        // The feeder first, so the flooder's history requests find messages.
        let eio = {
            let (t, eio, probe) = (target.clone(), attacks.get("eio"), attacks.get("probe"));
            let (f0, f1, every) = (from(0), from(1), a.probe_every);
            paced(ctx, a.eio_rate, end, move |_| {
                spawn(tokenless(
                    t.clone(),
                    f0,
                    f1,
                    every,
                    eio.clone(),
                    probe.clone(),
                ))
            })
        };
        let silent = {
            let (t, tally) = (target.clone(), attacks.get("silent"));
            let f = from(2);
            paced(ctx, a.silent_rate, end, move |_| {
                spawn(silent(t.clone(), f, tally.clone()))
            })
        };
        let stall = {
            let (t, tally) = (target.clone(), attacks.get("stall"));
            let token = ctx.token(&format!("hs-{}", ctx.run_id))?;
            let f = from(5);
            paced(ctx, a.stall_rate, end, move |_| {
                spawn(stall(t.clone(), f, token.clone(), tally.clone()))
            })
        };
        let storm = {
            let (t, tally) = (target.clone(), attacks.get("storm"));
            let token = ctx.token(&format!("hr-{}", ctx.run_id))?;
            let f = from(6);
            paced(ctx, a.storm_rate, end, move |_| {
                spawn(storm(t.clone(), f, token.clone(), tally.clone()))
            })
        };
        let zombies = futures_util::future::join_all((0..a.zombies).map(|slot| {
            zombie(
                ctx,
                &target,
                from(3),
                slot,
                &zombie_room,
                a.zombie_hold,
                end,
                attacks.get("zombie"),
            )
        }));
        let flood = flooder(
            ctx,
            from(4),
            &own_room,
            a.flood_rate,
            end,
            attacks.get("flood"),
        );
        let feed = feeder(
            ctx,
            from(7),
            &own_room,
            a.feed_rate,
            a.feed_pad as usize,
            end,
            attacks.get("feed"),
        );
        tokio::join!(eio, silent, stall, storm, zombies, flood, feed);
        at_end.set(server_reading(ctx));
        ctx.progress.phase("settle");
        pause(ctx, a.settle).await;
        done.set(true);
        BenchResult::Ok(())
    };
    let (attacked, samples) = tokio::join!(attack, sample(ctx, &attacks, &done));
    attacked?;
    let attack_time = started.elapsed().saturating_sub(a.settle);

    r.row(
        "attack",
        format!(
            "{:.0} s from 127.0.0.{}-{}, then {} s of settle",
            attack_time.as_secs_f64(),
            a.attack_from,
            a.attack_from + 7,
            a.settle.as_secs()
        ),
    );
    r.row("zombie room", zombie_room.as_str());
    let mut by_kind = Map::new();
    let mut not_stopped = Vec::new();
    for (key, label, tally) in &attacks.0 {
        r.row(*label, tally.text());
        if tally.held.borrow().count() > 0 {
            r.row(
                format!("{label}: held until closed"),
                tally.held.borrow().summary(),
            );
        }
        let lingering = tally.get("still_open_at_hold_limit") + tally.get("not_dropped");
        if lingering > 0 {
            not_stopped.push(format!("{key} {lingering}"));
        }
        by_kind.insert((*key).to_owned(), tally.to_json());
    }
    if !not_stopped.is_empty() {
        r.note(format!(
            "connections the server did not close in time: {}",
            not_stopped.join(", ")
        ));
    }
    r.set("attacks", Value::Object(by_kind));
    report_samples(&mut r, &samples, at_end.get(), server_reading(ctx));
    r.set("secs", attack_time.as_secs_f64());
    r.set("attack_from", a.attack_from);
    r.set("zombie_room", zombie_room.as_str());
    if let Some(s) = ctx.server_stats().await {
        r.row(
            "server hostile counters",
            format!(
                "{}, slow_consumers_total {}",
                s.get("hostile").cloned().unwrap_or(Value::Null),
                s.get("slow_consumers_total")
                    .cloned()
                    .unwrap_or(Value::Null)
            ),
        );
    }
    report_resources(ctx, &mut r, &server_cpu, &self_cpu).await;
    Ok(r)
}

/// The server's RSS (KiB) and open descriptors now.
fn server_reading(ctx: &Ctx) -> Option<(u64, usize)> {
    let pid = ctx.server_pid?;
    Some((stats::rss_kib(pid)?, open_fds(pid)?))
}

fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Samples the server once a second until `done`; a line on stderr every 30 s.
async fn sample(ctx: &Ctx, attacks: &Attacks, done: &Cell<bool>) -> Samples {
    let mut s = Samples::default();
    if ctx.server_pid.is_none() {
        return s;
    }
    let started = Instant::now();
    let mut tick = interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !done.get() {
        tick.tick().await;
        let Some((rss, fds)) = server_reading(ctx) else {
            continue;
        };
        let at = started.elapsed().as_secs_f64();
        s.start.get_or_insert((rss, fds));
        if s.peak_rss.is_none_or(|(p, _)| rss > p) {
            s.peak_rss = Some((rss, at));
        }
        if s.peak_fds.is_none_or(|(p, _)| fds > p) {
            s.peak_fds = Some((fds, at));
        }
        let whole = at.round() as u64;
        if whole % 10 == 0 && s.timeline.last().is_none_or(|l| l.0 != whole) {
            s.timeline.push((whole, rss, fds));
            if whole % 30 == 0 && !ctx.progress.quiet.get() {
                let counts = attacks
                    .0
                    .iter()
                    .map(|(k, _, t)| format!("{k} {}", t.get("attempts") + t.get("frames_sent")))
                    .collect::<Vec<_>>()
                    .join(", ");
                eprintln!(
                    "herald-bench: hostile at {whole} s: server {} MiB, {fds} fds; actions {counts}",
                    rss / 1024
                );
            }
        }
    }
    s
}

fn report_samples(
    r: &mut Report,
    s: &Samples,
    at_end: Option<(u64, usize)>,
    settled: Option<(u64, usize)>,
) {
    let (Some(start), Some(peak_rss), Some(peak_fds)) = (s.start, s.peak_rss, s.peak_fds) else {
        r.row("server RSS and fds", "n/a (pass --server-pid)");
        return;
    };
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    r.row(
        "server RSS (MiB)",
        format!(
            "start {}, peak {} (at {:.0} s), end of attack {}, after settle {}",
            mib(start.0),
            mib(peak_rss.0),
            peak_rss.1,
            at_end.map_or("?".into(), |e| mib(e.0)),
            settled.map_or("?".into(), |e| mib(e.0)),
        ),
    );
    r.row(
        "server open fds",
        format!(
            "start {}, peak {} (at {:.0} s), end of attack {}, after settle {}",
            start.1,
            peak_fds.0,
            peak_fds.1,
            at_end.map_or("?".into(), |e| e.1.to_string()),
            settled.map_or("?".into(), |e| e.1.to_string()),
        ),
    );
    r.row(
        "server RSS MiB / fds every 60 s",
        s.timeline
            .iter()
            .filter(|(t, _, _)| t % 60 == 0)
            .map(|(t, k, f)| format!("{t}s {} / {f}", mib(*k)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    r.set("server_rss_start_kib", start.0);
    r.set("server_rss_peak_kib", peak_rss.0);
    r.set("server_rss_peak_at_s", peak_rss.1);
    r.set("server_rss_attack_end_kib", json!(at_end.map(|e| e.0)));
    r.set("server_rss_settled_kib", json!(settled.map(|e| e.0)));
    r.set("server_fds_start", start.1 as u64);
    r.set("server_fds_peak", peak_fds.0 as u64);
    r.set("server_fds_attack_end", json!(at_end.map(|e| e.1)));
    r.set("server_fds_settled", json!(settled.map(|e| e.1)));
    r.set("server_timeline", json!(s.timeline));
}

/// Calls `f` `rate` times a second until `end` or the run stops (never catching up on
/// more than one second of delay).
async fn paced(ctx: &Ctx, rate: f64, end: Instant, mut f: impl FnMut(u64)) {
    if rate <= 0.0 {
        return;
    }
    let started = Instant::now();
    let mut done = 0u64;
    let mut tick = interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while Instant::now() < end && ctx.aborted().is_none() {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        done = done.max(due.saturating_sub(rate.ceil() as u64));
        while done < due {
            f(done);
            done += 1;
        }
    }
}

fn spawn(fut: impl Future<Output = ()> + 'static) {
    actix_web::rt::spawn(fut);
}

/// An I/O error as an outcome name (`error_refused`, `error_reset`...).
fn io_kind(e: &std::io::Error) -> String {
    format!("error_{}", ConnectError::Io(e.to_string()).kind())
}

/// A TCP connection to the server from `from`, with a small receive buffer when asked.
async fn open(t: &Target, from: Ipv4Addr, rcvbuf: Option<u32>) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| io_kind(&e))?;
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .map_err(|e| io_kind(&e))?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).map_err(|e| io_kind(&e))?;
    }
    match tokio::time::timeout(t.timeout, socket.connect(t.server)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(io_kind(&e)),
        Err(_) => Err("error_connect_timeout".into()),
    }
}

fn upgrade_request(path: &str, authority: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         User-Agent: herald-bench-hostile\r\n\r\n"
    )
}

/// Writes `request` and reads the answer: up to the end of its head, or with `to_end` until
/// the server closes (or `wait` passes with the head in). The status and the bytes read.
async fn exchange(
    s: &mut TcpStream,
    request: &[u8],
    wait: Duration,
    to_end: bool,
) -> Result<(u16, Vec<u8>), String> {
    s.write_all(request).await.map_err(|e| io_kind(&e))?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_done = buf.windows(4).any(|w| w == b"\r\n\r\n");
        if (head_done && !to_end) || buf.len() > MAX_ANSWER {
            break;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) if buf.is_empty() => return Err(io_kind(&e)),
            Ok(Err(_)) => break,
            Err(_) if head_done => break,
            Err(_) if buf.is_empty() => return Err("no_answer".into()),
            Err(_) => return Err("partial_answer".into()),
        }
    }
    if buf.is_empty() {
        return Err("closed_without_answer".into());
    }
    let status = String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "bad_answer".to_owned())?;
    Ok((status, buf))
}

/// Reads (and drops) what comes until the server closes the connection: how long that took
/// (`None` after [`HOLD_LIMIT`]) and the first bytes received.
async fn until_closed(s: &mut TcpStream) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + HOLD_LIMIT;
    let mut first = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return (None, first),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(started.elapsed()), first),
            Ok(Ok(n)) => {
                if first.len() < 256 {
                    first.extend_from_slice(&chunk[..n.min(256 - first.len())]);
                }
            }
        }
    }
}

fn sid_in(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let (_, rest) = text.split_once("\"sid\":\"")?;
    rest.split('"').next().map(str::to_owned)
}

/// (a) One token-less Engine.IO polling handshake; every `probe_every`th sid handed out is
/// followed by a WebSocket upgrade probe that never speaks.
async fn tokenless(
    t: Rc<Target>,
    from: Ipv4Addr,
    probe_from: Ipv4Addr,
    probe_every: u64,
    eio: Rc<Tally>,
    probe: Rc<Tally>,
) {
    eio.add("attempts");
    let Some(held) = eio.hold() else { return };
    let mut s = match open(&t, from, None).await {
        Ok(s) => s,
        Err(e) => return eio.add(&e),
    };
    let req = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        t.authority
    );
    let sid = match exchange(&mut s, req.as_bytes(), t.timeout, true).await {
        Ok((200, body)) => match sid_in(&body) {
            Some(sid) => {
                eio.add("accepted");
                sid
            }
            None => return eio.add("http_200_without_sid"),
        },
        Ok((status, _)) => return eio.add(&format!("refused_http_{status}")),
        Err(e) => return eio.add(&e),
    };
    drop(s);
    drop(held);
    if probe_every == 0 || eio.get("accepted") % probe_every != 0 {
        return;
    }
    probe.add("attempts");
    let Some(_held) = probe.hold() else { return };
    let mut s = match open(&t, probe_from, None).await {
        Ok(s) => s,
        Err(e) => return probe.add(&e),
    };
    let path = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let req = upgrade_request(&path, &t.authority);
    match exchange(&mut s, req.as_bytes(), t.timeout, false).await {
        Ok((101, _)) => {
            probe.add("upgraded");
            probe.closed(until_closed(&mut s).await.0);
        }
        Ok((status, _)) => probe.add(&format!("refused_http_{status}")),
        Err(e) => probe.add(&e),
    }
}

/// (b) A TCP connection that never sends a request head.
async fn silent(t: Rc<Target>, from: Ipv4Addr, tally: Rc<Tally>) {
    tally.add("attempts");
    let Some(_held) = tally.hold() else { return };
    match open(&t, from, None).await {
        Ok(mut s) => tally.closed(until_closed(&mut s).await.0),
        Err(e) => tally.add(&e),
    }
}

/// (e) `POST /v1/rooms` with upgrade headers and a `Content-Length` whose body never comes.
async fn stall(t: Rc<Target>, from: Ipv4Addr, token: String, tally: Rc<Tally>) {
    tally.add("attempts");
    let Some(_held) = tally.hold() else { return };
    let mut s = match open(&t, from, None).await {
        Ok(s) => s,
        Err(e) => return tally.add(&e),
    };
    let req = format!(
        "POST /v1/rooms HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"na",
        t.authority
    );
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return tally.add(&io_kind(&e));
    }
    let (closed, first) = until_closed(&mut s).await;
    if let Some(status) = String::from_utf8_lossy(&first)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
    {
        tally.add(&format!("answered_http_{status}"));
    }
    tally.closed(closed);
}

/// (f) One reconnect of the storming user: the upgrade, then the socket dropped.
async fn storm(t: Rc<Target>, from: Ipv4Addr, token: String, tally: Rc<Tally>) {
    tally.add("attempts");
    let Some(_held) = tally.hold() else { return };
    let mut s = match open(&t, from, None).await {
        Ok(s) => s,
        Err(e) => return tally.add(&e),
    };
    let req = upgrade_request(&format!("/v1/ws?token={token}"), &t.authority);
    match exchange(&mut s, req.as_bytes(), t.timeout, false).await {
        Ok((101, _)) => tally.add("upgraded"),
        Ok((status, _)) => tally.add(&format!("refused_http_{status}")),
        Err(e) => tally.add(&e),
    }
}

/// (c) One zombie slot: an authenticated session with a 4 KiB receive buffer joins `room`
/// and never reads; after `hold` (or at `end`) it drains its socket to learn whether the
/// server dropped it, and starts over.
#[allow(clippy::too_many_arguments)]
async fn zombie(
    ctx: &Ctx,
    t: &Target,
    from: Ipv4Addr,
    slot: usize,
    room: &str,
    hold: Duration,
    end: Instant,
    tally: Rc<Tally>,
) {
    let user = format!("hz-{}-{slot}", ctx.run_id);
    // Zombies start spread over the first second, not all at once.
    pause(ctx, Duration::from_millis(50 * slot as u64 % 1000)).await;
    while Instant::now() < end && ctx.aborted().is_none() {
        tally.add("attempts");
        let Ok(token) = ctx.token(&user) else {
            tally.add("token_error");
            return;
        };
        let mut s = match open(t, from, Some(ZOMBIE_RCVBUF)).await {
            Ok(s) => s,
            Err(e) => {
                tally.add(&e);
                pause(ctx, Duration::from_secs(1)).await;
                continue;
            }
        };
        let req = upgrade_request(&format!("/v1/ws?token={token}"), &t.authority);
        // The bytes read after the head (the first frames) are where the stream continues.
        let early = match exchange(&mut s, req.as_bytes(), t.timeout, false).await {
            Ok((101, answer)) => {
                let head = answer
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(answer.len(), |i| i + 4);
                BytesMut::from(&answer[head..])
            }
            Ok((status, _)) => {
                tally.add(&format!("refused_http_{status}"));
                pause(ctx, Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tally.add(&e);
                pause(ctx, Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut frame = BytesMut::new();
        let text = json!({"type": "join", "ref": 1, "data": {"room": room}}).to_string();
        Parser::write_message(&mut frame, text, OpCode::Text, true, true);
        if let Err(e) = s.write_all(&frame).await {
            tally.add(&io_kind(&e));
            continue;
        }
        tally.add("joined_and_silent");
        let Some(_held) = tally.hold() else { return };
        let planned = Instant::now() + hold;
        let until = planned.min(end);
        pause(ctx, until.saturating_duration_since(Instant::now())).await;
        match drain(&mut s, early).await.as_str() {
            // The attack ended before this zombie had been silent for `hold`.
            "not_dropped" if until < planned => tally.add("open_at_end_of_attack"),
            outcome => tally.add(outcome),
        }
    }
}

/// Reads everything the server sent a zombie: `dropped_close_<code>` when the stream holds a
/// close frame, `dropped_eof` or `dropped_error_*` when it ends without one, `not_dropped`
/// when it is still open after [`DRAIN_WAIT`]. `buf` holds what was read with the upgrade.
async fn drain(s: &mut TcpStream, mut buf: BytesMut) -> String {
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    loop {
        loop {
            match client::parse(&mut buf) {
                Ok(Some((_, OpCode::Close, payload))) => {
                    return format!(
                        "dropped_close_{}",
                        client::close_code(payload.as_deref())
                            .map_or("without_code".into(), |c| c.to_string())
                    )
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return "protocol_error".into(),
            }
        }
        buf.reserve(64 * 1024);
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Err(_) => return "not_dropped".into(),
            Ok(Ok(0)) => return "dropped_eof".into(),
            Ok(Err(e)) => return format!("dropped_{}", io_kind(&e)),
            Ok(Ok(_)) => {}
        }
    }
}

/// (d) The frame flooder: joins `room`, pipelines `history`, `typing` and `watch` frames at
/// `rate` a second without waiting for replies, and reconnects when the server closes it.
async fn flooder(ctx: &Ctx, from: Ipv4Addr, room: &str, rate: f64, end: Instant, t: Rc<Tally>) {
    if rate <= 0.0 {
        return;
    }
    let mut n = 0u64;
    while Instant::now() < end && ctx.aborted().is_none() {
        let user = format!("hf-{}-{}", ctx.run_id, n % FLOOD_USERS);
        n += 1;
        t.add("attempts");
        let Ok(token) = ctx.token(&user) else {
            t.add("token_error");
            return;
        };
        let closed: Rc<RefCell<Option<String>>> = Rc::default();
        let handler: Handler = {
            let (t, closed) = (t.clone(), closed.clone());
            Box::new(move |ev| match ev {
                Event::Text(text, _) => match frame_type(text) {
                    "ack" => t.add("reply_ack"),
                    "error" => {
                        let code = text
                            .split_once(r#""code":""#)
                            .and_then(|(_, r)| r.split('"').next())
                            .unwrap_or("?");
                        t.add(&format!("reply_error_{code}"));
                    }
                    _ => {}
                },
                Event::Closed(info) => {
                    *closed.borrow_mut() = Some(match (info.by_us, info.code) {
                        (true, _) => "closed_by_us".into(),
                        (false, Some(code)) => format!("closed_by_server_{code}"),
                        (false, None) => "closed_by_server_without_code".into(),
                    });
                }
            })
        };
        let conn = match client::connect_from(
            &ctx.pool,
            Some(IpAddr::V4(from)),
            &user,
            &token,
            ctx.timeout,
            handler,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                t.add(&format!("refused_{}", e.kind()));
                pause(ctx, Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Err((kind, _)) = join(&conn, room, ctx.timeout).await {
            t.add(&kind);
        }
        let started = Instant::now();
        let mut sent = 0u64;
        let mut tick = interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        'flood: while conn.is_open() && Instant::now() < end && ctx.aborted().is_none() {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            while sent < due {
                let r = format!("f{n}-{sent}");
                let frame = match sent % 3 {
                    0 => json!({"type": "history", "ref": r, "data": {"room": room, "limit": 100}}),
                    1 => {
                        json!({"type": "typing", "ref": r, "data": {"room": room, "state": "start"}})
                    }
                    _ => json!({"type": "watch", "ref": r, "data": {"users": [user]}}),
                };
                if !conn.send_raw(frame.to_string()) {
                    break 'flood;
                }
                sent += 1;
                t.add("frames_sent");
            }
        }
        if conn.is_open() {
            conn.close();
            t.add("open_at_end");
        } else {
            // The driver marks the connection closed and calls the handler in one step.
            t.held.borrow_mut().record(started.elapsed());
            let how = closed.borrow_mut().take();
            t.add(&how.unwrap_or_else(|| "closed_unreported".into()));
        }
    }
}

/// The feeder: a well-behaved member sending `rate` messages a second to `room`.
async fn feeder(
    ctx: &Ctx,
    from: Ipv4Addr,
    room: &str,
    rate: f64,
    pad: usize,
    end: Instant,
    t: Rc<Tally>,
) {
    if rate <= 0.0 {
        return;
    }
    let user = format!("hfeed-{}", ctx.run_id);
    let text = "f".repeat(pad);
    let mut n = 0u64;
    while Instant::now() < end && ctx.aborted().is_none() {
        t.add("attempts");
        let Ok(token) = ctx.token(&user) else {
            t.add("token_error");
            return;
        };
        let connect = client::connect_from(
            &ctx.pool,
            Some(IpAddr::V4(from)),
            &user,
            &token,
            ctx.timeout,
            client::ignore(),
        );
        let conn = match connect.await {
            Ok(c) => c,
            Err(e) => {
                t.add(&format!("refused_{}", e.kind()));
                pause(ctx, Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err((kind, _)) = join(&conn, room, ctx.timeout).await {
            t.add(&kind);
            conn.close();
            pause(ctx, Duration::from_secs(1)).await;
            continue;
        }
        let started = Instant::now();
        let mut sent = 0u64;
        let mut tick = interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        while conn.is_open() && Instant::now() < end && ctx.aborted().is_none() {
            tick.tick().await;
            if sent >= (started.elapsed().as_secs_f64() * rate) as u64 {
                continue;
            }
            sent += 1;
            n += 1;
            let data = json!({"room": room, "kind": "text", "body": {"text": text},
                              "client_msg_id": format!("hfeed-{}-{n}", ctx.run_id)});
            match conn.request("send", data, ctx.timeout).await {
                Ok(Reply::Ack(..)) => t.add("acked"),
                Ok(Reply::Error { code, .. }) => t.add(&format!("error_{code}")),
                Err(e) => t.add(&format!("send_{e}").replace(' ', "_")),
            }
        }
        if conn.is_open() {
            conn.close();
        } else {
            t.add("closed_by_server");
        }
    }
}
