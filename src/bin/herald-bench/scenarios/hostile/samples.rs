//! The server's RSS and open descriptors, sampled once a second while the attacks run, and
//! their report section.

use std::cell::Cell;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::time::{interval, MissedTickBehavior};

use crate::scenarios::Ctx;
use crate::servers;
use crate::stats::Report;

use super::Attacks;
/// Server RSS (KiB) and open descriptors, sampled once a second.
#[derive(Default)]
pub(super) struct Samples {
    start: Option<(u64, usize)>,
    /// (KiB, seconds into the run).
    peak_rss: Option<(u64, f64)>,
    /// (descriptors, seconds into the run).
    peak_fds: Option<(usize, f64)>,
    /// (seconds, KiB, descriptors) every 10 s.
    timeline: Vec<(u64, u64, usize)>,
}
/// The servers' RSS (KiB) and open descriptors now, summed over the `--server-pid`s.
pub(super) fn server_reading(ctx: &Ctx) -> Option<(u64, usize)> {
    let all: Vec<servers::Reading> = ctx
        .server_pids
        .iter()
        .filter_map(|&p| servers::read(p))
        .collect();
    (!all.is_empty()).then(|| {
        (
            all.iter().map(|r| r.rss_kib).sum(),
            all.iter().map(|r| r.fds as usize).sum(),
        )
    })
}

/// Samples the server once a second until `done`; a line on stderr every 30 s.
pub(super) async fn sample(ctx: &Ctx, attacks: &Attacks, done: &Cell<bool>) -> Samples {
    let mut s = Samples::default();
    if ctx.server_pids.is_empty() {
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

pub(super) fn report_samples(
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
