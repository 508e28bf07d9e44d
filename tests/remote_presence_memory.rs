//! Memory a node spends per user online on *another* node of a cluster (issue 16: every node
//! keeps every online user's presence, so this cost is multiplied by the size of the cluster).
//!
//! A test binary of its own, because it counts every allocation with a global allocator:
//! it feeds the presence registry the presence deltas of N users of another node (one
//! session each, no room, the default status: the `idle --room-size 0` benchmark's users)
//! and counts what stays allocated once they are all applied. Reported in
//! docs/benchmarks.md ("Memory per remote user"); the assertion keeps the budget.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use herald::actors::presence_registry::GetPresenceStats;
use herald::cluster::backplane::RemoteClusterEvent;
use herald::cluster::presence::{NodeEntry, RemoteSession, SharedStatus};
use herald::cluster::wire::{ClusterEnvelope, ClusterEvent};
use herald::domain::{ChosenStatus, UserId};
use herald::testkit::{start_engine, test_settings, TestDatabase};

/// Counts the bytes requested and, as glibc's malloc would lay them out, the bytes of the
/// chunks (8 bytes of header, 16-byte granules, 32 bytes at least), which is what RSS sees.
struct Counting;

static REQUESTED: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);
static COUNT: AtomicIsize = AtomicIsize::new(0);

fn chunk(size: usize) -> isize {
    (size + 8).div_ceil(16).max(2) as isize * 16
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            REQUESTED.fetch_add(l.size() as isize, Relaxed);
            CHUNKS.fetch_add(chunk(l.size()), Relaxed);
            COUNT.fetch_add(1, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        REQUESTED.fetch_sub(l.size() as isize, Relaxed);
        CHUNKS.fetch_sub(chunk(l.size()), Relaxed);
        COUNT.fetch_sub(1, Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            REQUESTED.fetch_add(new as isize - l.size() as isize, Relaxed);
            CHUNKS.fetch_add(chunk(new) - chunk(l.size()), Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> (isize, isize, isize) {
    (
        REQUESTED.load(Relaxed),
        CHUNKS.load(Relaxed),
        COUNT.load(Relaxed),
    )
}

/// Node `node`'s delta for `user`: one session, no room, the default status.
fn delta(node: &str, user: usize, v: u64) -> RemoteClusterEvent {
    let name = format!("user-{user:06}");
    RemoteClusterEvent(ClusterEnvelope {
        node: node.to_owned(),
        event: ClusterEvent::Presence {
            user: UserId::parse(&name).expect("user id"),
            v,
            entry: Some(NodeEntry {
                v,
                sessions: vec![RemoteSession {
                    id: format!("{node}:{user}"),
                    device_id: None,
                    connected_at: 1_765_000_000_000,
                    last_activity: 1_765_000_000_000,
                }],
                rooms: Vec::new(),
                idle: false,
                status: SharedStatus {
                    status: ChosenStatus::Online,
                    custom_message: None,
                    custom_expires_at: None,
                    metadata: None,
                    at: 0,
                },
            }),
        },
    })
}

#[actix_web::test]
async fn a_user_online_on_another_node_costs_a_few_hundred_bytes_at_most() {
    // Arrange: an engine (cluster mode is not needed to apply other nodes' deltas) and a
    // first batch of users, so the measured batch finds the registry warm.
    let db = TestDatabase::new();
    let engine = start_engine(test_settings(&db.url)).await;
    const WARM: usize = 2_000;
    const N: usize = 20_000;
    for u in 0..WARM {
        engine.presence.do_send(delta("n9", u, u as u64 + 1));
    }
    let stats = engine.presence.send(GetPresenceStats).await.expect("stats");
    assert_eq!(stats.users_online, WARM);
    let before = live();

    // Act: N more users arrive from node n9.
    for u in WARM..WARM + N {
        engine.presence.do_send(delta("n9", u, u as u64 + 1));
    }
    let stats = engine.presence.send(GetPresenceStats).await.expect("stats");
    let after = live();

    // Assert
    assert_eq!(stats.users_online, WARM + N);
    let per = |i: usize| {
        let d = [after.0 - before.0, after.1 - before.1, after.2 - before.2];
        d[i] as f64 / N as f64
    };
    eprintln!(
        "per remote user: {:.0} bytes requested, {:.0} bytes in malloc chunks, {:.2} allocations",
        per(0),
        per(1),
        per(2)
    );
    assert!(
        per(1) <= 300.0,
        "a remote user costs {:.0} bytes (budget 300)",
        per(1)
    );
}
