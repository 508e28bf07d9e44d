//! The report sections scenarios share: publishing (rate, acks, latency), deliveries (loss,
//! latency) and the server's resources (memory, descriptors, stats).

use std::time::Duration;

use serde_json::{json, Value};

use crate::client::{self};
use crate::servers::ServerMeter;
use crate::stats::{self, fmt_int, unix_ns_of, Report};

use super::{Book, Ctx};
/// Acked messages per second from the first send to the last ack (acks that arrive after
/// publishing stopped count, and so does the time they took).
pub fn acked_per_s(b: &Book) -> Option<f64> {
    match (b.first_send, b.last_ack) {
        (Some(a), Some(z)) if z > a => Some(b.acks as f64 / (z - a).as_secs_f64()),
        _ => None,
    }
}

/// Adds the publishing figures shared by fanout, direct and persist to a report.
pub fn report_publishing(r: &mut Report, b: &Book, rate: f64, pub_time: Duration) {
    let secs = pub_time.as_secs_f64().max(1e-9);
    let acked_rate = acked_per_s(b);
    r.row(
        "offered / sent",
        format!(
            "{} msg/s target, {} sent in {:.1} s ({} msg/s)",
            fmt_int(rate),
            fmt_int(b.sent as f64),
            secs,
            fmt_int(b.sent as f64 / secs)
        ),
    );
    r.row(
        "acked (durable)",
        format!(
            "{} ({} msg/s from the first send to the last ack)",
            fmt_int(b.acks as f64),
            acked_rate.map_or("n/a".into(), fmt_int)
        ),
    );
    if b.acks_per_second.len() > 1 {
        r.row(
            "acks per 1-s window",
            b.acks_per_second
                .iter()
                .map(|n| fmt_int(*n as f64))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    r.row("ack errors", b.ack_errors_text());
    if b.throttled > 0 {
        r.row(
            "throttled sends",
            format!(
                "{} (every publisher had max-inflight unacked messages)",
                fmt_int(b.throttled as f64)
            ),
        );
    }
    r.row("ack latency", b.ack_lat.summary());
    r.set("target_rate", rate);
    r.set("sent", b.sent);
    r.set("acked", b.acks);
    r.set_f("sent_per_s", Some(b.sent as f64 / secs));
    r.set_f("acked_per_s", acked_rate);
    r.set("acks_per_second", json!(b.acks_per_second));
    r.set("throttled", b.throttled);
    r.set("ack_timeouts", b.ack_timeouts);
    r.set("ack_errors", json!(b.ack_errors));
    r.lat("ack_", &b.ack_lat);
    // For a --procs parent: the span of this child's sends and acks in unix time.
    r.set_f("_pub_secs", Some(secs));
    r.set("_t_first_send_ns", json!(b.first_send.map(unix_ns_of)));
    r.set("_t_last_ack_ns", json!(b.last_ack.map(unix_ns_of)));
}

/// Adds delivery figures (rate, loss, latency) to a report.
pub fn report_deliveries(r: &mut Report, b: &Book, receivers: u64) {
    let (expected, got, dup, loss) = b.loss(receivers);
    let span = match (b.first_send, b.last_delivery) {
        (Some(a), Some(z)) if z > a => (z - a).as_secs_f64(),
        _ => 0.0,
    };
    let per_s = (span > 0.0).then(|| b.deliveries as f64 / span);
    r.row(
        "deliveries",
        format!(
            "{} received of {} expected ({} per acked message)",
            fmt_int(got as f64),
            fmt_int(expected as f64),
            receivers
        ),
    );
    r.row(
        "deliveries/s",
        per_s.map_or("n/a".into(), |v| {
            format!("{} (first send to last delivery)", fmt_int(v))
        }),
    );
    r.row("loss", stats::fmt_loss(loss));
    if dup > 0 || b.unknown > 0 {
        r.row("duplicates / unknown", format!("{dup} / {}", b.unknown));
    }
    r.row("delivery latency (socket)", b.delivery_lat.summary());
    r.row("delivery latency (bench app)", b.delivery_app_lat.summary());
    if !b.closes.is_empty() {
        r.row("server closes", format!("{:?}", b.closes));
        r.note(format!(
            "the server closed connections during the run: {:?} (4008 = slow consumer)",
            b.closes
        ));
    }
    r.set_f("deliveries_per_s", per_s);
    r.set_f("loss", loss);
    r.set("expected_deliveries", expected);
    r.set("received_deliveries", got);
    r.set("duplicates", dup);
    r.set("receivers_per_message", receivers);
    // Every bench delivery, this process's messages and (with --procs) the other children's.
    r.set("deliveries_all", b.deliveries);
    r.set("foreign_deliveries", b.foreign);
    r.set(
        "_t_last_delivery_ns",
        json!(b.last_delivery.map(unix_ns_of)),
    );
    r.set("server_closes", json!(b.closes));
    r.set("other_frames", json!(b.other_frames));
    // Headline: send → bytes at the receiving socket (kernel receive timestamp); the `app_`
    // figures add the time the single-threaded bench took to get to the frame.
    if b.delivery_lat.count() > 0 {
        r.lat("", &b.delivery_lat);
    } else {
        r.lat("", &b.delivery_app_lat);
    }
    r.lat("app_", &b.delivery_app_lat);
}

/// Shared tail of every report: resources of the server(s) and of the bench process.
pub async fn report_resources(
    ctx: &Ctx,
    r: &mut Report,
    server_cpu: &ServerMeter,
    self_cpu: &stats::CpuMeter,
) {
    let machine = ctx.machine_cpu.borrow().percent();
    let window = server_cpu.window();
    let server_pct = window.cpu_pct();
    if let Some(p) = server_pct {
        r.row("server CPU (run)", format!("{p:.0}% of one core"));
        r.set_f("server_cpu_pct", Some(p));
    }
    if let Some(rss) = ctx.server_rss_kib() {
        r.row("server RSS (end)", format!("{} MiB", rss / 1024));
        r.set("server_rss_kib", rss);
    }
    if window.per_pid.len() > 1 {
        r.row("servers (run)", window.summary());
    }
    if !window.per_pid.is_empty() {
        r.set("servers", window.to_json());
    }
    if let Some(p) = self_cpu.percent() {
        r.row(
            "bench CPU (run)",
            format!("{p:.0}% of one core (single-threaded client)"),
        );
        r.set_f("bench_cpu_pct", Some(p));
        if p > 85.0 {
            r.note(format!(
                "the bench process used {p:.0}% of its one core: the client may limit these figures"
            ));
        }
    }
    if let Some(m) = machine {
        let own = server_pct.unwrap_or(0.0) + self_cpu.percent().unwrap_or(0.0);
        let other = (m - own).max(0.0);
        r.row(
            "machine CPU (run)",
            format!(
                "{m:.0}% of {:.0}% ({other:.0}% used by other processes)",
                ctx.cores * 100.0
            ),
        );
        r.set_f("machine_cpu_pct", Some(m));
        r.set_f("other_cpu_pct", Some(other));
        if other > 20.0 {
            r.note(format!(
                "other processes used {other:.0}% of a core during the measurement: figures are disturbed"
            ));
        }
    }
    let (frames, bytes, closes, errors) = client::net(|n| {
        (
            n.frames_in.get(),
            n.bytes_in.get(),
            n.server_closes.borrow().clone(),
            n.errors.borrow().clone(),
        )
    });
    r.row(
        "frames received",
        format!("{} ({} MiB)", fmt_int(frames as f64), bytes >> 20),
    );
    if !closes.is_empty() {
        r.row("unsolicited server closes", format!("{closes:?}"));
    }
    if !errors.is_empty() {
        r.row("connection errors", format!("{errors:?}"));
    }
    r.set("frames_in", frames);
    r.set("bytes_in", bytes);
    r.set("unsolicited_closes", json!(closes));
    r.set("connection_errors", json!(errors));
    // In cluster mode the first node's stats include every node's (`cluster.nodes`).
    if let Some(s) = ctx.server_stats(0).await {
        let pick = |k: &str| s.get(k).cloned().unwrap_or(Value::Null);
        r.row(
            "server /v1/admin/stats",
            format!(
                "slow_consumers_total {}, messages_in_total {}, frames_out_total {}, max_batch_groups {}",
                pick("slow_consumers_total"),
                pick("messages_in_total"),
                pick("frames_out_total"),
                s.get("persistence")
                    .and_then(|p| p.get("max_batch_groups"))
                    .cloned()
                    .unwrap_or(Value::Null)
            ),
        );
        r.set("server_stats", s);
    }
    if let Some(why) = ctx.aborted() {
        r.note(format!("the run stopped early: {why}"));
        r.set("aborted", why);
    }
}
