//! `idle`: N connections, each authenticated, joined to `--rooms-per-conn` rooms
//! (`--room-size` connections per room) and tracked by presence, then left idle; native, or
//! Socket.IO with `--socketio`. Measures the connect rate (upgrade through
//! `sync` plus the `join` ack) and, with `--server-pid`, the server's memory per connection:
//! `kib_per_conn = (VmRSS after − VmRSS before) / connections`, read after `--settle`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{
    close_all, connect_members, frame_type, pause, report_resources, BenchResult, Ctx, Member,
};
use crate::client::{self, Dialect, Event, Handler};
use crate::procs::{DONE, MEASURE};
use crate::stats::{self, fmt_int, CpuMeter, Report};

#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    /// Connections to open (capped by the file-descriptor limit).
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Connections per room (each joins `public:idle-<run>-<n>`); 0: do not join any room.
    #[arg(long, default_value_t = 100)]
    pub room_size: usize,
    /// Rooms each connection joins (one `join` after another). Membership j of connection g
    /// is in room `(j × conns + g) / room-size`, so a connection's rooms are distinct and
    /// each room still has `--room-size` members.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rooms_per_conn: u32,
    /// Connect with Socket.IO (Engine.IO v4, WebSocket only) instead of the native protocol.
    #[arg(long)]
    pub socketio: bool,
    /// Wait after the last connect before reading the server's RSS (presence diffs flushed).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Keep the connections open this much longer (answering pings) and count drops.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
}

pub async fn run(ctx: &Ctx, a: &IdleArgs) -> BenchResult<Report> {
    let mut r = Report::new("idle");
    // Global connection numbers this process opens (all of them without --procs).
    let mut mine = ctx.shard.units(a.conns, ctx.servers());
    let n = ctx.cap(mine.len(), "idle --conns (this process's share)", &mut r);
    mine.truncate(n);
    ctx.barrier(MEASURE).await;
    let server_cpu = ctx.server_meter();
    ctx.measure_from_now();
    let self_cpu = CpuMeter::start(None);
    let rss_before = ctx.server_rss_kib();
    let self_before = stats::self_rss_kib();

    let users: Vec<String> = mine
        .iter()
        .map(|g| format!("idle-{}-{g}", ctx.run_id))
        .collect();
    let frames: Rc<RefCell<BTreeMap<String, u64>>> = Rc::default();
    let handlers = |_: usize| -> Handler {
        let frames = frames.clone();
        Box::new(move |ev| {
            if let Event::Text(t, _) = ev {
                *frames
                    .borrow_mut()
                    .entry(frame_type(t).to_owned())
                    .or_default() += 1;
            }
        })
    };
    let room_size = a.room_size;
    let per_conn = if room_size > 0 {
        a.rooms_per_conn as usize
    } else {
        0
    };
    let run_id = ctx.run_id.clone();
    let dialect = if a.socketio {
        Dialect::SocketIo
    } else {
        Dialect::Native
    };
    let members = |i: usize| Member {
        rooms: (0..per_conn)
            .map(|j| {
                format!(
                    "public:idle-{run_id}-{}",
                    (j * a.conns + mine[i]) / room_size
                )
            })
            .collect(),
        dialect,
    };
    let servers = |i: usize| ctx.server_of(mine[i]);
    ctx.progress.phase("connect");
    let connect_cpu = (ctx.server_meter(), CpuMeter::start(None));
    let c = connect_members(ctx, &users, &servers, &handlers, &members).await;
    let connect_cpu = (connect_cpu.0.percent(), connect_cpu.1.percent());
    let ok = c.ok();
    let connect_per_s = ok as f64 / c.elapsed.as_secs_f64().max(1e-9);

    ctx.progress.phase("settle");
    pause(ctx, a.settle).await;
    ctx.barrier(DONE).await;
    let rss_after = ctx.server_rss_kib();
    let self_after = stats::self_rss_kib();
    let open_after_settle = client::net(|n| n.live.get());

    if !a.hold.is_zero() {
        ctx.progress.phase("hold");
        pause(ctx, a.hold).await;
    }
    let open_at_end = client::net(|n| n.live.get());

    r.row(
        "connections",
        format!(
            "{} requested, {} open, {} failed",
            fmt_int(n as f64),
            fmt_int(ok as f64),
            c.failed()
        ),
    );
    if c.failed() > 0 {
        r.row("connect failures", c.failures_text());
    }
    r.row(
        "rooms",
        if room_size > 0 {
            format!(
                "{} rooms per connection, {} connections per room ({} rooms)",
                per_conn,
                room_size,
                (a.conns * per_conn).div_ceil(room_size)
            )
        } else {
            "none joined".into()
        },
    );
    r.row(
        "connect rate",
        format!(
            "{} conn/s ({} in {:.2} s, {} in flight at most)",
            fmt_int(connect_per_s),
            fmt_int(ok as f64),
            c.elapsed.as_secs_f64(),
            ctx.concurrency
        ),
    );
    r.row("connect latency", c.lat.summary());
    r.row(
        "CPU while connecting",
        format!(
            "server {}%, bench {}% of one core (2 cores in all)",
            connect_cpu.0.map_or("?".into(), |p| format!("{p:.0}")),
            connect_cpu.1.map_or("?".into(), |p| format!("{p:.0}"))
        ),
    );
    let kib_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if ok > 0 => Some((a as f64 - b as f64) / ok as f64),
        _ => None,
    };
    match (rss_before, rss_after, kib_per_conn) {
        (Some(b), Some(af), Some(k)) => {
            r.row(
                "server RSS",
                format!(
                    "{} MiB before, {} MiB after {} connections",
                    b / 1024,
                    af / 1024,
                    fmt_int(ok as f64)
                ),
            );
            r.row("server memory per connection", format!("{k:.1} KiB"));
        }
        _ => r.row("server memory per connection", "n/a (pass --server-pid)"),
    }
    if let (Some(b), Some(af)) = (self_before, self_after) {
        if ok > 0 {
            r.row(
                "bench memory per connection",
                format!(
                    "{:.1} KiB (client side)",
                    (af as f64 - b as f64) / ok as f64
                ),
            );
        }
    }
    r.row(
        "still open",
        format!(
            "{} after settle, {} at the end",
            fmt_int(open_after_settle as f64),
            fmt_int(open_at_end as f64)
        ),
    );
    r.row("frame types", format!("{:?}", frames.borrow()));

    r.set("connections", ok as u64);
    r.set("requested", n as u64);
    r.set("connect_failed", c.failed());
    r.set("connect_failures", json!(c.failures));
    r.set_f("connect_per_s", Some(connect_per_s));
    r.set_f("connect_secs", Some(c.elapsed.as_secs_f64()));
    r.set("room_size", room_size as u64);
    r.set("rooms_per_conn", per_conn as u64);
    r.set("socketio", a.socketio);
    r.set_f("connect_server_cpu_pct", connect_cpu.0);
    r.set_f("connect_bench_cpu_pct", connect_cpu.1);
    r.set_f("kib_per_conn", kib_per_conn);
    r.set("server_rss_before_kib", json!(rss_before));
    r.set("server_rss_after_kib", json!(rss_after));
    r.set("open_after_settle", open_after_settle as u64);
    r.set("open_at_end", open_at_end as u64);
    r.set("frame_types", json!(*frames.borrow()));
    // For idle the headline latency is the connect latency.
    r.lat("", &c.lat);
    r.lat("connect_", &c.lat);

    report_resources(ctx, &mut r, &server_cpu, &self_cpu).await;
    ctx.progress.phase("close");
    let conns: Vec<_> = c.conns.iter().flatten().collect();
    let left = close_all(conns).await;
    if left > 0 {
        r.note(format!(
            "{left} sockets had not closed 5 s after the close frames"
        ));
    }
    Ok(r)
}
