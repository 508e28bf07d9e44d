//! `direct`: N pairs of users exchanging 1:1 messages with `send` `to` (the pair's direct
//! room, created by a warm-up message before measuring). Both sides of every pair publish
//! (only the first with `--one-way`); `--rate` is the total. Measures ack latency (the ack comes after the durable commit) and
//! publish→receive latency, and loss (each acked message must reach the peer).

use std::time::Duration;

use clap::Args;

use super::{
    close_all, connect_many, drain, pause, publish_for, receiver, report_deliveries,
    report_publishing, report_resources, BenchResult, Book, Ctx, PubOptions, Publisher, Target,
    MAX_PAD,
};
use crate::client::Handler;
use crate::procs::{DONE, MEASURE, PUBLISHED};
use crate::shard::Shard;
use crate::stats::{CpuMeter, Report};

#[derive(Args, Clone, Debug)]
pub struct DirectArgs {
    /// Pairs of users (two connections each).
    #[arg(long, default_value_t = 500)]
    pub pairs: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Publishing time in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Padding bytes added to each message text (max 60000).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=MAX_PAD as i64))]
    pub pad: u32,
    /// Unacked messages allowed per connection.
    #[arg(long, default_value_t = 64)]
    pub max_inflight: usize,
    /// Only the first user of each pair sends (the second only receives).
    #[arg(long)]
    pub one_way: bool,
    /// Longest wait for outstanding acks and deliveries after publishing stops.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Send messages without a `client_msg_id` (no retry check in the server's commit).
    #[arg(long)]
    pub no_client_msg_id: bool,
}

pub async fn run(ctx: &Ctx, a: &DirectArgs) -> BenchResult<Report> {
    let mut r = Report::new("direct");
    // Pairs are the units of --procs (both sides in one process); global user 2p and 2p+1
    // are pair p's, on servers (2p) % servers and (2p+1) % servers.
    let mut mine = ctx.shard.units(a.pairs, ctx.servers());
    let total = ctx.cap(
        mine.len() * 2,
        "direct --pairs x 2 (this process's share)",
        &mut r,
    );
    mine.truncate(total / 2);
    let pairs = mine.len();
    let global = |i: usize| 2 * mine[i / 2] + i % 2;
    let users: Vec<String> = (0..pairs * 2)
        .map(|i| {
            format!(
                "dm-{}-{}{}",
                ctx.run_id,
                if i % 2 == 0 { 'a' } else { 'b' },
                mine[i / 2]
            )
        })
        .collect();
    let rate = Shard::rate_share(a.rate, pairs, a.pairs);
    let book = Book::new_shared(ctx.shard.is_child().then_some(ctx.shard.index as u32));
    let handlers = |_: usize| -> Handler { receiver(book.clone(), ctx.progress.clone()) };
    let rooms = |_: usize| None;
    let servers = |i: usize| ctx.server_of(global(i));
    ctx.progress.phase("connect");
    let c = connect_many(ctx, &users, &servers, &handlers, &rooms).await;
    r.row(
        "connections",
        format!(
            "{} pairs requested, {} of {} connected in {:.2} s",
            pairs,
            c.ok(),
            pairs * 2,
            c.elapsed.as_secs_f64()
        ),
    );
    if c.failed() > 0 {
        r.row("connect failures", c.failures_text());
    }
    // Both sides of complete pairs publish to each other (only the first with --one-way).
    let mut publishers = Vec::new();
    for p in 0..pairs {
        if let (Some(x), Some(y)) = (&c.conns[2 * p], &c.conns[2 * p + 1]) {
            publishers.push(Publisher {
                conn: x.clone(),
                target: Target::To(y.user.to_string()),
            });
            if !a.one_way {
                publishers.push(Publisher {
                    conn: y.clone(),
                    target: Target::To(x.user.to_string()),
                });
            }
        }
    }
    if publishers.is_empty() {
        return Err(format!("no complete pair connected: {}", c.failures_text()));
    }
    let opts = PubOptions {
        max_inflight: a.max_inflight.max(1),
        pad: a.pad as usize,
        ack_timeout: ctx.timeout,
        client_msg_id: !a.no_client_msg_id,
    };

    // Warm-up: the first message of each pair creates its direct room.
    ctx.progress.phase("warm-up");
    for p in publishers.iter().step_by(if a.one_way { 1 } else { 2 }) {
        p.publish(&book, &ctx.progress, &ctx.run_id, opts);
    }
    drain(ctx, &book, 1, ctx.timeout).await;
    {
        let w = book.borrow();
        let (expected, got, _, _) = w.loss(1);
        r.row(
            "warm-up",
            format!(
                "{} direct rooms created ({} of {} warm-up messages acked, {} delivered)",
                w.acks, w.acks, w.sent, got
            ),
        );
        if got < expected || w.acks < w.sent {
            r.note(format!(
                "warm-up incomplete: {} of {} acked ({}), {got} of {expected} delivered",
                w.acks,
                w.sent,
                w.ack_errors_text()
            ));
        }
    }
    pause(ctx, Duration::from_millis(500)).await;
    book.borrow_mut().begin_measurement();

    ctx.barrier(MEASURE).await;
    let server_cpu = ctx.server_meter();
    ctx.measure_from_now();
    let self_cpu = CpuMeter::start(None);
    ctx.progress.phase("publish");
    let secs = Duration::from_secs_f64(a.secs.max(0.0));
    let pub_time = publish_for(ctx, &publishers, rate, secs, opts, &book).await;
    ctx.barrier(PUBLISHED).await;
    ctx.progress.phase("drain");
    drain(ctx, &book, 1, a.drain).await;
    ctx.barrier(DONE).await;
    {
        let b = book.borrow();
        report_publishing(&mut r, &b, rate, pub_time);
        report_deliveries(&mut r, &b, 1);
    }
    r.set("pairs", pairs as u64);
    r.set("one_way", a.one_way);
    r.set("client_msg_id", !a.no_client_msg_id);
    r.set("senders", publishers.len() as u64);
    r.set("connect_failed", c.failed());
    r.set_f(
        "connect_per_s",
        Some(c.ok() as f64 / c.elapsed.as_secs_f64().max(1e-9)),
    );
    r.row(
        "per sender",
        format!("{:.2} msg/s", rate / publishers.len() as f64),
    );
    report_resources(ctx, &mut r, &server_cpu, &self_cpu).await;
    ctx.progress.phase("close");
    close_all(c.conns.iter().flatten()).await;
    Ok(r)
}
