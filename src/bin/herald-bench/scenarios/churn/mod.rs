//! `churn`: `--hold` connections held in one room (or spread over rooms of `--room-size`)
//! while `--rate` of them per second are disconnected (oldest first) and replaced by new
//! connections of other room members; the observers are members of every room. A
//! step is skipped (both halves) when `--connect-concurrency` connects are already in
//! flight, so the achieved rate shows what the server sustains while `hold` stays put.
//! Measures the connects and disconnects achieved per second and how fast the
//! `room_presence` diff announcing each new connection (`joins`) reaches a few observer
//! connections: join latency runs from the start of the connect to the diff naming the user.
//!
//! Users come from a pool made room members up front (`POST /v1/rooms/{room}/members/{user}`
//! with an admin token), so a reconnect needs no `join` (whose ack would list every online
//! member). A disconnected user rests for `--cool` before it is used again: a reconnect
//! within the server's presence grace period (3 s) would produce no diff at all. Leaves are
//! timed too (disconnect → diff naming the user); they include that grace period.
//!
//! Files: this one holds the arguments and the run; `observer.rs` the observers' handler,
//! which times each join and leave by the `room_presence` diff naming the user.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::{interval, MissedTickBehavior};

use super::{
    close_all, connect_many, connect_one, join, pause, report_resources, BenchResult, Ctx, Progress,
};
use crate::client::{self, Conn};
use crate::stats::{fmt_int, fmt_loss, unix_nanos, CpuMeter, Lat, Report};

mod observer;

use observer::observer;

#[derive(Args, Clone, Debug)]
pub struct ChurnArgs {
    /// Connections held in the room (observers included).
    #[arg(long, default_value_t = 1000)]
    pub hold: usize,
    /// Connects per second (each paired with a disconnect of the oldest held connection).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Churning time in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Held connections per room; 0: all in one room. Users are spread round-robin over
    /// ceil((hold - observers) / room-size) rooms, and the observers join all of them.
    #[arg(long, default_value_t = 0)]
    pub room_size: usize,
    /// Held connections that time the presence diffs.
    #[arg(long, default_value_t = 3)]
    pub observers: usize,
    /// How long a disconnected user rests before reconnecting (> the server's presence grace
    /// period plus its 200 ms coalescing window).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub cool: Duration,
    /// Users in the pool (default: hold + rate x (cool + 2 s)).
    #[arg(long)]
    pub pool: Option<usize>,
    /// REST membership requests in flight during set-up.
    #[arg(long, default_value_t = 64)]
    pub setup_concurrency: usize,
    /// Longest wait for outstanding joins after churning stops.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
}

/// Presence timing shared by the observers and the churn loop.
#[derive(Default)]
struct Watch {
    /// user → (connect start in Unix ns, observers that saw the join).
    joins: HashMap<String, (u64, usize)>,
    /// user → (disconnect in Unix ns, observers that saw the leave).
    leaves: HashMap<String, (u64, usize)>,
    join_lat: Lat,
    leave_lat: Lat,
    observers: usize,
    diffs: u64,
    diff_bytes: u64,
    max_diff_joins: usize,
    parse_errors: u64,
    observer_closes: BTreeMap<String, u64>,
}

pub async fn run(ctx: &Ctx, a: &ChurnArgs) -> BenchResult<Report> {
    let mut r = Report::new("churn");
    // Held sockets, connects in flight and sockets still closing share the fd budget.
    let budget = ctx.max_conns.saturating_sub(ctx.concurrency + 500);
    let hold = if a.hold > budget {
        r.note(format!(
            "churn --hold {} capped to {budget} by the file-descriptor limit ({} per process, \
             minus {} connects in flight and 500 closing)",
            a.hold, ctx.fd_limit, ctx.concurrency
        ));
        r.set("capped_from", a.hold as u64);
        budget
    } else {
        a.hold
    };
    let observers = a.observers.clamp(1, hold.max(1));
    let cool_secs = a.cool.as_secs_f64() + 2.0;
    let pool = a
        .pool
        .unwrap_or(hold + (a.rate * cool_secs).ceil() as usize)
        .max(hold + 1);
    let n_rooms = if a.room_size == 0 {
        1
    } else {
        hold.saturating_sub(observers).div_ceil(a.room_size).max(1)
    };
    let rooms: Vec<String> = if n_rooms == 1 {
        vec![format!("public:churn-{}", ctx.run_id)]
    } else {
        (0..n_rooms)
            .map(|k| format!("public:churn-{}-{k}", ctx.run_id))
            .collect()
    };
    let room_of = |i: usize| rooms[i.saturating_sub(observers) % n_rooms].as_str();
    let user = |i: usize| format!("ch-{}-{i}", ctx.run_id);

    // 1. Observers create the rooms by joining them.
    let watch = Rc::new(RefCell::new(Watch::default()));
    ctx.progress.phase("observe");
    let obs_users: Vec<String> = (0..observers).map(user).collect();
    let obs_handlers = |_: usize| observer(watch.clone());
    let obs = connect_many(
        ctx,
        &obs_users,
        &|i| ctx.server_of(i),
        &obs_handlers,
        &|_| Some(rooms[0].clone()),
    )
    .await;
    if obs.ok() < observers {
        return Err(format!(
            "observers could not connect: {}",
            obs.failures_text()
        ));
    }
    for conn in obs.conns.iter().flatten() {
        for room in &rooms[1..] {
            join(conn, room, ctx.timeout)
                .await
                .map_err(|(_, e)| format!("observer could not join: {e}"))?;
        }
    }
    r.row(
        "rooms",
        format!(
            "{n_rooms} (observers in all of them){}",
            if n_rooms > 1 {
                format!(", ~{} held connections each", a.room_size)
            } else {
                String::new()
            }
        ),
    );
    r.set("rooms", n_rooms as u64);
    watch.borrow_mut().observers = observers;

    // 2. Everyone else becomes a member over REST.
    ctx.progress.phase("members");
    let admin = ctx.admin_token()?;
    let started = Instant::now();
    let mut member_errors = 0u64;
    let mut first_member_error = None;
    let mut usable: Vec<bool> = vec![true; pool];
    {
        let adds = futures_util::stream::iter(observers..pool)
            .take_while(|_| std::future::ready(ctx.aborted().is_none()))
            .map(|i| {
                let admin = admin.as_str();
                let room = room_of(i);
                let u = user(i);
                async move { (i, ctx.add_member(admin, room, &u).await) }
            })
            .buffer_unordered(a.setup_concurrency.max(1));
        futures_util::pin_mut!(adds);
        while let Some((i, res)) = adds.next().await {
            match res {
                Ok(()) => Progress::add(&ctx.progress.acked, 1),
                Err(e) => {
                    usable[i] = false;
                    member_errors += 1;
                    first_member_error.get_or_insert(e);
                }
            }
        }
    }
    let members_secs = started.elapsed().as_secs_f64();
    r.row(
        "set-up",
        format!(
            "{} pool users made members in {:.1} s ({} /s), {} errors",
            fmt_int((pool - observers) as f64 - member_errors as f64),
            members_secs,
            fmt_int((pool - observers) as f64 / members_secs.max(1e-9)),
            member_errors
        ),
    );
    if let Some(e) = first_member_error {
        let hint = if e.contains("429") {
            " (the set-up adds members over REST as fast as it can: start the server with HERALD_REST_RATE=0)"
        } else {
            ""
        };
        r.note(format!(
            "membership set-up failed for {member_errors} users; first: {e}{hint}"
        ));
    }

    // 3. The held connections.
    ctx.progress.phase("hold");
    let held_idx: Vec<usize> = (observers..pool)
        .filter(|&i| usable[i])
        .take(hold - observers)
        .collect();
    let held_users: Vec<String> = held_idx.iter().map(|&i| user(i)).collect();
    let held_handlers = |_: usize| client::ignore();
    let h = connect_many(
        ctx,
        &held_users,
        &|k| ctx.server_of(held_idx[k]),
        &held_handlers,
        &|_| None,
    )
    .await;
    r.row(
        "held connections",
        format!(
            "{} of {} connected in {:.2} s ({} conn/s){}",
            fmt_int((h.ok() + observers) as f64),
            fmt_int(hold as f64),
            h.elapsed.as_secs_f64(),
            fmt_int(h.ok() as f64 / h.elapsed.as_secs_f64().max(1e-9)),
            if h.failed() > 0 {
                format!("; failures: {}", h.failures_text())
            } else {
                String::new()
            }
        ),
    );
    let mut held: VecDeque<(usize, Conn)> = VecDeque::new();
    for (k, c) in h.conns.iter().enumerate() {
        if let Some(c) = c {
            held.push_back((held_idx[k], c.clone()));
        }
    }
    let in_use: std::collections::HashSet<usize> = held_idx.iter().copied().collect();
    let mut avail: VecDeque<usize> = (observers..pool)
        .filter(|i| usable[*i] && !in_use.contains(i))
        .collect();
    let mut cooling: VecDeque<(Instant, usize)> = VecDeque::new();
    r.row(
        "pool",
        format!(
            "{} users, {} free at the start, reuse after {} (cool)",
            fmt_int(pool as f64),
            fmt_int(avail.len() as f64),
            humantime::format_duration(a.cool)
        ),
    );

    ctx.progress.phase("settle");
    pause(ctx, a.cool).await;

    // 4. Churn.
    let server_cpu = ctx.server_meter();
    ctx.measure_from_now();
    let self_cpu = CpuMeter::start(None);
    ctx.progress.phase("churn");
    let frames_before = client::net(|n| (n.frames_in.get(), n.bytes_in.get()));
    let secs = Duration::from_secs_f64(a.secs.max(0.0));
    let started = Instant::now();
    let mut tick = interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut issued = 0u64;
    let (mut disconnects, mut connects_ok) = (0u64, 0u64);
    let (mut pool_exhausted, mut behind) = (0u64, 0u64);
    let mut connect_lat = Lat::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_failure: Option<String> = None;
    let mut in_flight = FuturesUnordered::new();
    let churning = Cell::new(true);
    loop {
        if churning.get() && (started.elapsed() >= secs || ctx.aborted().is_some()) {
            churning.set(false);
        }
        if !churning.get() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if churning.get() => {
                let now = Instant::now();
                while cooling.front().is_some_and(|(t, _)| *t <= now) {
                    if let Some((_, i)) = cooling.pop_front() {
                        avail.push_back(i);
                    }
                }
                let due = ((started.elapsed().as_secs_f64() * a.rate) as u64).saturating_sub(issued);
                for _ in 0..due {
                    issued += 1;
                    // One churn step = connect a rested member + disconnect the oldest held
                    // connection; when no connect can start, neither happens (held stays put).
                    if in_flight.len() >= ctx.concurrency {
                        behind += 1;
                        continue;
                    }
                    let Some(i) = avail.pop_front() else {
                        pool_exhausted += 1;
                        continue;
                    };
                    if let Some((j, c)) = held.pop_front() {
                        c.close();
                        disconnects += 1;
                        watch.borrow_mut().leaves.insert(c.user.to_string(), (unix_nanos(), 0));
                        cooling.push_back((now + a.cool, j));
                    }
                    let u = user(i);
                    watch.borrow_mut().joins.insert(u.clone(), (unix_nanos(), 0));
                    in_flight.push(async move {
                        let t0 = Instant::now();
                        let res = connect_one(ctx, ctx.server_of(i), &u, client::ignore(), None).await;
                        (i, u, res, t0.elapsed())
                    });
                }
            }
            Some((i, u, res, took)) = in_flight.next(), if !in_flight.is_empty() => {
                match res {
                    Ok(conn) => {
                        connects_ok += 1;
                        connect_lat.record(took);
                        Progress::add(&ctx.progress.connected, 1);
                        held.push_back((i, conn));
                    }
                    Err((kind, e)) => {
                        *failures.entry(kind).or_default() += 1;
                        first_failure.get_or_insert(e);
                        Progress::add(&ctx.progress.connect_failed, 1);
                        watch.borrow_mut().joins.remove(&u);
                        cooling.push_back((Instant::now() + a.cool, i));
                    }
                }
            }
        }
    }
    let churn_time = started.elapsed();
    let frames_during = client::net(|n| {
        (
            n.frames_in.get() - frames_before.0,
            n.bytes_in.get() - frames_before.1,
        )
    });

    // 5. Wait for the last joins to be seen.
    ctx.progress.phase("drain");
    let drain_start = Instant::now();
    while drain_start.elapsed() < a.drain && ctx.aborted().is_none() {
        if watch.borrow().joins.is_empty() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    let w = watch.take();
    let expected_obs = connects_ok * observers as u64;
    let missing: u64 = w
        .joins
        .values()
        .map(|(_, seen)| (observers - (*seen).min(observers)) as u64)
        .sum();
    let join_loss = (expected_obs > 0).then(|| missing as f64 / expected_obs as f64);
    let secs_f = churn_time.as_secs_f64().max(1e-9);
    r.row(
        "churn",
        format!(
            "{} connects/s and {} disconnects/s achieved ({} target) over {:.1} s",
            fmt_int(connects_ok as f64 / secs_f),
            fmt_int(disconnects as f64 / secs_f),
            fmt_int(a.rate),
            secs_f
        ),
    );
    r.row(
        "held at the end",
        format!(
            "{} (target {})",
            fmt_int((held.len() + observers) as f64),
            fmt_int(hold as f64)
        ),
    );
    if !failures.is_empty() {
        r.row(
            "connect failures",
            format!(
                "{failures:?} (first: {})",
                first_failure.clone().unwrap_or_default()
            ),
        );
    }
    if pool_exhausted + behind > 0 {
        r.row(
            "skipped connects",
            format!(
                "{pool_exhausted} (no rested user), {behind} ({} connects already in flight)",
                ctx.concurrency
            ),
        );
    }
    r.row("connect latency", connect_lat.summary());
    r.row("presence join latency", w.join_lat.summary());
    r.row(
        "joins not seen",
        format!(
            "{missing} of {expected_obs} (observer x connect) = {}",
            fmt_loss(join_loss)
        ),
    );
    r.row(
        "presence leave latency",
        format!("{} (includes the grace period)", w.leave_lat.summary()),
    );
    r.row(
        "observer diffs",
        format!(
            "{} room_presence frames, {} KiB on average, at most {} joins in one",
            w.diffs,
            (w.diff_bytes / w.diffs.max(1)) >> 10,
            w.max_diff_joins
        ),
    );
    r.row(
        "traffic to the bench",
        format!(
            "{} frames, {} MiB during the churn ({} MiB/s)",
            fmt_int(frames_during.0 as f64),
            frames_during.1 >> 20,
            fmt_int(frames_during.1 as f64 / 1048576.0 / secs_f)
        ),
    );
    if !w.observer_closes.is_empty() {
        r.note(format!(
            "observers were closed by the server: {:?}",
            w.observer_closes
        ));
    }
    r.set("hold", hold as u64);
    r.set("observers", observers as u64);
    r.set("pool", pool as u64);
    r.set("target_rate", a.rate);
    r.set_f("connects_per_s", Some(connects_ok as f64 / secs_f));
    r.set_f("disconnects_per_s", Some(disconnects as f64 / secs_f));
    r.set("connects", connects_ok);
    r.set("disconnects", disconnects);
    r.set("connect_failures", json!(failures));
    r.set("skipped_pool_exhausted", pool_exhausted);
    r.set("skipped_behind", behind);
    r.set("joins_missing", missing);
    r.set_f("loss", join_loss);
    r.set("diffs", w.diffs);
    r.set("max_diff_joins", w.max_diff_joins as u64);
    r.set("bytes_in_during_churn", frames_during.1);
    // The headline latency of churn is the presence join latency.
    r.lat("", &w.join_lat);
    r.lat("join_", &w.join_lat);
    r.lat("leave_", &w.leave_lat);
    r.lat("connect_", &connect_lat);
    report_resources(ctx, &mut r, &server_cpu, &self_cpu).await;
    ctx.progress.phase("close");
    let all: Vec<Conn> = held
        .iter()
        .map(|(_, c)| c.clone())
        .chain(obs.conns.iter().flatten().cloned())
        .collect();
    close_all(all.iter()).await;
    Ok(r)
}
