//! Measurement helpers: latency histograms (hdrhistogram, microseconds), the bench clock,
//! `/proc` readers (a process's RSS and CPU time), and the final report: a readable table on
//! stdout and, with `--json`, one single-line JSON object as the last stdout line.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

/// Unix time in nanoseconds (`CLOCK_REALTIME`): what publishers write into message bodies,
/// and the clock of the kernel's receive timestamps, so the two can be subtracted.
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The unix time (ns) of an `Instant` in the past.
pub fn unix_ns_of(i: Instant) -> u64 {
    unix_nanos().saturating_sub(u64::try_from(i.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// A latency histogram in microseconds (1 µs .. 1 h, 3 significant digits).
pub struct Lat {
    h: Histogram<u64>,
}

impl Default for Lat {
    fn default() -> Self {
        Self::new()
    }
}

impl Lat {
    pub fn new() -> Self {
        // Bounds and precision are constants that hdrhistogram accepts.
        match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
            Ok(h) => Lat { h },
            Err(_) => unreachable_histogram(),
        }
    }

    pub fn record_us(&mut self, us: u64) {
        self.h.saturating_record(us.max(1));
    }

    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_nanos(&mut self, ns: u64) {
        self.record_us(ns / 1000);
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// Quantile in milliseconds; `None` when empty.
    pub fn q_ms(&self, q: f64) -> Option<f64> {
        (self.count() > 0).then(|| self.h.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn max_ms(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.h.max() as f64 / 1000.0)
    }

    pub fn mean_ms(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.h.mean() / 1000.0)
    }

    /// The recorded values as `[value_us, count]` pairs (bucket values; recording them again
    /// rebuilds the same histogram), so another process can merge them.
    pub fn buckets(&self) -> Vec<[u64; 2]> {
        self.h
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect()
    }

    /// Adds `[value_us, count]` pairs written by [`Lat::buckets`].
    pub fn add_buckets(&mut self, buckets: &[[u64; 2]]) {
        for [v, n] in buckets {
            self.h.saturating_record_n((*v).max(1), *n);
        }
    }

    /// "p50 / p90 / p99 / max" in ms, for the table.
    pub fn summary(&self) -> String {
        if self.count() == 0 {
            return "n/a (no samples)".into();
        }
        format!(
            "p50 {} / p90 {} / p99 {} / max {} ms  (n={})",
            fmt_ms(self.q_ms(0.5)),
            fmt_ms(self.q_ms(0.9)),
            fmt_ms(self.q_ms(0.99)),
            fmt_ms(self.max_ms()),
            self.count()
        )
    }

    /// Adds `<prefix>p50_ms`, `p90`, `p99`, `p999`, `max`, `mean`, `samples` to a JSON map.
    pub fn to_json(&self, prefix: &str, m: &mut Map<String, Value>) {
        m.insert(format!("{prefix}p50_ms"), num(self.q_ms(0.5)));
        m.insert(format!("{prefix}p90_ms"), num(self.q_ms(0.9)));
        m.insert(format!("{prefix}p99_ms"), num(self.q_ms(0.99)));
        m.insert(format!("{prefix}p999_ms"), num(self.q_ms(0.999)));
        m.insert(format!("{prefix}max_ms"), num(self.max_ms()));
        m.insert(format!("{prefix}mean_ms"), num(self.mean_ms()));
        m.insert(format!("{prefix}samples"), Value::from(self.count()));
    }
}

fn unreachable_histogram() -> ! {
    // These bounds (1 ≤ low, high ≥ 2·low, 3 significant digits) are always accepted; if
    // they ever were not, the bench could not measure anything.
    eprintln!("herald-bench: cannot create a latency histogram");
    std::process::exit(70)
}

pub fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "n/a".into(),
    }
}

/// A JSON number rounded to 3 decimals, or null.
pub fn num(v: Option<f64>) -> Value {
    match v {
        Some(v) if v.is_finite() => {
            let r = (v * 1000.0).round() / 1000.0;
            serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number)
        }
        _ => Value::Null,
    }
}

/// Resident set size of a process in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&s, "VmRSS:")
}

/// Our own RSS in KiB.
pub fn self_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&s, "VmRSS:")
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time of a process (`/proc/PID/stat` or `/proc/self/stat`).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces; fields after its closing ')' are plain.
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11 and stime (15) 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(Duration::from_micros((utime + stime) * 1_000_000 / hz))
}

/// CPU use of a process over a wall-clock interval, in percent of one core.
pub struct CpuMeter {
    pid: Option<u32>,
    start_cpu: Option<Duration>,
    start: Instant,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> Self {
        CpuMeter {
            pid,
            start_cpu: cpu_time(pid),
            start: Instant::now(),
        }
    }

    pub fn percent(&self) -> Option<f64> {
        let now = cpu_time(self.pid)?;
        let used = now.checked_sub(self.start_cpu?)?;
        let wall = self.start.elapsed().as_secs_f64();
        (wall > 0.0).then(|| used.as_secs_f64() / wall * 100.0)
    }
}

/// Busy and total CPU time of the whole machine, in clock ticks (`/proc/stat`).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU use of the whole machine over an interval, in percent of one core (200% = 2 busy
/// cores), to show how much other processes took while the bench ran.
pub struct MachineCpu {
    start: Option<(u64, u64)>,
    cores: f64,
}

impl MachineCpu {
    pub fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        MachineCpu {
            start: machine_ticks(),
            cores,
        }
    }

    pub fn percent(&self) -> Option<f64> {
        let (b0, t0) = self.start?;
        let (b1, t1) = machine_ticks()?;
        let dt = t1.checked_sub(t0)?;
        (dt > 0).then(|| (b1 - b0) as f64 / dt as f64 * 100.0 * self.cores)
    }
}

/// The outcome of one scenario: table rows, notes, and the JSON object.
pub struct Report {
    pub scenario: String,
    rows: Vec<(String, String)>,
    notes: Vec<String>,
    json: Map<String, Value>,
    /// Keep the `_`-prefixed fields (histogram buckets, unix times) in the JSON: a child of
    /// `--procs` hands them to its parent for the merge.
    pub keep_private: bool,
}

impl Report {
    pub fn new(scenario: &str) -> Self {
        let mut json = Map::new();
        json.insert("scenario".into(), Value::from(scenario));
        // The headline fields are always present (null where they do not apply).
        for k in [
            "deliveries_per_s",
            "loss",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
        ] {
            json.insert(k.into(), Value::Null);
        }
        Report {
            scenario: scenario.to_owned(),
            rows: Vec::new(),
            notes: Vec::new(),
            json,
            keep_private: false,
        }
    }

    /// A table row.
    pub fn row(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.rows.push((name.into(), value.into()));
    }

    /// A line printed under the table (and collected in `notes` in the JSON).
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.json.insert(key.into(), v.into());
    }

    pub fn set_f(&mut self, key: &str, v: Option<f64>) {
        self.json.insert(key.into(), num(v));
    }

    pub fn json_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.json
    }

    /// Adds a latency histogram's `<prefix>p50_ms` … fields, and its buckets under
    /// `_hist.<prefix>` (for a `--procs` parent to merge).
    pub fn lat(&mut self, prefix: &str, lat: &Lat) {
        lat.to_json(prefix, &mut self.json);
        let hist = self
            .json
            .entry("_hist")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(h) = hist {
            h.insert(prefix.to_owned(), serde_json::json!(lat.buckets()));
        }
    }

    /// Prints the table, the notes and (when asked) the JSON line, in that order.
    pub fn print(mut self, json: bool) {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        println!();
        println!("herald-bench {}", self.scenario);
        println!("{}", "-".repeat(width + 40));
        for (k, v) in &self.rows {
            println!("{k:<width$}  {v}");
        }
        println!("{}", "-".repeat(width + 40));
        for n in &self.notes {
            println!("note: {n}");
        }
        if json {
            if !self.keep_private {
                self.json.retain(|k, _| !k.starts_with('_'));
            }
            self.json.insert(
                "notes".into(),
                Value::from(
                    self.notes
                        .iter()
                        .map(|n| Value::from(n.as_str()))
                        .collect::<Vec<_>>(),
                ),
            );
            println!("{}", Value::Object(self.json));
        }
    }
}

/// `12345.6` → `"12,346"`.
pub fn fmt_int(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let n = v.round() as i64;
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Loss as a percentage string with enough digits to show small losses.
pub fn fmt_loss(loss: Option<f64>) -> String {
    match loss {
        None => "n/a".into(),
        Some(0.0) => "0 (none)".into(),
        Some(l) => format!("{:.4}%", l * 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(fmt_int(0.0), "0");
        assert_eq!(fmt_int(999.0), "999");
        assert_eq!(fmt_int(1000.0), "1,000");
        assert_eq!(fmt_int(1234567.4), "1,234,567");
    }

    #[test]
    fn histogram_quantiles() {
        let mut l = Lat::new();
        for i in 1..=100u64 {
            l.record_us(i * 1000);
        }
        let p50 = l.q_ms(0.5).unwrap_or(0.0);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!(l.max_ms().unwrap_or(0.0) >= 99.0);
    }

    #[test]
    fn buckets_merge() {
        let mut a = Lat::new();
        let mut b = Lat::new();
        for i in 1..=50u64 {
            a.record_us(i * 1000);
        }
        for i in 51..=100u64 {
            b.record_us(i * 1000);
        }
        let mut m = Lat::new();
        m.add_buckets(&a.buckets());
        m.add_buckets(&b.buckets());
        assert_eq!(m.count(), 100);
        let p50 = m.q_ms(0.5).unwrap_or(0.0);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        let max = m.max_ms().unwrap_or(0.0);
        assert!((99.0..=100.1).contains(&max), "{max}");
    }

    #[test]
    fn status_parse() {
        let s = "Name:\tx\nVmRSS:\t  1234 kB\n";
        assert_eq!(status_kib(s, "VmRSS:"), Some(1234));
    }
}
