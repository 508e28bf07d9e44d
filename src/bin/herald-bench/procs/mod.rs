//! `--procs N`: one run spread over N bench processes, past one process's descriptor limit
//! and its one core.
//!
//! The parent re-executes itself N times with the same arguments and
//! `HERALD_BENCH_SHARD=k/N` (and one `HERALD_BENCH_RUN_ID`, so the children share user and
//! room names). Each child runs its share of the connections (see `shard.rs`) from its own
//! source addresses and prints its JSON result. The parent does not connect anywhere: it
//! reads the server processes (`--server-pid`) and the children from `/proc`, releases the
//! children's barriers (`barrier.rs`) once all have arrived, and merges their results
//! (`merge.rs`). Between the barriers `measure` and `done` lie every child's measured phase,
//! so the parent's readings there give the servers' CPU and memory for the whole run.
//!
//! Files: this one spawns and supervises the children; `barrier.rs` the child's side of the
//! barriers; `merge.rs` the merge of the results; `report.rs` the parent's table and
//! resource figures.

mod barrier;
mod merge;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::scenarios::BenchResult;
use crate::servers::Snapshot;

pub use barrier::{Barrier, DONE, MEASURE, PUBLISHED};

/// The environment variable that makes a process a child (`k/N`).
pub const SHARD_ENV: &str = "HERALD_BENCH_SHARD";
/// The run id every child uses.
pub const RUN_ID_ENV: &str = "HERALD_BENCH_RUN_ID";

/// Scenarios that can be spread over processes.
pub const SHARDABLE: &[&str] = &["idle", "fanout", "direct", "persist"];

/// What the parent needs to know about the run.
pub struct ParentOptions {
    pub procs: usize,
    pub scenario: &'static str,
    pub server_pids: Vec<u32>,
    pub run_id: String,
    pub json: bool,
    pub quiet: bool,
    pub max_server_rss_kib: u64,
}

enum Event {
    Barrier(usize, String),
    Line(usize, String),
    Eof(usize),
}

/// The children, their pipes, and what they said.
struct Children {
    procs: Vec<Child>,
    stdin: Vec<Option<ChildStdin>>,
    alive: Vec<bool>,
    last_line: Vec<Option<String>>,
    results: Vec<Option<Map<String, Value>>>,
    failures: Vec<String>,
}

impl Children {
    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Child::id).collect()
    }

    fn signal_all(&self, sig: i32) {
        for (c, alive) in self.procs.iter().zip(&self.alive) {
            if *alive {
                // SAFETY: kill only sends a signal to a process we started.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, sig);
                }
            }
        }
    }
}

/// Readings the parent takes when it releases a barrier.
pub struct Readings {
    pub servers: Snapshot,
    pub children: Snapshot,
}

/// Runs the children and prints the merged result.
pub fn run_parent(o: ParentOptions) -> BenchResult<()> {
    if !SHARDABLE.contains(&o.scenario) {
        return Err(format!(
            "--procs: {} cannot be spread over processes (only {})",
            o.scenario,
            SHARDABLE.join(", ")
        ));
    }
    let exe = std::env::current_exe().map_err(|e| format!("--procs: own executable: {e}"))?;
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let (tx, rx) = mpsc::channel::<Event>();
    let mut ch = Children {
        procs: Vec::new(),
        stdin: Vec::new(),
        alive: Vec::new(),
        last_line: vec![None; o.procs],
        results: vec![None; o.procs],
        failures: Vec::new(),
    };
    let start = Readings {
        servers: Snapshot::take(&o.server_pids),
        children: Snapshot::take(&[]),
    };
    for k in 0..o.procs {
        let mut child = Command::new(&exe)
            .args(&args)
            .env(SHARD_ENV, format!("{k}/{}", o.procs))
            .env(RUN_ID_ENV, &o.run_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("--procs: starting child {k}: {e}"))?;
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let ev = match barrier::parse_barrier(&line) {
                        Some(name) => Event::Barrier(k, name.to_owned()),
                        None => Event::Line(k, line),
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Event::Eof(k));
            });
        }
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("[{k}] {line}");
                }
            });
        }
        ch.stdin.push(child.stdin.take());
        ch.procs.push(child);
        ch.alive.push(true);
    }
    drop(tx);
    if !o.quiet {
        eprintln!(
            "herald-bench: run {} in {} processes (pids {:?}), servers {:?}",
            o.run_id,
            o.procs,
            ch.pids(),
            o.server_pids
        );
    }
    let readings = supervise(&o, &mut ch, &rx);
    let results: Vec<Map<String, Value>> = ch.results.iter().flatten().cloned().collect();
    if results.is_empty() {
        return Err(format!(
            "--procs: no child produced a result: {}",
            ch.failures.join("; ")
        ));
    }
    let out = merge::merge(o.scenario, &results);
    let lats = merge::merged_histograms(&results);
    let r = report::parent_report(&o, out, &lats, &start, &readings, &ch.failures);
    r.print(o.json);
    if ch.failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} children failed",
            ch.failures.len(),
            o.procs
        ))
    }
}

/// Relays the barriers until every child has ended; the readings taken at each barrier.
fn supervise(
    o: &ParentOptions,
    ch: &mut Children,
    rx: &mpsc::Receiver<Event>,
) -> BTreeMap<String, Readings> {
    let mut arrived: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut released: BTreeMap<String, Readings> = BTreeMap::new();
    let started = Instant::now();
    let mut stopped = false;
    while ch.alive.iter().any(|a| *a) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Event::Barrier(k, name)) => {
                arrived.entry(name).or_default().insert(k);
            }
            Ok(Event::Line(k, line)) => ch.last_line[k] = Some(line),
            Ok(Event::Eof(k)) => finish(ch, k),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let s = Snapshot::take(&o.server_pids);
                if !o.quiet {
                    eprintln!(
                        "[{:>5.1}s] procs: {} of {} running, servers {} MiB, barriers {:?}",
                        started.elapsed().as_secs_f64(),
                        ch.alive.iter().filter(|a| **a).count(),
                        o.procs,
                        s.rss_kib().unwrap_or(0) / 1024,
                        released.keys().collect::<Vec<_>>()
                    );
                }
                let over = s.rss_kib().is_some_and(|k| k > o.max_server_rss_kib);
                if !stopped && (over || s.gone().is_some()) {
                    eprintln!("herald-bench: stopping the children (server RSS above the limit, or a server process is gone)");
                    ch.signal_all(libc::SIGINT);
                    stopped = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                for k in 0..ch.alive.len() {
                    if ch.alive[k] {
                        finish(ch, k);
                    }
                }
            }
        }
        // Release every barrier that all running children have reached.
        let names: Vec<String> = arrived.keys().cloned().collect();
        for name in names {
            let all = (0..ch.alive.len())
                .filter(|k| ch.alive[*k])
                .all(|k| arrived[&name].contains(&k));
            if all && !released.contains_key(&name) {
                let r = Readings {
                    servers: Snapshot::take(&o.server_pids),
                    children: Snapshot::take(&ch.pids()),
                };
                released.insert(name.clone(), r);
                let go = barrier::go_line(&name);
                for k in arrived[&name].iter().copied() {
                    if let Some(Some(stdin)) = ch.stdin.get_mut(k) {
                        let _ = writeln!(stdin, "{go}").and_then(|_| stdin.flush());
                    }
                }
            }
        }
    }
    released
}

/// Child `k` closed its stdout: reap it and keep its result (its last stdout line).
fn finish(ch: &mut Children, k: usize) {
    if !ch.alive[k] {
        return;
    }
    ch.alive[k] = false;
    ch.stdin[k] = None;
    let status = ch.procs[k].wait();
    let parsed = ch.last_line[k]
        .as_deref()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        });
    match (status, parsed) {
        (Ok(s), Some(m)) if s.success() => ch.results[k] = Some(m),
        (Ok(s), m) => {
            ch.failures.push(format!("child {k} ended with {s}"));
            ch.results[k] = m;
        }
        (Err(e), _) => ch.failures.push(format!("child {k}: {e}")),
    }
}
