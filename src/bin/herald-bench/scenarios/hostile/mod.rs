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
//!
//! Files: this one holds the arguments, the limits, the per-attack tallies and the run;
//! `samples.rs` the server's RSS and descriptors; `raw.rs` raw TCP and HTTP exchanges;
//! `attacks.rs` the attackers themselves.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Map, Value};
use tokio::time::{interval, MissedTickBehavior};

use super::{pause, report_resources, BenchResult, Ctx};
use crate::client::Server;
use crate::stats::{fmt_int, CpuMeter, Lat, Report};

mod attacks;
mod raw;
mod samples;

use attacks::{feeder, flooder, silent, stall, storm, tokenless, zombie};
use samples::{report_samples, sample, server_reading};
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

/// Where raw attacker sockets connect (owned, so spawned attempts can keep it): the servers,
/// taken round-robin, one per attempt.
struct Target {
    servers: Vec<Server>,
    next: Cell<usize>,
    timeout: Duration,
}

impl Target {
    /// The server of the next attempt.
    fn pick(&self) -> Server {
        let i = self.next.get();
        self.next.set((i + 1) % self.servers.len());
        self.servers[i].clone()
    }
}

pub async fn run(ctx: &Ctx, a: &HostileArgs) -> BenchResult<Report> {
    let mut r = Report::new("hostile");
    let server_cpu = ctx.server_meter();
    ctx.measure_from_now();
    let self_cpu = CpuMeter::start(None);
    let attacks = Attacks::new();
    let own_room = format!("public:hostile-{}", ctx.run_id);
    let zombie_room = a.zombie_room.clone().unwrap_or_else(|| own_room.clone());
    let target = Rc::new(Target {
        servers: ctx.pool.servers.clone(),
        next: Cell::new(0),
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
    if let Some(s) = ctx.server_stats(0).await {
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
