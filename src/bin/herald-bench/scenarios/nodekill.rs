//! `nodekill` (cluster mode): how long presence takes to converge after a node dies.
//!
//! An observer connects to one node (`--observer`, an index into the `--url`s) and joins a
//! room; `--users` users connect to another node (`--victim`, default the last `--url`) and
//! join the same room. Once the observer has seen every user online (its `room_presence`
//! diffs), and `--settle` later, the bench kills the victim's process (`--kill-pid`) with
//! SIGKILL. From that moment it times, per user, the first `room_presence` that shows the user
//! gone (in `leaves`, or in `joins` with status `offline`), by the frame's kernel receive
//! timestamp. The headline latency is that time; the last one is when presence converged.
//! A user seen online again after its offline counts as a flap (it should not happen).
//!
//! Set `HERALD_NODE_TIMEOUT_MS` on the nodes for the timeout under test; the expected bound
//! is the timeout plus one heartbeat (`HERALD_CLUSTER_HEARTBEAT_MS`) plus the presence
//! coalescing window.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Deserialize;

use super::{close_all, connect_many, frame_type, pause, report_resources, BenchResult, Ctx};
use crate::client::{self, Event, Handler};
use crate::stats::{unix_nanos, CpuMeter, Lat, Report};

#[derive(Args, Clone, Debug)]
pub struct NodekillArgs {
    /// Users connected to the node that is killed, all in one room with the observer.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// The `--url` (index, from 0) of the node that is killed; default: the last.
    #[arg(long)]
    pub victim: Option<usize>,
    /// The `--url` (index) the observer connects to.
    #[arg(long, default_value_t = 0)]
    pub observer: usize,
    /// The victim node's process id: the bench sends it SIGKILL.
    #[arg(long)]
    pub kill_pid: u32,
    /// Pause after the observer saw every user online, before the kill.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Longest wait for every offline after the kill.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[derive(Deserialize)]
struct Diff<'a> {
    #[serde(borrow)]
    data: DiffData<'a>,
}

#[derive(Deserialize)]
struct DiffData<'a> {
    #[serde(default, borrow)]
    joins: Vec<Who<'a>>,
    #[serde(default, borrow)]
    leaves: Vec<Who<'a>>,
}

#[derive(Deserialize)]
struct Who<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
}

/// What the observer saw.
#[derive(Default)]
struct Watch {
    online: HashSet<String>,
    /// When the victim was killed (unix ns).
    killed_at: Option<u64>,
    /// user → first offline seen after the kill (unix ns).
    offline_at: HashMap<String, u64>,
    /// Users seen online again after their offline.
    flaps: u64,
    diffs: u64,
    parse_errors: u64,
}

fn observer(watch: Rc<RefCell<Watch>>) -> Handler {
    Box::new(move |ev| {
        let Event::Text(t, rx_ns) = ev else { return };
        if frame_type(t) != "room_presence" {
            return;
        }
        let now = rx_ns.unwrap_or_else(unix_nanos);
        let mut w = watch.borrow_mut();
        w.diffs += 1;
        let Ok(diff) = serde_json::from_str::<Diff>(t) else {
            w.parse_errors += 1;
            return;
        };
        let killed = w.killed_at.is_some();
        let gone = |w: &mut Watch, user: &str| {
            w.online.remove(user);
            if killed && !w.offline_at.contains_key(user) {
                w.offline_at.insert(user.to_owned(), now);
            }
        };
        for j in &diff.data.joins {
            if j.status.as_deref() == Some("offline") {
                gone(&mut w, &j.user);
            } else {
                if w.offline_at.contains_key(j.user.as_ref()) {
                    w.flaps += 1;
                }
                w.online.insert(j.user.to_string());
            }
        }
        for l in &diff.data.leaves {
            gone(&mut w, &l.user);
        }
    })
}

pub async fn run(ctx: &Ctx, a: &NodekillArgs) -> BenchResult<Report> {
    let mut r = Report::new("nodekill");
    if ctx.servers() < 2 {
        return Err(
            "nodekill needs at least two --url (the observer's node and the victim)".into(),
        );
    }
    if ctx.server_pids.contains(&a.kill_pid) {
        return Err("--kill-pid must not be one of the --server-pid (they must stay up)".into());
    }
    let victim = a.victim.unwrap_or(ctx.servers() - 1);
    if victim == a.observer || victim >= ctx.servers() || a.observer >= ctx.servers() {
        return Err(format!(
            "--victim {victim} and --observer {} must be two different --url indexes",
            a.observer
        ));
    }
    let n = ctx.cap(a.users, "nodekill --users", &mut r);
    let room = format!("public:nodekill-{}", ctx.run_id);
    let watch = Rc::new(RefCell::new(Watch::default()));

    ctx.progress.phase("observer");
    let obs_user = vec![format!("nk-{}-observer", ctx.run_id)];
    let obs = connect_many(
        ctx,
        &obs_user,
        &|_| a.observer,
        &|_| observer(watch.clone()),
        &|_| Some(room.clone()),
    )
    .await;
    if obs.ok() == 0 {
        return Err(format!(
            "the observer could not connect: {}",
            obs.failures_text()
        ));
    }

    ctx.progress.phase("users");
    let users: Vec<String> = (0..n).map(|i| format!("nk-{}-{i}", ctx.run_id)).collect();
    let c = connect_many(ctx, &users, &|_| victim, &|_| client::ignore(), &|_| {
        Some(room.clone())
    })
    .await;
    let online_wait = Instant::now();
    while watch.borrow().online.len() < c.ok() && online_wait.elapsed() < ctx.timeout * 3 {
        if ctx.aborted().is_some() {
            break;
        }
        pause(ctx, Duration::from_millis(20)).await;
    }
    let seen_online = watch.borrow().online.len();
    r.row(
        "users",
        format!(
            "{} of {n} connected to {} and joined {room} in {:.2} s; the observer (on {}) saw {seen_online} online",
            c.ok(),
            ctx.ws_urls[victim],
            c.elapsed.as_secs_f64(),
            ctx.ws_urls[a.observer]
        ),
    );
    if c.failed() > 0 {
        r.row("connect failures", c.failures_text());
    }
    ctx.progress.phase("settle");
    pause(ctx, a.settle).await;

    let server_cpu = ctx.server_meter();
    ctx.measure_from_now();
    let self_cpu = CpuMeter::start(None);
    ctx.progress.phase("kill");
    let killed_at = unix_nanos();
    watch.borrow_mut().killed_at = Some(killed_at);
    // SAFETY: kill only sends a signal; the pid is the one the operator named.
    let rc = unsafe { libc::kill(a.kill_pid as libc::pid_t, libc::SIGKILL) };
    if rc != 0 {
        return Err(format!(
            "kill -9 {}: {}",
            a.kill_pid,
            std::io::Error::last_os_error()
        ));
    }
    let expected: HashSet<String> = c
        .conns
        .iter()
        .flatten()
        .map(|c| c.user.to_string())
        .collect();
    let started = Instant::now();
    ctx.progress.phase("converge");
    while started.elapsed() < a.wait && ctx.aborted().is_none() {
        let done = {
            let w = watch.borrow();
            expected.iter().all(|u| w.offline_at.contains_key(u))
        };
        if done {
            break;
        }
        pause(ctx, Duration::from_millis(10)).await;
    }

    let w = watch.take();
    let mut lat = Lat::new();
    let mut seen = 0usize;
    for u in &expected {
        if let Some(t) = w.offline_at.get(u) {
            seen += 1;
            lat.record_nanos(t.saturating_sub(killed_at));
        }
    }
    let converged = (seen == expected.len() && seen > 0)
        .then(|| lat.max_ms())
        .flatten();
    r.row(
        "offline seen by the observer",
        format!("{seen} of {} users", expected.len()),
    );
    r.row("time from SIGKILL to each user's offline", lat.summary());
    r.row(
        "converged",
        converged.map_or(
            format!(
                "no: {} users still online after {:?}",
                expected.len() - seen,
                a.wait
            ),
            |ms| format!("{ms:.0} ms after the kill"),
        ),
    );
    if w.flaps > 0 {
        r.note(format!(
            "{} users were seen online again after going offline (flaps)",
            w.flaps
        ));
    }
    r.set("users", expected.len() as u64);
    r.set("offline_seen", seen as u64);
    r.set("flaps", w.flaps);
    r.set("diffs", w.diffs);
    r.set("parse_errors", w.parse_errors);
    r.set("victim_url", ctx.ws_urls[victim].as_str());
    r.set("observer_url", ctx.ws_urls[a.observer].as_str());
    r.set("kill_pid", a.kill_pid);
    r.set_f("converged_ms", converged);
    r.lat("", &lat);
    report_resources(ctx, &mut r, &server_cpu, &self_cpu).await;
    ctx.progress.phase("close");
    close_all(obs.conns.iter().flatten().chain(c.conns.iter().flatten())).await;
    Ok(r)
}
