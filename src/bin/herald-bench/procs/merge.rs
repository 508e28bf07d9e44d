//! Merging the children's JSON results of a `--procs` run into one object.
//!
//! - **Counts are summed** (connections, sends, acks, deliveries, frames, failures by kind;
//!   acks per 1-s window element by element, the children start publishing together).
//! - **Latency histograms are merged**: each child exports its histograms as hdrhistogram
//!   buckets (`_hist`), and every `*_p50_ms` … `*_max_ms` of the result is computed from the
//!   merged histogram, not averaged.
//! - **Rates are recomputed** from the summed counts over the children's common span (unix
//!   times `_t_*`): the first send of any child to the last ack or delivery of any child;
//!   connects over the slowest child's connect phase.
//! - **Loss is recomputed from summed counts**: expected = Σ acked × receivers per message of
//!   the whole run, received = Σ bench deliveries of every child (capped at expected).
//!   Duplicates across processes are not told apart from deliveries (each child checks its
//!   own messages for duplicates, see `children`).
//! - Settings every child reports alike are copied; everything else stays in `children`,
//!   one object per child.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::stats::{num, Lat};

/// How the merged result was formed (put in the JSON as `merge`).
pub const METHOD: &str = "counts summed; latency histograms merged (hdrhistogram buckets); \
rates recomputed over the common span; loss from summed counts; per-child results in `children`";

/// Counters summed over the children.
const SUM: &[&str] = &[
    "connections",
    "requested",
    "connect_failed",
    "open_after_settle",
    "open_at_end",
    "sent",
    "acked",
    "throttled",
    "ack_timeouts",
    "deliveries_all",
    "foreign_deliveries",
    "frames_in",
    "bytes_in",
    "subs",
    "pubs",
    "connected",
    "senders",
    "pairs",
    "target_rate",
    "capped_from",
];

/// Maps of counters (by kind) summed key by key.
const SUM_MAPS: &[&str] = &[
    "ack_errors",
    "connect_failures",
    "server_closes",
    "unsolicited_closes",
    "connection_errors",
    "frame_types",
    "other_frames",
];

/// Recomputed by the merge or by the parent: never copied from a child.
const RECOMPUTED: &[&str] = &[
    "deliveries_per_s",
    "loss",
    "expected_deliveries",
    "received_deliveries",
    "duplicates",
    "receivers_per_message",
    "connect_per_s",
    "connect_secs",
    "acked_per_s",
    "stored_per_s",
    "sent_per_s",
    "acks_per_second",
    "kib_per_conn",
    "server_cpu_pct",
    "server_rss_kib",
    "bench_cpu_pct",
    "machine_cpu_pct",
    "other_cpu_pct",
    "server_stats",
    "notes",
    "date",
    "source_addrs",
];

/// Merges the children's results of scenario `scenario`.
pub fn merge(scenario: &str, children: &[Map<String, Value>]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("scenario".into(), Value::from(scenario));
    let keys: BTreeSet<&String> = children.iter().flat_map(|c| c.keys()).collect();
    for k in keys {
        let k = k.as_str();
        let latency = k.ends_with("_ms") || k.ends_with("_samples");
        if k.starts_with('_') || RECOMPUTED.contains(&k) || latency {
            continue;
        }
        let vals: Vec<&Value> = children.iter().filter_map(|c| c.get(k)).collect();
        let v = if SUM.contains(&k) {
            sum(&vals)
        } else if SUM_MAPS.contains(&k) {
            sum_maps(&vals)
        } else if vals.len() == children.len() && vals.windows(2).all(|w| w[0] == w[1]) {
            vals[0].clone()
        } else {
            continue;
        };
        out.insert(k.to_owned(), v);
    }
    for (prefix, lat) in merged_histograms(children) {
        lat.to_json(&prefix, &mut out);
    }
    out.insert(
        "acks_per_second".into(),
        per_second(children, "acks_per_second"),
    );
    rates(scenario, children, &mut out);
    loss(scenario, children, &mut out);
    out.insert("merge".into(), Value::from(METHOD));
    out.insert("procs".into(), Value::from(children.len() as u64));
    if let Some(s) = children.first().and_then(|c| c.get("server_stats")) {
        out.insert("server_stats".into(), s.clone());
    }
    let per_child: Vec<Value> = children
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.retain(|k, _| !k.starts_with('_') && k != "server_stats");
            Value::Object(c)
        })
        .collect();
    out.insert("children".into(), Value::Array(per_child));
    out
}

/// The children's histograms merged, by prefix (`""` is the headline latency).
pub fn merged_histograms(children: &[Map<String, Value>]) -> Vec<(String, Lat)> {
    let prefixes: BTreeSet<&String> = children
        .iter()
        .filter_map(|c| c.get("_hist").and_then(Value::as_object))
        .flat_map(|h| h.keys())
        .collect();
    prefixes
        .into_iter()
        .map(|p| {
            let mut lat = Lat::new();
            for c in children {
                if let Some(b) = c.get("_hist").and_then(|h| h.get(p.as_str())) {
                    let buckets: Vec<[u64; 2]> =
                        serde_json::from_value(b.clone()).unwrap_or_default();
                    lat.add_buckets(&buckets);
                }
            }
            (p.clone(), lat)
        })
        .collect()
}

fn u(c: &Map<String, Value>, k: &str) -> Option<u64> {
    c.get(k).and_then(Value::as_u64)
}

fn f(c: &Map<String, Value>, k: &str) -> Option<f64> {
    c.get(k).and_then(Value::as_f64)
}

fn sum(vals: &[&Value]) -> Value {
    if vals.iter().all(|v| v.is_u64()) {
        Value::from(vals.iter().filter_map(|v| v.as_u64()).sum::<u64>())
    } else {
        num(Some(vals.iter().filter_map(|v| v.as_f64()).sum::<f64>()))
    }
}

fn sum_maps(vals: &[&Value]) -> Value {
    let mut out = Map::new();
    for m in vals.iter().filter_map(|v| v.as_object()) {
        for (k, v) in m {
            let n = out.get(k).and_then(Value::as_u64).unwrap_or(0) + v.as_u64().unwrap_or(0);
            out.insert(k.clone(), Value::from(n));
        }
    }
    Value::Object(out)
}

/// Arrays of per-second counts added element by element.
fn per_second(children: &[Map<String, Value>], k: &str) -> Value {
    let mut out: Vec<u64> = Vec::new();
    for c in children {
        if let Some(a) = c.get(k).and_then(Value::as_array) {
            if out.len() < a.len() {
                out.resize(a.len(), 0);
            }
            for (i, v) in a.iter().enumerate() {
                out[i] += v.as_u64().unwrap_or(0);
            }
        }
    }
    json!(out)
}

/// Rates over the common span of the children.
fn rates(scenario: &str, children: &[Map<String, Value>], out: &mut Map<String, Value>) {
    let total = |k: &str| children.iter().filter_map(|c| u(c, k)).sum::<u64>();
    let min_t = |k: &str| children.iter().filter_map(|c| u(c, k)).min();
    let max_t = |k: &str| children.iter().filter_map(|c| u(c, k)).max();
    let per_s = |n: u64, from: Option<u64>, to: Option<u64>| match (from, to) {
        (Some(a), Some(z)) if z > a => Some(n as f64 / ((z - a) as f64 / 1e9)),
        _ => None,
    };
    // Connects: all children start together; the slowest one ends the phase.
    let connect_secs = children
        .iter()
        .filter_map(|c| f(c, "connect_secs"))
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    if let Some(secs) = connect_secs.filter(|s| *s > 0.0) {
        let n = if scenario == "idle" {
            total("connections")
        } else {
            total("connected")
        };
        out.insert("connect_secs".into(), num(Some(secs)));
        out.insert("connect_per_s".into(), num(Some(n as f64 / secs)));
    }
    if scenario == "idle" {
        return;
    }
    let first = min_t("_t_first_send_ns");
    let acked = per_s(total("acked"), first, max_t("_t_last_ack_ns"));
    out.insert("acked_per_s".into(), num(acked));
    if scenario == "persist" {
        out.insert("stored_per_s".into(), num(acked));
    }
    let deliveries = per_s(total("deliveries_all"), first, max_t("_t_last_delivery_ns"));
    out.insert("deliveries_per_s".into(), num(deliveries));
    let pub_secs = children
        .iter()
        .filter_map(|c| f(c, "_pub_secs"))
        .fold(0.0f64, f64::max);
    if pub_secs > 0.0 {
        out.insert(
            "sent_per_s".into(),
            num(Some(total("sent") as f64 / pub_secs)),
        );
    }
}

/// Loss over the whole run, from summed counts.
fn loss(scenario: &str, children: &[Map<String, Value>], out: &mut Map<String, Value>) {
    let total = |k: &str| children.iter().filter_map(|c| u(c, k)).sum::<u64>();
    let receivers = match scenario {
        // Every acked message should reach every other member of the room, in any child.
        "fanout" => Some(total("connected").saturating_sub(1)),
        // Pairs live in one child.
        "direct" => Some(1),
        // Senders per room of the whole run, when every room has as many.
        "persist" if total("connect_failed") == 0 => {
            let r: BTreeSet<u64> = children
                .iter()
                .filter_map(|c| u(c, "_receivers_global"))
                .collect();
            (r.len() == 1).then(|| r.into_iter().next().unwrap_or(0))
        }
        _ => None,
    };
    let Some(receivers) = receivers.filter(|r| *r > 0) else {
        out.insert("loss".into(), Value::Null);
        return;
    };
    let expected = total("acked") * receivers;
    let delivered = total("deliveries_all");
    let got = delivered.min(expected);
    out.insert("receivers_per_message".into(), Value::from(receivers));
    out.insert("expected_deliveries".into(), Value::from(expected));
    out.insert("received_deliveries".into(), Value::from(got));
    out.insert(
        "deliveries_beyond_expected".into(),
        Value::from(delivered.saturating_sub(expected)),
    );
    let loss = (expected > 0).then(|| 1.0 - got as f64 / expected as f64);
    out.insert("loss".into(), num(loss));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn hist(values_us: &[u64]) -> Value {
        let mut l = Lat::new();
        for v in values_us {
            l.record_us(*v);
        }
        json!(l.buckets())
    }

    #[test]
    fn idle_counts_sum_and_histograms_merge() {
        let a = child(json!({
            "scenario": "idle", "connections": 100, "requested": 100, "connect_failed": 0,
            "connect_secs": 2.0, "room_size": 100, "p50_ms": 1.0,
            "connect_failures": {"timeout": 1}, "kib_per_conn": null,
            "_hist": {"": hist(&(1..=100).map(|i| i * 1000).collect::<Vec<_>>()),
                      "connect_": hist(&[5000])}
        }));
        let b = child(json!({
            "scenario": "idle", "connections": 300, "requested": 300, "connect_failed": 2,
            "connect_secs": 4.0, "room_size": 100, "p50_ms": 99.0,
            "connect_failures": {"timeout": 2, "refused": 1},
            "_hist": {"": hist(&(101..=200).map(|i| i * 1000).collect::<Vec<_>>())}
        }));
        let m = merge("idle", &[a, b]);
        assert_eq!(m["connections"], json!(400));
        assert_eq!(m["connect_failed"], json!(2));
        assert_eq!(m["connect_failures"], json!({"timeout": 3, "refused": 1}));
        assert_eq!(m["room_size"], json!(100));
        // 400 connections over the slowest child's 4 s.
        assert_eq!(m["connect_per_s"], json!(100.0));
        // The headline p50 comes from the merged histogram (1..200 ms), not from a child.
        let p50 = m["p50_ms"].as_f64().unwrap_or(0.0);
        assert!((99.0..=101.0).contains(&p50), "{p50}");
        assert_eq!(m["samples"], json!(200));
        assert_eq!(m["connect_samples"], json!(1));
        assert_eq!(m["procs"], json!(2));
        assert_eq!(m["children"].as_array().map(Vec::len), Some(2));
        assert!(m["children"][0].get("_hist").is_none());
        assert_eq!(m["loss"], Value::Null);
    }

    #[test]
    fn fanout_loss_and_rates_over_the_common_span() {
        let s = 1_000_000_000u64;
        // 4 members in all (3 + 1); each acked message must reach the 3 others.
        let a = child(json!({
            "connected": 3, "acked": 10, "sent": 10, "deliveries_all": 25,
            "acks_per_second": [4, 6], "_pub_secs": 2.0,
            "_t_first_send_ns": 10 * s, "_t_last_ack_ns": 12 * s, "_t_last_delivery_ns": 12 * s
        }));
        let b = child(json!({
            "connected": 1, "acked": 0, "sent": 0, "deliveries_all": 4,
            "acks_per_second": [], "_t_last_delivery_ns": 15 * s
        }));
        let m = merge("fanout", &[a, b]);
        assert_eq!(m["receivers_per_message"], json!(3));
        assert_eq!(m["expected_deliveries"], json!(30));
        assert_eq!(m["received_deliveries"], json!(29));
        let loss = m["loss"].as_f64().unwrap_or(0.0);
        assert!((loss - 1.0 / 30.0).abs() < 1e-3, "{loss}");
        // 29 deliveries from the first send (10 s) to the last delivery (15 s).
        assert_eq!(m["deliveries_per_s"], json!(5.8));
        assert_eq!(m["acked_per_s"], json!(5.0));
        assert_eq!(m["sent_per_s"], json!(5.0));
        assert_eq!(m["acks_per_second"], json!([4, 6]));
    }

    #[test]
    fn deliveries_beyond_expected_are_capped_and_counted() {
        let a = child(json!({"connected": 2, "acked": 5, "deliveries_all": 7}));
        let m = merge("fanout", &[a]);
        assert_eq!(m["received_deliveries"], json!(5));
        assert_eq!(m["deliveries_beyond_expected"], json!(2));
        assert_eq!(m["loss"], json!(0.0));
    }

    #[test]
    fn persist_loss_needs_uniform_rooms() {
        let a = child(
            json!({"acked": 10, "deliveries_all": 10, "_receivers_global": 1,
                             "connect_failed": 0}),
        );
        let b = child(
            json!({"acked": 10, "deliveries_all": 10, "_receivers_global": 1,
                             "connect_failed": 0}),
        );
        let m = merge("persist", &[a.clone(), b]);
        assert_eq!(m["loss"], json!(0.0));
        let c = child(json!({"acked": 10, "deliveries_all": 10, "connect_failed": 1}));
        assert_eq!(merge("persist", &[a, c])["loss"], Value::Null);
    }

    #[test]
    fn differing_settings_stay_per_child() {
        let a = child(json!({"pad": 64, "subs": 10}));
        let b = child(json!({"pad": 65, "subs": 20}));
        let m = merge("fanout", &[a, b]);
        assert!(m.get("pad").is_none());
        assert_eq!(m["subs"], json!(30));
        assert_eq!(m["children"][1]["pad"], json!(65));
    }
}
