//! `persist`: many senders (`--senders`, spread over `--rooms` rooms) sending `--rate`
//! messages per second in total. Measures stored (acked) messages per second and ack
//! latency: the ack comes only after the message is durably committed, so this is the
//! storage path (room actor → commit queue → database). With one sender per room (the
//! default) nothing fans out.

use std::time::Duration;

use clap::Args;

use super::{
    acked_per_s, close_all, connect_many, drain, pause, publish_for, receiver, report_deliveries,
    report_publishing, report_resources, BenchResult, Book, Ctx, PubOptions, Publisher, Target,
    MAX_PAD,
};
use crate::client::Handler;
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
}

pub async fn run(ctx: &Ctx, a: &PersistArgs) -> BenchResult<Report> {
    let mut r = Report::new("persist");
    let senders = ctx.cap(a.senders.max(1), "persist --senders", &mut r);
    let rooms = a.rooms.unwrap_or(senders).clamp(1, senders);
    let users: Vec<String> = (0..senders)
        .map(|i| format!("ps-{}-{i}", ctx.run_id))
        .collect();
    let room_of = |i: usize| format!("public:persist-{}-{}", ctx.run_id, i % rooms);
    let book = Book::new_shared();
    let handlers = |_: usize| -> Handler { receiver(book.clone(), ctx.progress.clone()) };
    let join = |i: usize| Some(room_of(i));
    ctx.progress.phase("connect");
    let c = connect_many(ctx, &users, &handlers, &join).await;
    r.row(
        "senders",
        format!(
            "{} requested, {} connected, {} rooms ({} sender(s) per room)",
            senders,
            c.ok(),
            rooms,
            senders.div_ceil(rooms)
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
    let server_cpu = CpuMeter::start(ctx.server_pid);
    ctx.measure_from_now();
    let self_cpu = CpuMeter::start(None);
    ctx.progress.phase("publish");
    let opts = PubOptions {
        max_inflight: a.max_inflight.max(1),
        pad: a.pad as usize,
        ack_timeout: ctx.timeout,
    };
    let secs = Duration::from_secs_f64(a.secs.max(0.0));
    let pub_time = publish_for(ctx, &publishers, a.rate, secs, opts, &book).await;
    ctx.progress.phase("drain");
    // Deliveries are only checked when every room has the same number of senders.
    let uniform = senders % rooms == 0 && c.failed() == 0;
    let receivers = if uniform {
        (senders / rooms - 1) as u64
    } else {
        0
    };
    drain(ctx, &book, receivers, a.drain).await;
    {
        let b = book.borrow();
        report_publishing(&mut r, &b, a.rate, pub_time);
        let stored_per_s = acked_per_s(&b);
        r.row(
            "stored messages/s",
            stored_per_s.map_or("n/a".into(), |v| {
                format!("{} (acked, first send to last ack)", fmt_int(v))
            }),
        );
        r.set_f("stored_per_s", stored_per_s);
        // The headline latency of persist is the (durable) ack latency.
        b.ack_lat.to_json("", r.json_mut());
        if receivers > 0 {
            report_deliveries(&mut r, &b, receivers);
            // report_deliveries overwrote the headline latency with delivery latency.
            b.ack_lat.to_json("", r.json_mut());
            b.delivery_lat.to_json("delivery_", r.json_mut());
        } else {
            r.set("loss", serde_json::Value::Null);
        }
    }
    r.set("senders", publishers.len() as u64);
    r.set("rooms", rooms as u64);
    r.set("connect_failed", c.failed());
    report_resources(ctx, &mut r, &server_cpu, &self_cpu).await;
    ctx.progress.phase("close");
    close_all(c.conns.iter().flatten()).await;
    Ok(r)
}
