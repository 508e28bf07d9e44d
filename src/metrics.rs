//! Process-wide metrics in Prometheus form (`GET /metrics`), and the per-second rates that
//! `/v1/admin/stats` reports.
//!
//! Metrics are the one deliberate global: every actor counts into them and nothing reads them
//! back except the two routes, so there is no hidden coupling between actors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// Open native WebSocket sessions.
    pub connections: IntGauge,
    /// Sessions opened since start.
    pub connections_total: IntCounter,
    /// Messages accepted from clients (stored, not duplicates).
    pub messages_in: IntCounter,
    /// Frames delivered to sessions (messages, receipts, typing, presence...).
    pub frames_out: IntCounter,
    /// Sessions closed as slow consumers.
    pub slow_consumers: IntCounter,
    /// 1 while the cluster backplane (Redis) is connected.
    pub cluster_connected: IntGauge,
    /// Events published to the backplane.
    pub cluster_published: IntCounter,
    /// Events received from other nodes.
    pub cluster_received: IntCounter,
    /// Events not published (backplane down or its queue full).
    pub cluster_dropped: IntCounter,
    /// Holes in a room's seqs filled from the database instead of the backplane.
    pub cluster_gap_fills: IntCounter,
    /// Error replies by code.
    pub errors: IntCounterVec,
    /// Write groups per commit batch.
    pub batch_groups: Histogram,
    /// Duration of a commit batch (transaction incl. fsync).
    pub commit_seconds: Histogram,
    /// Failed commit batches.
    pub commit_failures: IntCounter,
    /// End-to-end latency of client requests by type, as the server sees it.
    pub request_seconds: HistogramVec,
    /// Connections dropped because the peer took none of its queued bytes in time.
    pub write_timeouts: IntCounter,
    /// WebSocket connections that agreed on permessage-deflate.
    pub ws_deflate_connections: IntCounter,
    /// Messages compressed (a broadcast shared by many connections counts once).
    pub ws_compressions: IntCounter,
    /// Compressed messages received and inflated.
    pub ws_inflated_messages: IntCounter,
    /// Worker releases of gathered deliveries (each wakes every session whose frames waited).
    pub ws_write_flushes: IntCounter,
    /// Connections dropped because the request before the upgrade (or a plain request on
    /// the upgrade path) missed its deadline.
    pub handshake_timeouts: IntCounter,
    /// Connections, upgrades and Engine.IO handshakes refused before authentication, by
    /// reason (`ip_rate`, `ip_unauthenticated`, `unauthenticated`, `user_rate`).
    pub refused: IntCounterVec,
    /// Engine.IO sessions that have not completed their Socket.IO CONNECT.
    pub unauthenticated: IntGauge,
    /// Engine.IO sessions closed for not sending CONNECT (or an upgrade probe) in time.
    pub preauth_timeouts: IntCounter,
    /// Live room actors (each holds its membership in memory and lives until idle).
    pub rooms_active: IntGauge,
    /// Write groups waiting in the commit queue.
    pub commit_queue_depth: IntGauge,
    /// Write groups refused because the commit queue was full (answered `unavailable`).
    pub commit_refused: IntCounter,
    /// Commit batches that had to be rewritten group by group after the merged attempt
    /// failed (each costs a rollback and one savepoint per group).
    pub commit_per_group_batches: IntCounter,
    /// Messages whose notifications the outbox sweep processed again (a crash or failure
    /// interrupted the first attempt).
    pub outbox_redone: IntCounter,
    /// Notifications stored (one per recipient; muted ones and idempotent repeats are not
    /// counted), for the admin dashboard's notification rate.
    pub notifications_created: IntCounter,
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new_custom(Some("herald".into()), None).unwrap_or_default();
        let connections = IntGauge::new("connections", "Open WebSocket sessions")
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(connections.clone()));
        let errors = IntCounterVec::new(
            Opts::new("errors_total", "Error replies sent, by code"),
            &["code"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(errors.clone()));
        let batch_groups = Histogram::with_opts(
            HistogramOpts::new("commit_batch_groups", "Write groups per commit batch").buckets(
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(batch_groups.clone()));
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new("commit_seconds", "Duration of a commit batch").buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(commit_seconds.clone()));
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("request_seconds", "Client request latency by frame type").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            ),
            &["type"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(request_seconds.clone()));
        let refused = IntCounterVec::new(
            Opts::new(
                "refused_total",
                "Connections refused before authentication, by reason",
            ),
            &["reason"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(refused.clone()));
        let unauthenticated = IntGauge::new(
            "unauthenticated_sessions",
            "Engine.IO sessions without a Socket.IO CONNECT yet",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = registry.register(Box::new(unauthenticated.clone()));
        Metrics {
            write_timeouts: counter(
                &registry,
                "write_timeouts_total",
                "Connections dropped: the peer took none of its queued bytes in time",
            ),
            ws_deflate_connections: counter(
                &registry,
                "ws_deflate_connections_total",
                "WebSocket connections that agreed on permessage-deflate",
            ),
            ws_compressions: counter(
                &registry,
                "ws_compressions_total",
                "Messages compressed (a broadcast shared by many connections counts once)",
            ),
            ws_inflated_messages: counter(
                &registry,
                "ws_inflated_messages_total",
                "Compressed messages received and inflated",
            ),
            ws_write_flushes: counter(
                &registry,
                "ws_write_flushes_total",
                "Worker releases of gathered deliveries (each wakes every session whose frames waited)",
            ),
            handshake_timeouts: counter(
                &registry,
                "handshake_timeouts_total",
                "Connections dropped: the request before the upgrade missed its deadline",
            ),
            preauth_timeouts: counter(
                &registry,
                "preauth_timeouts_total",
                "Engine.IO sessions closed without CONNECT or probe in time",
            ),
            refused,
            unauthenticated,
            connections_total: counter(&registry, "connections_total", "WebSocket sessions opened"),
            messages_in: counter(
                &registry,
                "messages_in_total",
                "Messages stored from clients",
            ),
            frames_out: counter(
                &registry,
                "frames_out_total",
                "Frames queued to sessions by rooms and presence",
            ),
            slow_consumers: counter(
                &registry,
                "slow_consumers_total",
                "Frames dropped for a connection that could not take them (caught up from the database)",
            ),
            cluster_connected: gauge(
                &registry,
                "cluster_backplane_connected",
                "1 while the Redis backplane is connected (cluster mode)",
            ),
            cluster_published: counter(
                &registry,
                "cluster_events_published_total",
                "Events published to the backplane",
            ),
            cluster_received: counter(
                &registry,
                "cluster_events_received_total",
                "Events received from other nodes",
            ),
            cluster_dropped: counter(
                &registry,
                "cluster_events_dropped_total",
                "Events not published: backplane down or its queue full",
            ),
            cluster_gap_fills: counter(
                &registry,
                "cluster_gap_fills_total",
                "Holes in a room's seqs read from the database",
            ),
            commit_failures: counter(
                &registry,
                "commit_failures_total",
                "Commit batches that failed",
            ),
            rooms_active: gauge(&registry, "rooms_active", "Live room actors"),
            commit_queue_depth: gauge(
                &registry,
                "commit_queue_depth",
                "Write groups waiting in the commit queue",
            ),
            commit_refused: counter(
                &registry,
                "commit_refused_total",
                "Write groups refused because the commit queue was full",
            ),
            commit_per_group_batches: counter(
                &registry,
                "commit_per_group_batches_total",
                "Commit batches rewritten group by group after the merged attempt failed",
            ),
            outbox_redone: counter(
                &registry,
                "notification_outbox_redone_total",
                "Messages whose notifications the outbox sweep processed again",
            ),
            notifications_created: counter(
                &registry,
                "notifications_created_total",
                "Notifications stored, one per recipient",
            ),
            registry,
            connections,
            errors,
            batch_groups,
            commit_seconds,
            request_seconds,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::error!("metrics encoding failed: {e}");
        }
        let mut out = String::from_utf8(buf).unwrap_or_default();
        if let Some(rss) = resident_bytes() {
            out.push_str("# HELP herald_resident_memory_bytes Resident set size of the process\n");
            out.push_str("# TYPE herald_resident_memory_bytes gauge\n");
            out.push_str(&format!("herald_resident_memory_bytes {rss}\n"));
        }
        out
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Resident memory of this process (Linux), in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Per-second rates of messages in and frames out, sampled once a second.
pub struct Rates {
    last_in: AtomicU64,
    last_out: AtomicU64,
    in_per_s: AtomicU64,
    out_per_s: AtomicU64,
}

pub static RATES: Rates = Rates {
    last_in: AtomicU64::new(0),
    last_out: AtomicU64::new(0),
    in_per_s: AtomicU64::new(0),
    out_per_s: AtomicU64::new(0),
};

impl Rates {
    /// Called once a second.
    pub fn sample(&self) {
        let i = METRICS.messages_in.get();
        let o = METRICS.frames_out.get();
        self.in_per_s.store(
            i.saturating_sub(self.last_in.swap(i, Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        self.out_per_s.store(
            o.saturating_sub(self.last_out.swap(o, Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }
    pub fn messages_in_per_s(&self) -> u64 {
        self.in_per_s.load(Ordering::Relaxed)
    }
    pub fn frames_out_per_s(&self) -> u64 {
        self.out_per_s.load(Ordering::Relaxed)
    }
}
