//! `fanout`: one room with N subscribers and K publishers (all joined), publishers sending
//! `--rate` messages per second in total for `--secs`. Measures deliveries per second, loss
//! (every acked message should reach every other connected member: subscribers and the other
//! publishers) and publish→receive latency.

use std::time::Duration;

use clap::Args;

use super::{
    close_all, connect_members, drain, pause, publish_for, quiet_deliveries, receiver,
    report_deliveries, report_publishing, report_resources, BenchResult, Book, Ctx, Member,
    PubOptions, Publisher, Target, MAX_PAD,
};
use crate::client::{Dialect, Handler};
use crate::procs::{DONE, MEASURE, PUBLISHED};
use crate::shard::Shard;
use crate::stats::{fmt_int, CpuMeter, Report};

#[derive(Args, Clone, Debug)]
pub struct FanoutArgs {
    /// Subscribers (members that only receive).
    #[arg(long, default_value_t = 1000)]
    pub subs: usize,
    /// Publishers (members that send; they receive each other's messages too).
    #[arg(long, default_value_t = 4)]
    pub pubs: usize,
    /// Messages per second, all publishers together.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Publishing time in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Padding bytes added to each message text (max 60000).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=MAX_PAD as i64))]
    pub pad: u32,
    /// Unacked messages allowed per publisher connection.
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// Pause between the last join and the first message.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Longest wait for outstanding acks and deliveries after publishing stops.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Send messages without a `client_msg_id` (no retry check in the server's commit).
    #[arg(long)]
    pub no_client_msg_id: bool,
    /// Subscribers connect with Socket.IO (Engine.IO v4, WebSocket only); publishers stay
    /// native.
    #[arg(long)]
    pub sio_subs: bool,
    /// Rooms of its own (one member, never written to) each member joins before the fan-out
    /// room.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub extra_rooms: u32,
}

pub async fn run(ctx: &Ctx, a: &FanoutArgs) -> BenchResult<Report> {
    let mut r = Report::new("fanout");
    if a.pubs == 0 {
        return Err("fanout needs --pubs >= 1".into());
    }
    // Global member numbers: 0..pubs are the publishers. This process opens its share.
    let total = a.subs + a.pubs;
    let mut mine = ctx.shard.units(total, ctx.servers());
    let n = ctx.cap(
        mine.len(),
        "fanout --subs + --pubs (this process's share)",
        &mut r,
    );
    mine.truncate(n);
    let pubs = mine.iter().filter(|&&g| g < a.pubs).count();
    let subs = n - pubs;
    let rate = Shard::rate_share(a.rate, pubs, a.pubs);
    let room = format!("public:fanout-{}", ctx.run_id);
    let users: Vec<String> = mine
        .iter()
        .map(|&g| {
            if g < a.pubs {
                format!("fo-{}-p{g}", ctx.run_id)
            } else {
                format!("fo-{}-s{}", ctx.run_id, g - a.pubs)
            }
        })
        .collect();
    let book = Book::new_shared(ctx.shard.is_child().then_some(ctx.shard.index as u32));
    let handlers = |_: usize| -> Handler { receiver(book.clone(), ctx.progress.clone()) };
    let members = |i: usize| Member {
        rooms: (0..a.extra_rooms)
            .map(|k| format!("public:{}-x{k}", users[i]))
            .chain(std::iter::once(room.clone()))
            .collect(),
        dialect: if a.sio_subs && mine[i] >= a.pubs {
            Dialect::SocketIo
        } else {
            Dialect::Native
        },
    };
    let servers = |i: usize| ctx.server_of(mine[i]);

    ctx.progress.phase("connect");
    let c = connect_members(ctx, &users, &servers, &handlers, &members).await;
    let ok = c.ok();
    r.row(
        "members",
        format!(
            "{} subscribers + {} publishers requested, {} connected and joined in {:.2} s ({} conn/s)",
            subs,
            pubs,
            ok,
            c.elapsed.as_secs_f64(),
            fmt_int(ok as f64 / c.elapsed.as_secs_f64().max(1e-9))
        ),
    );
    if c.failed() > 0 {
        r.row("connect failures", c.failures_text());
    }
    let publishers: Vec<Publisher> = c.conns[..pubs]
        .iter()
        .flatten()
        .map(|conn| Publisher {
            conn: conn.clone(),
            target: Target::Room(room.clone()),
        })
        .collect();
    if publishers.is_empty() && !ctx.shard.is_child() {
        return Err(format!("no publisher could connect: {}", c.failures_text()));
    }
    // Every acked message should reach every other connected member (of this process: the
    // parent of --procs checks the whole room).
    let receivers = ok.saturating_sub(1) as u64;

    ctx.progress.phase("settle");
    pause(ctx, a.settle).await;
    ctx.barrier(MEASURE).await;
    let server_cpu = ctx.server_meter();
    ctx.measure_from_now();
    let self_cpu = CpuMeter::start(None);
    ctx.progress.phase("publish");
    let opts = PubOptions {
        max_inflight: a.max_inflight.max(1),
        pad: a.pad as usize,
        ack_timeout: ctx.timeout,
        client_msg_id: !a.no_client_msg_id,
    };
    let secs = Duration::from_secs_f64(a.secs.max(0.0));
    let pub_time = publish_for(ctx, &publishers, rate, secs, opts, &book).await;
    ctx.barrier(PUBLISHED).await;
    ctx.progress.phase("drain");
    let drained = drain(ctx, &book, receivers, a.drain).await;
    quiet_deliveries(ctx, &book, Duration::from_secs(1), a.drain).await;
    ctx.barrier(DONE).await;

    {
        let b = book.borrow();
        report_publishing(&mut r, &b, rate, pub_time);
        report_deliveries(&mut r, &b, receivers);
        r.row(
            "drain",
            format!("{:.2} s after the last send", drained.as_secs_f64()),
        );
    }
    r.set("subs", subs as u64);
    r.set("pubs", pubs as u64);
    r.set("connected", ok as u64);
    r.set("connect_failed", c.failed());
    r.set_f(
        "connect_per_s",
        Some(ok as f64 / c.elapsed.as_secs_f64().max(1e-9)),
    );
    r.set("pad", a.pad);
    r.set("sio_subs", a.sio_subs);
    r.set("extra_rooms", a.extra_rooms);
    r.set("client_msg_id", !a.no_client_msg_id);
    report_resources(ctx, &mut r, &server_cpu, &self_cpu).await;
    ctx.progress.phase("close");
    close_all(c.conns.iter().flatten()).await;
    Ok(r)
}
