//! `persist`: many senders (`--senders`, spread over `--rooms` rooms) sending `--rate`
//! messages per second in total. Measures stored (acked) messages per second and ack
//! latency: the ack comes only after the message is durably committed, so this is the
//! storage path (room actor → commit queue → database). With one sender per room (the
//! default) nothing fans out.

use std::time::Duration;

use clap::Args;

use super::{
    acked_per_s, close_all, connect_many, drain, pause, publish_for, quiet_deliveries, receiver,
    report_deliveries, report_publishing, report_resources, BenchResult, Book, Ctx, PubOptions,
    Publisher, Target, MAX_PAD,
};
use crate::client::Handler;
use crate::procs::{DONE, MEASURE, PUBLISHED};
use crate::shard::Shard;
use crate::stats::{fmt_int, CpuMeter, Report};

#[derive(Args, Clone, Debug)]
pub struct PersistArgs {
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 20_000.0)]
    pub rate: f64,
    /// Publishing time in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Sending connections.
    #[arg(long, default_value_t = 100)]
    pub senders: usize,
    /// Rooms the senders are spread over (round-robin); default: one room per sender.
    #[arg(long)]
    pub rooms: Option<usize>,
    /// Padding bytes added to each message text (max 60000).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=MAX_PAD as i64))]
    pub pad: u32,
    /// Unacked messages allowed per connection.
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// Longest wait for outstanding acks after publishing stops.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Send messages without a `client_msg_id` (no retry check in the server's commit).
    #[arg(long)]
    pub no_client_msg_id: bool,
}

pub async fn run(ctx: &Ctx, a: &PersistArgs) -> BenchResult<Report> {
    let mut r = Report::new("persist");
    // Global sender numbers; this process opens its share (all without --procs).
    let all_senders = a.senders.max(1);
    let rooms = a.rooms.unwrap_or(all_senders).clamp(1, all_senders);
    let mut mine = ctx.shard.units(all_senders, ctx.servers());
    let senders = ctx.cap(
        mine.len(),
        "persist --senders (this process's share)",
        &mut r,
    );
    mine.truncate(senders);
    let rate = Shard::rate_share(a.rate, senders, all_senders);
    let users: Vec<String> = mine
        .iter()
        .map(|g| format!("ps-{}-{g}", ctx.run_id))
        .collect();
    let room_of = |i: usize| format!("public:persist-{}-{}", ctx.run_id, mine[i] % rooms);
    let book = Book::new_shared(ctx.shard.is_child().then_some(ctx.shard.index as u32));
    let handlers = |_: usize| -> Handler { receiver(book.clone(), ctx.progress.clone()) };
    let join = |i: usize| Some(room_of(i));
    let servers = |i: usize| ctx.server_of(mine[i]);
    ctx.progress.phase("connect");
    let c = connect_many(ctx, &users, &servers, &handlers, &join).await;
    r.row(
        "senders",
        format!(
            "{} requested, {} connected, {} rooms ({} sender(s) per room)",
            senders,
            c.ok(),
            rooms,
            all_senders.div_ceil(rooms)
        ),
    );
    if c.failed() > 0 {
        r.row("connect failures", c.failures_text());
    }
    let publishers: Vec<Publisher> = c
        .conns
        .iter()
        .enumerate()
        .filter_map(|(i, conn)| {
            conn.as_ref().map(|conn| Publisher {
                conn: conn.clone(),
                target: Target::Room(room_of(i)),
            })
        })
        .collect();
    if publishers.is_empty() {
        return Err(format!("no sender could connect: {}", c.failures_text()));
    }
    pause(ctx, Duration::from_secs(1)).await;
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
    // Deliveries are only checked when every room has the same number of senders (with
    // --procs, by the parent: a room's senders may be in several children).
    let uniform = all_senders % rooms == 0 && c.failed() == 0;
    let receivers_global = if uniform {
        (all_senders / rooms - 1) as u64
    } else {
        0
    };
    let receivers = if ctx.shard.is_child() {
        0
    } else {
        receivers_global
    };
    drain(ctx, &book, receivers, a.drain).await;
    quiet_deliveries(ctx, &book, Duration::from_secs(1), a.drain).await;
    ctx.barrier(DONE).await;
    r.set("_receivers_global", receivers_global);
    {
        let b = book.borrow();
        report_publishing(&mut r, &b, rate, pub_time);
        let stored_per_s = acked_per_s(&b);
        r.row(
            "stored messages/s",
            stored_per_s.map_or("n/a".into(), |v| {
                format!("{} (acked, first send to last ack)", fmt_int(v))
            }),
        );
        r.set_f("stored_per_s", stored_per_s);
        // The headline latency of persist is the (durable) ack latency.
        r.lat("", &b.ack_lat);
        if receivers > 0 || (ctx.shard.is_child() && receivers_global > 0) {
            report_deliveries(&mut r, &b, receivers);
            // report_deliveries overwrote the headline latency with delivery latency.
            r.lat("", &b.ack_lat);
            r.lat("delivery_", &b.delivery_lat);
        } else {
            r.set("loss", serde_json::Value::Null);
        }
    }
    r.set("senders", publishers.len() as u64);
    r.set("rooms", rooms as u64);
    r.set("client_msg_id", !a.no_client_msg_id);
    r.set("connect_failed", c.failed());
    report_resources(ctx, &mut r, &server_cpu, &self_cpu).await;
    ctx.progress.phase("close");
    close_all(c.conns.iter().flatten()).await;
    Ok(r)
}
