//! The server processes (`--server-pid`, one or several): their RSS, CPU time and open
//! descriptors read from `/proc`, summed over the processes and reported per process.
//!
//! A [`Snapshot`] is one reading of every process (plus the machine's CPU ticks). Two
//! snapshots make a [`Window`]: CPU use over the interval, RSS and descriptors before and
//! after, per process and in all. The number of connections a node gained is estimated by
//! its descriptor count (one socket per connection), which also holds when the kernel spread
//! the connections (`HERALD_REUSE_PORT`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::stats;

/// One reading of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reading {
    pub rss_kib: u64,
    pub cpu: Duration,
    pub fds: u64,
}

/// Reads a process; `None` when it is gone.
pub fn read(pid: u32) -> Option<Reading> {
    Some(Reading {
        rss_kib: stats::rss_kib(pid)?,
        cpu: stats::cpu_time(Some(pid))?,
        fds: open_fds(pid).unwrap_or(0),
    })
}

/// Open descriptors of a process (`/proc/PID/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// Every server process read at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub pids: Vec<u32>,
    /// One per pid, `None` for a process that is gone.
    pub readings: Vec<Option<Reading>>,
    /// Busy and total CPU ticks of the machine.
    pub machine: Option<(u64, u64)>,
}

impl Snapshot {
    pub fn take(pids: &[u32]) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            pids: pids.to_vec(),
            readings: pids.iter().map(|&p| read(p)).collect(),
            machine: stats::machine_ticks(),
        }
    }

    /// RSS summed over the processes that are still there.
    pub fn rss_kib(&self) -> Option<u64> {
        let v: Vec<u64> = self.readings.iter().flatten().map(|r| r.rss_kib).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// The first pid that is gone.
    pub fn gone(&self) -> Option<u32> {
        self.pids
            .iter()
            .zip(&self.readings)
            .find(|(_, r)| r.is_none())
            .map(|(p, _)| *p)
    }
}

/// One process over an interval.
#[derive(Clone, Debug, PartialEq)]
pub struct PidWindow {
    pub pid: u32,
    pub cpu_pct: Option<f64>,
    pub before: Option<Reading>,
    pub after: Option<Reading>,
}

impl PidWindow {
    /// Connections gained, by the descriptor count.
    pub fn fds_gained(&self) -> Option<i64> {
        Some(self.after?.fds as i64 - self.before?.fds as i64)
    }

    pub fn rss_gained_kib(&self) -> Option<i64> {
        Some(self.after?.rss_kib as i64 - self.before?.rss_kib as i64)
    }

    /// RSS gained per descriptor gained: memory per connection on this node.
    pub fn kib_per_conn(&self) -> Option<f64> {
        let n = self.fds_gained()?;
        (n > 0).then(|| self.rss_gained_kib().unwrap_or(0) as f64 / n as f64)
    }
}

/// Every server process between two snapshots.
#[derive(Clone, Debug)]
pub struct Window {
    pub per_pid: Vec<PidWindow>,
    pub secs: f64,
    /// Machine-wide CPU over the interval, in % of one core.
    pub machine_pct: Option<f64>,
}

impl Window {
    pub fn between(a: &Snapshot, b: &Snapshot, cores: f64) -> Window {
        let secs = b.at.saturating_duration_since(a.at).as_secs_f64();
        let per_pid = a
            .pids
            .iter()
            .enumerate()
            .map(|(i, &pid)| {
                let before = a.readings.get(i).copied().flatten();
                let after = b.readings.get(i).copied().flatten();
                let cpu_pct = match (before, after) {
                    (Some(x), Some(y)) if secs > 0.0 => y
                        .cpu
                        .checked_sub(x.cpu)
                        .map(|d| d.as_secs_f64() / secs * 100.0),
                    _ => None,
                };
                PidWindow {
                    pid,
                    cpu_pct,
                    before,
                    after,
                }
            })
            .collect();
        let machine_pct = match (a.machine, b.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some(b1.saturating_sub(b0) as f64 / (t1 - t0) as f64 * 100.0 * cores)
            }
            _ => None,
        };
        Window {
            per_pid,
            secs,
            machine_pct,
        }
    }

    /// CPU of all server processes, % of one core (`None` when no process could be read).
    pub fn cpu_pct(&self) -> Option<f64> {
        let v: Vec<f64> = self.per_pid.iter().filter_map(|p| p.cpu_pct).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// RSS summed over the processes readable at both ends: (before, after).
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let both: Vec<(Reading, Reading)> = self
            .per_pid
            .iter()
            .filter_map(|p| Some((p.before?, p.after?)))
            .collect();
        (!both.is_empty()).then(|| {
            (
                both.iter().map(|(b, _)| b.rss_kib).sum(),
                both.iter().map(|(_, a)| a.rss_kib).sum(),
            )
        })
    }

    /// One JSON object per process: pid, cpu_pct, rss and fds before and after, and (for
    /// idle) KiB per connection on that node.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.per_pid
                .iter()
                .map(|p| {
                    json!({
                        "pid": p.pid,
                        "cpu_pct": stats::num(p.cpu_pct),
                        "rss_before_kib": p.before.map(|r| r.rss_kib),
                        "rss_after_kib": p.after.map(|r| r.rss_kib),
                        "fds_before": p.before.map(|r| r.fds),
                        "fds_after": p.after.map(|r| r.fds),
                        "conns_by_fds": p.fds_gained(),
                        "kib_per_conn": stats::num(p.kib_per_conn()),
                    })
                })
                .collect(),
        )
    }

    /// "pid 123: 45% cpu, 210 MiB (+120 MiB), +9,950 fds (12.1 KiB/conn); ..." for the table.
    pub fn summary(&self) -> String {
        self.per_pid
            .iter()
            .map(|p| {
                let mut s = format!(
                    "pid {}: {} cpu",
                    p.pid,
                    p.cpu_pct.map_or("?".into(), |c| format!("{c:.0}%"))
                );
                if let Some(a) = p.after {
                    s.push_str(&format!(", {} MiB", a.rss_kib / 1024));
                }
                if let (Some(n), Some(k)) = (p.fds_gained(), p.kib_per_conn()) {
                    s.push_str(&format!(
                        ", {} fds gained ({k:.1} KiB each)",
                        stats::fmt_int(n as f64)
                    ));
                }
                if p.after.is_none() {
                    s.push_str(" (gone)");
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// CPU of several server processes from now on (the multi-pid `CpuMeter`).
pub struct ServerMeter {
    start: Snapshot,
    cores: f64,
}

impl ServerMeter {
    pub fn start(pids: &[u32]) -> ServerMeter {
        ServerMeter {
            start: Snapshot::take(pids),
            cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        }
    }

    /// The window from the start until now.
    pub fn window(&self) -> Window {
        Window::between(&self.start, &Snapshot::take(&self.start.pids), self.cores)
    }

    /// CPU of all processes since the start, % of one core.
    pub fn percent(&self) -> Option<f64> {
        self.window().cpu_pct()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at: Instant, readings: Vec<Option<Reading>>) -> Snapshot {
        Snapshot {
            at,
            pids: (1..=readings.len() as u32).collect(),
            readings,
            machine: None,
        }
    }

    fn r(rss_kib: u64, cpu_ms: u64, fds: u64) -> Option<Reading> {
        Some(Reading {
            rss_kib,
            cpu: Duration::from_millis(cpu_ms),
            fds,
        })
    }

    #[test]
    fn windows_sum_and_split_per_process() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let a = snap(t0, vec![r(1000, 0, 10), r(2000, 500, 20), r(50, 0, 5)]);
        let b = snap(t1, vec![r(13_000, 1000, 1010), r(26_000, 1500, 2020), None]);
        let w = Window::between(&a, &b, 2.0);
        assert_eq!(w.per_pid[0].cpu_pct, Some(50.0));
        assert_eq!(w.per_pid[1].cpu_pct, Some(50.0));
        assert_eq!(w.per_pid[2].cpu_pct, None);
        assert_eq!(w.cpu_pct(), Some(100.0));
        assert_eq!(w.per_pid[0].kib_per_conn(), Some(12.0));
        assert_eq!(w.per_pid[1].kib_per_conn(), Some(12.0));
        assert_eq!(w.per_pid[2].kib_per_conn(), None);
        // The process that is gone is left out of both sums.
        assert_eq!(w.rss_kib(), Some((3000, 39_000)));
        assert_eq!(b.gone(), Some(3));
        assert_eq!(b.rss_kib(), Some(39_000));
        assert!(w.summary().contains("(gone)"));
    }

    #[test]
    fn reads_itself() {
        let me = std::process::id();
        let x = read(me);
        assert!(x.is_some_and(|x| x.rss_kib > 0 && x.fds > 0));
    }
}
