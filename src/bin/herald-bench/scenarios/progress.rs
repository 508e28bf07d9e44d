//! The progress line: live counters printed once per second on stderr, and the run's
//! limits (time, server memory) checked on the same tick.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use tokio::time::{interval, MissedTickBehavior};

use crate::client::{self};
use crate::stats::{self, fmt_int};

use super::Ctx;
/// Live counters printed once per second on stderr.
#[derive(Default)]
pub struct Progress {
    pub phase: RefCell<String>,
    pub connected: Cell<u64>,
    pub connect_failed: Cell<u64>,
    pub sent: Cell<u64>,
    pub acked: Cell<u64>,
    pub received: Cell<u64>,
    pub errors: Cell<u64>,
    /// Set to stop the run early (interrupt, server memory guard, server gone).
    pub abort: RefCell<Option<String>>,
    pub quiet: Cell<bool>,
}

impl Progress {
    pub fn phase(&self, p: &str) {
        *self.phase.borrow_mut() = p.to_owned();
        if !self.quiet.get() {
            eprintln!("herald-bench: phase {p}");
        }
    }

    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    pub fn stop(&self, why: String) {
        let mut a = self.abort.borrow_mut();
        if a.is_none() {
            eprintln!("herald-bench: stopping early: {why}");
            *a = Some(why);
        }
    }
}

/// Prints the progress line every second and enforces the server memory guard.
pub fn spawn_progress(ctx: &Ctx, max_server_rss_kib: u64) {
    let progress = ctx.progress.clone();
    let pids = ctx.server_pids.clone();
    actix_web::rt::spawn(async move {
        let started = Instant::now();
        let mut last = (0u64, 0u64, 0u64);
        let mut server_cpu = sum_cpu(&pids);
        let mut self_cpu = stats::cpu_time(None);
        let mut machine = stats::MachineCpu::start();
        let mut tick = interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (sent, recv, conns) = (
                progress.sent.get(),
                progress.received.get(),
                progress.connected.get(),
            );
            let cpu_pct = |prev: &mut Option<Duration>, now: Option<Duration>| {
                let pct = match (now, *prev) {
                    (Some(n), Some(b)) => n.checked_sub(b).map(|d| d.as_secs_f64() * 100.0),
                    _ => None,
                };
                *prev = now;
                pct
            };
            let mut server = String::new();
            let mut srv_cpu = None;
            if !pids.is_empty() {
                let gone = pids.iter().find(|&&p| stats::rss_kib(p).is_none());
                let rss: u64 = pids.iter().filter_map(|&p| stats::rss_kib(p)).sum();
                match gone {
                    None => {
                        srv_cpu = cpu_pct(&mut server_cpu, sum_cpu(&pids));
                        server = format!(
                            "  server {} MiB {}%cpu",
                            rss / 1024,
                            srv_cpu.map_or("?".into(), |c| format!("{c:.0}"))
                        );
                        if rss > max_server_rss_kib {
                            progress.stop(format!(
                                "server RSS {} MiB is above --max-server-rss-mib {}",
                                rss / 1024,
                                max_server_rss_kib / 1024
                            ));
                        }
                    }
                    Some(pid) => progress.stop(format!("server process {pid} is gone")),
                }
            }
            let me = cpu_pct(&mut self_cpu, stats::cpu_time(None));
            let others = machine
                .percent()
                .map(|m| (m - me.unwrap_or(0.0) - srv_cpu.unwrap_or(0.0)).max(0.0));
            machine = stats::MachineCpu::start();
            let closes = client::net(|n| {
                n.server_closes
                    .borrow()
                    .iter()
                    .map(|(k, v)| format!(" close{k}={v}"))
                    .collect::<String>()
            });
            let live = client::net(|n| n.live.get());
            if !progress.quiet.get() {
                eprintln!(
                    "[{:>5.1}s] {:<8} open {} (+{}/s) fail {}  sent {} (+{}/s) acked {}  recv {} (+{}/s)  err {}{}  bench {}%cpu  others {}%cpu{}",
                    started.elapsed().as_secs_f64(),
                    progress.phase.borrow(),
                    fmt_int(live as f64),
                    fmt_int(conns.saturating_sub(last.2) as f64),
                    progress.connect_failed.get(),
                    fmt_int(sent as f64),
                    fmt_int(sent.saturating_sub(last.0) as f64),
                    fmt_int(progress.acked.get() as f64),
                    fmt_int(recv as f64),
                    fmt_int(recv.saturating_sub(last.1) as f64),
                    progress.errors.get(),
                    server,
                    me.map_or("?".into(), |c| format!("{c:.0}")),
                    others.map_or("?".into(), |c| format!("{c:.0}")),
                    closes,
                );
            }
            last = (sent, recv, conns);
        }
    });
}

/// CPU time of several processes, summed (`None` when one cannot be read).
fn sum_cpu(pids: &[u32]) -> Option<Duration> {
    pids.iter().map(|&p| stats::cpu_time(Some(p))).sum()
}
