//! The parent's report of a `--procs` run: the merged result, the servers' and the children's
//! CPU and memory between the barriers `measure` and `done` (read by the parent from
//! `/proc`), and one row per child.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::servers::Window;
use crate::stats::{fmt_int, fmt_loss, fmt_ms, num, Lat, Report};

use super::{ParentOptions, Readings, DONE, MEASURE};

/// Builds the parent's report from the merged JSON and the readings at the barriers.
pub(super) fn parent_report(
    o: &ParentOptions,
    merged: Map<String, Value>,
    lats: &[(String, Lat)],
    start: &Readings,
    at: &BTreeMap<String, Readings>,
    failures: &[String],
) -> Report {
    let mut r = Report::new(o.scenario);
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let from = at.get(MEASURE).unwrap_or(start);
    let to = at.get(DONE);
    let g = |k: &str| merged.get(k).cloned().unwrap_or(Value::Null);
    let gu = |k: &str| merged.get(k).and_then(Value::as_u64).unwrap_or(0);
    let gi = |k: &str| {
        merged
            .get(k)
            .and_then(Value::as_f64)
            .map_or("n/a".into(), fmt_int)
    };
    let lat = |p: &str| lats.iter().find(|(q, _)| q == p).map(|(_, l)| l.summary());

    r.row(
        "processes",
        format!(
            "{} children, each its share of the connections from its own source addresses; {}",
            o.procs,
            super::merge::METHOD
        ),
    );
    match o.scenario {
        "idle" => {
            r.row(
                "connections",
                format!(
                    "{} requested, {} open, {} failed {}",
                    fmt_int(gu("requested") as f64),
                    fmt_int(gu("connections") as f64),
                    gu("connect_failed"),
                    g("connect_failures")
                ),
            );
            r.row(
                "connect rate",
                format!(
                    "{} conn/s (all children, over the slowest child's {} s)",
                    gi("connect_per_s"),
                    g("connect_secs")
                ),
            );
        }
        _ => {
            r.row(
                "sent / acked",
                format!(
                    "{} / {} ({} acked/s over the common span)",
                    fmt_int(gu("sent") as f64),
                    fmt_int(gu("acked") as f64),
                    gi("acked_per_s")
                ),
            );
            r.row(
                "deliveries",
                format!(
                    "{} of {} expected ({} per acked message), {}/s",
                    fmt_int(gu("received_deliveries") as f64),
                    fmt_int(gu("expected_deliveries") as f64),
                    g("receivers_per_message"),
                    gi("deliveries_per_s")
                ),
            );
            r.row("loss", fmt_loss(merged.get("loss").and_then(Value::as_f64)));
            if let Some(s) = lat("ack_").filter(|_| o.scenario != "persist") {
                r.row("ack latency", s);
            }
            if let Some(s) = lat("app_") {
                r.row("delivery latency (bench app)", s);
            }
        }
    }
    if let Some(s) = lat("") {
        let what = match o.scenario {
            "idle" => "connect latency",
            "persist" => "ack latency",
            _ => "delivery latency (socket)",
        };
        r.row(format!("{what} (merged)"), s);
    }
    for (k, v) in merged {
        r.set(&k, v);
    }

    // Servers and children between the barriers.
    if let Some(to) = to {
        let servers = Window::between(&from.servers, &to.servers, cores);
        let bench = Window::between(&from.children, &to.children, cores);
        let server_cpu = servers.cpu_pct();
        let bench_cpu = bench.cpu_pct();
        r.set_f("window_secs", Some(servers.secs));
        r.set_f("server_cpu_pct", server_cpu);
        r.set_f("bench_cpu_pct", bench_cpu);
        r.set(
            "bench_cpu_pct_per_child",
            Value::Array(bench.per_pid.iter().map(|p| num(p.cpu_pct)).collect()),
        );
        r.set("servers", servers.to_json());
        if !servers.per_pid.is_empty() {
            r.row("servers (measured phase)", servers.summary());
        }
        if let Some((before, after)) = servers.rss_kib() {
            r.set("server_rss_kib", after);
            r.set("server_rss_before_kib", before);
            if o.scenario == "idle" {
                let conns = r.json_mut().get("connections").and_then(Value::as_u64);
                let k = conns
                    .filter(|n| *n > 0)
                    .map(|n| (after as f64 - before as f64) / n as f64);
                r.set_f("kib_per_conn", k);
                r.row(
                    "server memory per connection",
                    format!(
                        "{} KiB (all servers: {} MiB before, {} MiB after)",
                        fmt_ms(k),
                        before / 1024,
                        after / 1024
                    ),
                );
            }
        }
        if let Some(m) = servers.machine_pct {
            let other = (m - server_cpu.unwrap_or(0.0) - bench_cpu.unwrap_or(0.0)).max(0.0);
            r.row(
                "CPU (measured phase)",
                format!(
                    "servers {}%, bench children {}%, machine {m:.0}% of {:.0}% ({other:.0}% other processes), {:.1} s",
                    server_cpu.map_or("?".into(), |c| format!("{c:.0}")),
                    bench_cpu.map_or("?".into(), |c| format!("{c:.0}")),
                    cores * 100.0,
                    servers.secs
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
    } else {
        r.note("the children never reached the barrier `done`: no server readings");
    }

    // One row per child, and its notes.
    let children = r
        .json_mut()
        .get("children")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (k, c) in children.iter().enumerate() {
        let n = c
            .get("connections")
            .or_else(|| c.get("connected"))
            .or_else(|| c.get("senders"))
            .cloned()
            .unwrap_or(Value::Null);
        r.row(
            format!("child {k}"),
            format!(
                "{n} connections, p50 {} / p99 {} ms, bench CPU {}%",
                c.get("p50_ms").cloned().unwrap_or(Value::Null),
                c.get("p99_ms").cloned().unwrap_or(Value::Null),
                c.get("bench_cpu_pct").cloned().unwrap_or(Value::Null)
            ),
        );
        for note in c
            .get("notes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            r.note(format!("child {k}: {}", note.as_str().unwrap_or("")));
        }
    }
    for f in failures {
        r.note(f.clone());
    }
    r.set("run_id", o.run_id.as_str());
    r.set(
        "date",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    r
}
