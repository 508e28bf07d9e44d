//! Cluster mode end to end: three nodes in this process (each a full `Application` on its
//! own port) sharing one fresh PostgreSQL database and the real Redis, with a key prefix of
//! their own so tests can run side by side. Needs `HERALD_TEST_DATABASE_URL` (PostgreSQL)
//! and `HERALD_TEST_REDIS_URL`; `.ci/run` runs them in its cluster pass. Without them each
//! test fails (never passes without running): they are `#[ignore]`d for a plain `cargo test`.
//! Every test here is named `cluster_*` (so `cluster::cluster_` selects exactly these, not
//! the unit tests of `src/cluster/`).

use std::time::Duration;

use herald::cluster::backplane::IsConnected;
use herald::testkit::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_on, user_names, TestApp, WsClient};

const NEEDS: &str = "needs PostgreSQL and Redis: HERALD_TEST_DATABASE_URL=postgres://… and HERALD_TEST_REDIS_URL=redis://…";

#[allow(dead_code)] // db: dropped with the cluster; prefix: for tests that read Redis
pub struct TestCluster {
    pub nodes: Vec<TestApp>,
    pub db: TestDatabase,
    pub prefix: String,
}

/// `n` nodes on one fresh PostgreSQL database and the test Redis.
pub async fn spawn_cluster(n: usize, tweak: impl Fn(&mut herald::config::Settings)) -> TestCluster {
    let redis = std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| panic!("{NEEDS}"));
    let pg = std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_default();
    assert!(pg.starts_with("postgres"), "{NEEDS}");
    let db = TestDatabase::new();
    let prefix = format!("herald-test-{}", uuid::Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    for i in 0..n {
        let app = spawn_app_on(&db.url, |s| {
            s.redis_url = Some(herald::config::Secret::new(redis.clone()));
            s.cluster.node_id = format!("n{}", i + 1);
            s.cluster.prefix = prefix.clone();
            s.cluster.node_timeout = Duration::from_secs(3);
            s.cluster.heartbeat = Duration::from_millis(200);
            tweak(s);
        })
        .await;
        nodes.push(app);
    }
    for app in &nodes {
        wait_connected(app).await;
    }
    TestCluster { nodes, db, prefix }
}

async fn wait_connected(app: &TestApp) {
    let backplane = app
        .engine
        .cluster
        .backplane()
        .expect("cluster mode")
        .clone();
    for _ in 0..100 {
        if backplane.send(IsConnected).await.unwrap_or(false) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node did not connect to Redis");
}

fn send(room: &str, text: &str, id: &str) -> Value {
    json!({"room": room, "kind": "text", "body": {"text": text}, "client_msg_id": id})
}

/// Reads `message` frames of `room` until `count` arrived; asserts consecutive seqs from
/// `first` and returns them.
async fn read_messages(c: &mut WsClient, room: &str, first: i64, count: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = first;
    while out.len() < count {
        let v = match c.recv_or_other(Duration::from_secs(10)).await {
            Ok(v) => v,
            Err(o) => panic!("after {} of {count} messages: {o:?}", out.len()),
        };
        if v["type"] != "message" || v["data"]["room"] != room {
            continue;
        }
        let seq = v["data"]["seq"].as_i64().expect("seq");
        assert_eq!(seq, next, "messages out of order or missing: {v}");
        next += 1;
        out.push(v);
    }
    out
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_chat_reaches_every_node_in_seq_order() {
    let cluster = spawn_cluster(3, |_| {}).await;
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = "public:across";
    let mut a = n1.ws("alice").await;
    let mut b = n2.ws("bob").await;
    let mut c = n3.ws("carol").await;
    for cl in [&mut a, &mut b, &mut c] {
        cl.ok("join", json!({"room": room})).await;
    }
    // Each node accepts sends for the same room; seqs are unique and gap-free.
    let s1 = a.ok("send", send(room, "from n1", "a1")).await;
    let s2 = b.ok("send", send(room, "from n2", "b1")).await;
    let s3 = c.ok("send", send(room, "from n3", "c1")).await;
    let mut seqs = vec![
        s1["seq"].as_i64().unwrap(),
        s2["seq"].as_i64().unwrap(),
        s3["seq"].as_i64().unwrap(),
    ];
    seqs.sort();
    assert_eq!(seqs, vec![1, 2, 3]);
    // Everyone sees the others' messages (their own come as acks).
    let from_b = read_messages(&mut a, room, 2, 1).await;
    assert_eq!(from_b[0]["data"]["from"], "bob");
    let got = read_messages(&mut a, room, 3, 1).await;
    assert_eq!(got[0]["data"]["from"], "carol");
    let got = read_messages(&mut c, room, 1, 2).await;
    assert_eq!(got[0]["data"]["from"], "alice");
    assert_eq!(got[1]["data"]["from"], "bob");
    // Typing and receipts cross nodes too.
    a.ok("typing", json!({"room": room, "state": "start"}))
        .await;
    let t = b.recv_type("typing").await;
    assert_eq!(t["data"]["user"], "alice");
    // So do custom events (rebuilt from the backplane with their name).
    c.ok(
        "event",
        json!({"room": room, "name": "cursor", "data": {"x": 1}}),
    )
    .await;
    for cl in [&mut a, &mut b] {
        let e = cl.recv_type("event").await;
        assert_eq!(
            e["data"],
            json!({"room": room, "from": "carol", "name": "cursor", "data": {"x": 1}})
        );
    }
    // (A sender has read its own message: carol's watermark is at 3 already.)
    let s4 = b.ok("send", send(room, "more from n2", "b2")).await;
    assert_eq!(s4["seq"], 4);
    read_messages(&mut c, room, 4, 1).await;
    c.ok("receipt", json!({"room": room, "seq": 4, "status": "read"}))
        .await;
    let r = a.recv_type("receipt").await;
    assert_eq!(r["data"]["user"], "carol");
    assert_eq!(r["data"]["seq"], 4);
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_concurrent_senders_on_three_nodes_are_seen_consecutively_everywhere() {
    let cluster = spawn_cluster(3, |_| {}).await;
    let room = "public:busy";
    const EACH: usize = 60;
    let mut readers = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut r = node.ws(&format!("reader{i}")).await;
        r.ok("join", json!({"room": room})).await;
        readers.push(r);
    }
    let mut writers = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut w = node.ws(&format!("writer{i}")).await;
        w.ok("join", json!({"room": room})).await;
        writers.push(w);
    }
    let sends = writers
        .into_iter()
        .enumerate()
        .map(|(i, mut w)| async move {
            for k in 0..EACH {
                w.ok(
                    "send",
                    send(room, &format!("w{i} m{k}"), &format!("w{i}-{k}")),
                )
                .await;
            }
            w
        });
    let _writers = futures_util::future::join_all(sends).await;
    for r in &mut readers {
        let got = read_messages(r, room, 1, EACH * 3).await;
        assert_eq!(got.len(), EACH * 3);
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_presence_one_user_on_two_nodes_is_one_user_and_never_flaps() {
    let cluster = spawn_cluster(3, |_| {}).await;
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = "public:presence";
    let mut watcher = n3.ws("watcher").await;
    watcher.ok("join", json!({"room": room})).await;
    let mut d1 = n1.ws("dana").await;
    d1.ok("join", json!({"room": room})).await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["joins"][0]["user"], "dana", "{p}");
    let d2 = n2.ws("dana").await;
    // Admin view on any node: one user, two devices, each session named with its node.
    let admin = n3.admin_token("root");
    let mut devices = 0;
    for _ in 0..50 {
        let (status, body) = n3.get("/v1/presence/dana", Some(&admin)).await;
        assert_eq!(status, 200, "{body}");
        devices = body["devices"].as_i64().unwrap_or(0);
        if devices == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(devices, 2, "dana's two devices on two nodes");
    // One device leaves: no offline anywhere.
    d1.close().await;
    watcher
        .assert_no("room_presence", Duration::from_millis(1500))
        .await;
    // The last one leaves: offline once, after the grace period.
    d2.close().await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["leaves"][0]["user"], "dana", "{p}");
    watcher
        .assert_no("room_presence", Duration::from_millis(800))
        .await;
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_a_reconnect_to_another_node_within_the_grace_period_is_no_flap() {
    // Arrange: dana on n1, a watcher on n3 sharing a room; a grace period long enough to
    // reconnect in.
    let cluster = spawn_cluster(3, |s| s.presence_grace = Duration::from_secs(2)).await;
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = "public:reconnect";
    let mut watcher = n3.ws("watcher").await;
    watcher.ok("join", json!({"room": room})).await;
    let mut d1 = n1.ws("dana").await;
    d1.ok("join", json!({"room": room})).await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["joins"][0]["user"], "dana", "{p}");

    // Act: her connection to n1 drops; she is back on n2 within the grace period.
    d1.close().await;
    let d2 = n2.ws("dana").await;

    // Assert: observers on other nodes see no offline and no second online...
    watcher
        .assert_no("room_presence", Duration::from_millis(3000))
        .await;
    // ...and, once she leaves n2 too, one offline after the grace period.
    d2.close().await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["leaves"][0]["user"], "dana", "{p}");
    watcher
        .assert_no("room_presence", Duration::from_millis(800))
        .await;
}

/// Records the seq of a `message` frame.
fn note_message(v: &Value, seen: &mut Vec<i64>) {
    if v["type"] == "message" {
        seen.push(v["data"]["seq"].as_i64().expect("seq"));
    }
}

/// A node in its own process, for the SIGKILL test.
struct NodeProcess {
    child: std::process::Child,
    port: u16,
}

impl NodeProcess {
    fn start(cluster: &TestCluster, node: &str) -> NodeProcess {
        use std::io::{BufRead, BufReader};
        let redis = std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| panic!("{NEEDS}"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .env("HERALD_DATABASE_URL", &cluster.db.url)
            .env("HERALD_REDIS_URL", redis)
            .env("HERALD_NODE_ID", node)
            .env("HERALD_CLUSTER_PREFIX", &cluster.prefix)
            .env("HERALD_NODE_TIMEOUT_MS", "3000")
            .env("HERALD_CLUSTER_HEARTBEAT_MS", "200")
            .env("HERALD_PRESENCE_GRACE_MS", "300")
            .env("HERALD_JWT_SECRET", herald::testkit::TEST_SECRET)
            .env("HERALD_BIND", "127.0.0.1:0")
            .env("HERALD_CONNECT_RATE_PER_IP", "0")
            .env("HERALD_CONNECT_RATE_PER_USER", "0")
            .env("HERALD_LOG", "info")
            .env("HERALD_WORKERS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("herald binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut connected = false;
            let mut port = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("herald listening on ").nth(1) {
                    port = addr
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                }
                connected |= line.contains("connected to Redis");
                if let (true, Some(p)) = (connected, port) {
                    let _ = tx.send(p);
                    connected = false;
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the node logs its port and its Redis connection");
        NodeProcess { child, port }
    }

    fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

fn token(user: &str) -> String {
    let keys =
        herald::auth::JwtKeys::hs256(&herald::config::Secret::new(herald::testkit::TEST_SECRET));
    keys.mint(user, None, &[], Duration::from_secs(3600))
        .expect("mint")
}

async fn ws_on(port: u16, user: &str) -> WsClient {
    let mut c = crate::helpers::connect_ws(port, &token(user))
        .await
        .expect("ws connects");
    assert_eq!(c.recv().await["type"], "connection_ack");
    assert_eq!(c.recv().await["type"], "sync");
    c
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_a_killed_node_loses_nothing_acked_and_its_users_go_offline_once() {
    let cluster = spawn_cluster(2, |_| {}).await;
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let n3 = NodeProcess::start(&cluster, "n3");
    let room = "public:kill";
    let mut observer = n1.ws("observer").await;
    observer.ok("join", json!({"room": room})).await;
    // multi has a device on n2 and one on n3; victim only on n3.
    let mut multi2 = n2.ws("multi").await;
    multi2.ok("join", json!({"room": room})).await;
    let mut victim = ws_on(n3.port, "victim").await;
    victim.ok("join", json!({"room": room})).await;
    let _multi3 = ws_on(n3.port, "multi").await;
    let mut joined = std::collections::HashSet::new();
    while joined.len() < 2 {
        let p = observer.recv_type("room_presence").await;
        for j in p["data"]["joins"].as_array().into_iter().flatten() {
            joined.insert(j["user"].as_str().unwrap_or_default().to_owned());
        }
    }
    // The victim sends while the node is killed; every acked message must survive.
    let mut acked = Vec::new();
    let mut seen = Vec::new();
    for k in 0..30 {
        let v = victim
            .try_request("send", send(room, &format!("v{k}"), &format!("v-{k}")))
            .await;
        match v {
            Ok(v) if v["type"] == "ack" => acked.push(v["data"]["seq"].as_i64().unwrap()),
            _ => break,
        }
        if k == 20 {
            let victim_node = n3;
            let killed_at = tokio::time::Instant::now();
            victim_node.kill();
            // The victim goes offline on n1 within the bound; multi (still on n2) never.
            let mut left = None;
            while left.is_none() {
                let p = match observer.recv_or_other(Duration::from_secs(8)).await {
                    Ok(p) => p,
                    Err(o) => panic!("no offline within the bound: {o:?}"),
                };
                note_message(&p, &mut seen);
                if p["type"] != "room_presence" {
                    continue;
                }
                for l in p["data"]["leaves"].as_array().into_iter().flatten() {
                    assert_ne!(l["user"], "multi", "multi still has a device on n2: {p}");
                    if l["user"] == "victim" {
                        left = Some(killed_at.elapsed());
                    }
                }
            }
            let left = left.unwrap();
            assert!(left <= Duration::from_secs(5), "offline after {left:?}");
            // Exactly once.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(p) = observer
                .recv_or_other(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await
            {
                note_message(&p, &mut seen);
                if p["type"] == "room_presence" {
                    for l in p["data"]["leaves"].as_array().into_iter().flatten() {
                        assert_ne!(l["user"], "victim", "a second offline: {p}");
                        assert_ne!(l["user"], "multi", "multi flapped: {p}");
                    }
                }
            }
            break;
        }
    }
    assert!(acked.len() >= 21, "the victim sent before the kill");
    // The observer has every acked message, consecutively (so nothing in between either).
    let rest = acked.len().saturating_sub(seen.len());
    let next = seen.last().map_or(1, |s| s + 1);
    for m in read_messages(&mut observer, room, next, rest).await {
        note_message(&m, &mut seen);
    }
    let expected: Vec<i64> = (1..=seen.len() as i64).collect();
    assert_eq!(
        seen, expected,
        "the observer's stream has a hole or a repeat"
    );
    for seq in &acked {
        assert!(
            seen.contains(seq),
            "acked seq {seq} never reached the observer"
        );
    }
    // The victim reconnects to another node and resumes from its last seq: nothing missing.
    let last = *acked.last().unwrap();
    let mut back = n2
        .ws_query("victim", &format!("since={room}:{}", last - 5))
        .await;
    let replayed = read_messages(&mut back, room, last - 4, 5).await;
    assert_eq!(replayed.len(), 5);
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_a_redis_outage_keeps_nodes_serving_and_cross_node_clients_catch_up() {
    use crate::fault_proxy::{FaultProxy, Mode};
    let redis = std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| panic!("{NEEDS}"));
    let upstream = {
        let hostport = redis
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&redis)
            .split('/')
            .next()
            .unwrap_or("127.0.0.1:6379")
            .replace("localhost", "127.0.0.1");
        hostport.parse().expect("redis host:port")
    };
    // Both nodes reach Redis through the proxy: cutting it is a Redis outage for all.
    let proxy = FaultProxy::start(upstream, Mode::Pass).await;
    let via_proxy = proxy.url_for(&redis);
    let cluster = spawn_cluster(2, |s| {
        s.redis_url = Some(herald::config::Secret::new(via_proxy.clone()));
    })
    .await;
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = "public:outage";
    let mut alice = n1.ws("alice").await;
    alice.ok("join", json!({"room": room})).await;
    let mut bob = n2.ws("bob").await;
    bob.ok("join", json!({"room": room})).await;
    bob.ok("send", send(room, "before", "b0")).await;
    read_messages(&mut alice, room, 1, 1).await;

    proxy.set(Mode::Cut);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Local service goes on: sends are stored (in PostgreSQL) and acked on n2.
    for k in 1..=5 {
        let ack = bob
            .ok("send", send(room, &format!("during {k}"), &format!("b{k}")))
            .await;
        assert_eq!(ack["seq"], k + 1);
    }
    // Longer than the node timeout: after the outage nobody may be declared dead (flap).
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set(Mode::Pass);
    // Alice on n1 gets everything in order once the backplane is back.
    let got = read_messages(&mut alice, room, 2, 5).await;
    assert_eq!(got[4]["data"]["body"]["text"], "during 5");
    // Nobody went offline: bob's presence did not flap on n1.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(p) = alice
        .recv_or_other(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if p["type"] == "room_presence" {
            for l in p["data"]["leaves"].as_array().into_iter().flatten() {
                assert_ne!(l["user"], "bob", "bob flapped after the outage: {p}");
            }
        }
    }
    // And new traffic flows both ways again.
    alice.ok("send", send(room, "after", "a1")).await;
    let m = bob.recv_type("message").await;
    assert_eq!(m["data"]["body"]["text"], "after");
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_the_sessions_per_user_cap_holds_across_nodes() {
    let cluster = spawn_cluster(2, |s| s.limits.max_sessions_per_user = 2).await;
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let a1 = n1.ws("alice").await;
    let _a2 = n2.ws("alice").await;
    let err = crate::helpers::connect_ws(n1.port, &n1.token("alice"))
        .await
        .err()
        .expect("a third session on any node is refused");
    assert!(err.contains("429"), "{err}");
    let err = crate::helpers::connect_ws(n2.port, &n2.token("alice"))
        .await
        .err()
        .expect("a third session on any node is refused");
    assert!(err.contains("429"), "{err}");
    // A closed session gives its place back, to whichever node asks next.
    a1.close().await;
    let mut admitted = false;
    for _ in 0..50 {
        if let Ok(c) = crate::helpers::connect_ws(n2.port, &n2.token("alice")).await {
            drop(c);
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "the place of the closed session came back");
}

/// HAProxy running the shipped deploy/haproxy.cfg with the test's ports.
struct Haproxy {
    child: std::process::Child,
    port: u16,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Haproxy {
    fn start(node_ports: &[u16]) -> Haproxy {
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg"),
        )
        .expect("deploy/haproxy.cfg");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cfg = shipped.replace("bind 127.0.0.1:8080", &format!("bind 127.0.0.1:{port}"));
        for (i, p) in node_ports.iter().enumerate() {
            cfg = cfg.replace(
                &format!("127.0.0.1:{}", 8081 + i),
                &format!("127.0.0.1:{p}"),
            );
        }
        let dir =
            std::env::temp_dir().join(format!("herald-haproxy-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write config");
        let child = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("haproxy cannot start (apt-get install haproxy): {e}"));
        Haproxy {
            child,
            port,
            _dir: tempdir::Dir(dir),
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL, Redis, HAProxy and the Python Socket.IO client (cluster pass of .ci/run)"]
async fn cluster_socketio_polling_is_sticky_through_the_shipped_haproxy_config() {
    let cluster = spawn_cluster(3, |_| {}).await;
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let proxy = Haproxy::start(&ports);
    // Wait until HAProxy answers and sees its servers up.
    let client = awc::Client::default();
    let mut ready = false;
    for _ in 0..100 {
        let r = client
            .get(format!("http://127.0.0.1:{}/readyz", proxy.port))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "haproxy did not come up");
    let room = "public:lb";
    let n1 = &cluster.nodes[0];
    // Long-polling only: every exchange is its own request through the balancer, which
    // spreads requests over three nodes; only the cookie keeps a session's on its node.
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let mut clients = Vec::new();
    for i in 0..3 {
        let user = format!("poller{i}");
        let mut c = crate::socketio::start_at("python", &url, &n1.token(&user), "polling", None);
        c.expect("connect", |v| v["event"] == "connect").await;
        let joined = c.call("join", json!({"room": room})).await;
        assert_eq!(joined["ok"], true, "{joined}");
        clients.push(c);
    }
    // A native client on one node chats with all of them, wherever the balancer put them.
    let mut alice = cluster.nodes[2].ws("alice").await;
    alice.ok("join", json!({"room": room})).await;
    for k in 0..5 {
        alice
            .ok(
                "send",
                send(room, &format!("hello {k}"), &format!("al-{k}")),
            )
            .await;
    }
    for c in &mut clients {
        for k in 0..5 {
            let text = format!("hello {k}");
            c.server_event("message", |d| d["body"]["text"] == text.as_str())
                .await;
        }
    }
    let reply = clients[0]
        .call(
            "send",
            json!({"room": room, "kind": "text", "body": {"text": "from a poller"}}),
        )
        .await;
    assert!(reply["seq"].as_i64().is_some(), "{reply}");
    let m = alice.recv_type("message").await;
    assert_eq!(m["data"]["body"]["text"], "from a poller");
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_rest_on_any_node_sees_the_cluster() {
    let cluster = spawn_cluster(3, |_| {}).await;
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = "public:rest";
    let mut a1 = n1.ws("alice").await;
    a1.ok("join", json!({"room": room})).await;
    let mut a2 = n2.ws("alice").await;
    let mut b = n2.ws("bob").await;
    b.ok("join", json!({"room": room})).await;
    let admin = n3.admin_token("root");
    // A user's sessions, each with its node, seen from a node that has none of them.
    let mut sessions = Vec::new();
    for _ in 0..50 {
        let (status, body) = n3.get("/v1/admin/presence/alice", Some(&admin)).await;
        if status == 200 && body["sessions"].as_array().is_some_and(|s| s.len() == 2) {
            sessions = body["sessions"].as_array().unwrap().clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut nodes: Vec<&str> = sessions
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2"], "{sessions:?}");
    // Rooms with their online members, from a node where none of them is connected.
    let (status, rooms) = n3.get("/v1/admin/rooms", Some(&admin)).await;
    assert_eq!(status, 200, "{rooms}");
    let entry = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == room)
        .unwrap_or_else(|| panic!("{room} missing: {rooms}"))
        .clone();
    let members: Vec<&str> = entry["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["alice", "bob"], "{entry}");
    // n3 keeps only a count of them: the sessions are read from n1's and n2's Redis hashes,
    // with what those nodes know of them.
    for s in &sessions {
        let id = s["session_id"].as_str().unwrap();
        assert!(
            id.starts_with(&format!("{}:", s["node"].as_str().unwrap())),
            "{s}"
        );
        assert!(s["connected_at"].is_string(), "{s}");
        assert!(s["last_activity"].is_string(), "{s}");
        let rooms: Vec<&str> = s["subscribed_rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(rooms, vec![room], "{s}");
    }
    // Presence lists and room presence include the other nodes' users, with their sessions.
    let (_, list) = n3.get("/v1/admin/presence", Some(&admin)).await;
    let users: Vec<(&str, usize, i64)> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap(),
                u["sessions"].as_array().map_or(0, Vec::len),
                u["devices"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(users, vec![("alice", 2, 2), ("bob", 1, 1)], "{list}");
    let (status, rp) = n3
        .get(&format!("/v1/admin/rooms/{room}/presence"), Some(&admin))
        .await;
    assert_eq!(status, 200, "{rp}");
    let online: Vec<(String, i64)> = rp["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["presence"]["user"].as_str().unwrap().to_owned(),
                o["sessions"].as_i64().unwrap(),
            )
        })
        .collect();
    // alice's n2 session is not in the room (only her n1 one joined... and the room
    // subscribes every session of a member: both count).
    assert!(online.iter().any(|(u, _)| u == "alice"), "{rp}");
    assert!(online.iter().any(|(u, n)| u == "bob" && *n == 1), "{rp}");
    // Stats: per node and in total.
    let mut total = 0.0;
    for _ in 0..50 {
        let (_, stats) = n3.get("/v1/admin/stats", Some(&admin)).await;
        assert_eq!(stats["cluster"]["node"], "n3");
        total = stats["cluster"]["total"]["sessions"]
            .as_f64()
            .unwrap_or(0.0);
        if total == 3.0
            && stats["cluster"]["nodes"]
                .as_object()
                .is_some_and(|n| n.len() == 3)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(total, 3.0, "three sessions in the cluster");
    // Each node's figures carry what the admin dashboard charts per node, dated by the node;
    // the date is not added up.
    let (_, stats) = n3.get("/v1/admin/stats", Some(&admin)).await;
    for id in ["n1", "n2", "n3"] {
        let node = &stats["cluster"]["nodes"][id];
        for key in [
            "sampled_at_ms",
            "slow_consumers_total",
            "notifications_created_total",
            "commit_batches_total",
            "commit_queue_depth",
        ] {
            assert!(node[key].is_u64(), "{id} lacks {key}: {node}");
        }
        assert!(node["commit_ms_total"].is_number(), "{node}");
    }
    assert!(
        stats["cluster"]["total"]["sampled_at_ms"].is_null(),
        "{stats}"
    );
    assert!(stats["cluster"]["total"]["commit_batches_total"].is_number());
    // Disconnecting a user from n3 closes their sessions on n1 and n2.
    let (status, _) = n3
        .send_json(
            "POST",
            "/v1/admin/users/alice/disconnect",
            Some(&admin),
            None,
        )
        .await;
    assert!(status == 200 || status == 204, "{status}");
    assert!(a1.expect_close().await.is_some());
    assert!(a2.expect_close().await.is_some());
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_a_backend_notification_reaches_the_users_sockets_on_every_node() {
    let cluster = spawn_cluster(3, |_| {}).await;
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    let mut on1 = n1.ws("nina").await;
    let mut on2 = n2.ws("nina").await;
    // A backend posts through the third node, where nina has no session.
    let (status, out) = n3
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&n3.service_token()),
            Some(json!({"users": ["nina"], "notification_type": "alert", "title": "hello"})),
        )
        .await;
    assert_eq!(status, 201, "{out}");
    for c in [&mut on1, &mut on2] {
        let n = c.recv_type("notification").await;
        assert_eq!(n["data"]["title"], "hello");
        let u = c.recv_type("unread_count").await;
        assert_eq!(u["data"]["unread_count"], 1);
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_status_invisibility_and_unread_counts_follow_the_user_across_nodes() {
    let cluster = spawn_cluster(2, |_| {}).await;
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = "public:status";
    let mut watcher = n2.ws("watcher").await;
    watcher.ok("join", json!({"room": room})).await;
    let mut phone = n1.ws("eve").await;
    phone.ok("join", json!({"room": room})).await;
    let mut laptop = n2.ws("eve").await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["joins"][0]["user"], "eve", "{p}");
    // A status chosen on one node is what everyone sees, from every node.
    phone
        .ok(
            "presence",
            json!({"status": "busy", "custom_message": "lunch"}),
        )
        .await;
    let p = watcher.recv_type("room_presence").await;
    let j = &p["data"]["joins"][0];
    assert_eq!(
        (j["user"].as_str(), j["status"].as_str()),
        (Some("eve"), Some("busy")),
        "{p}"
    );
    assert_eq!(j["custom_message"], "lunch");
    // Invisible on n1: offline to the watcher on n2, although eve still has two devices.
    phone.ok("presence", json!({"status": "invisible"})).await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["leaves"][0]["user"], "eve", "{p}");
    assert_eq!(p["data"]["leaves"][0]["status"], "offline");
    phone.ok("presence", json!({"status": "online"})).await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["joins"][0]["status"], "online", "{p}");
    // Unread counts: messages raise them on both devices; reading on the phone (n1)
    // clears them on the laptop (n2).
    for k in 0..3 {
        watcher
            .ok("send", send(room, &format!("m{k}"), &format!("w{k}")))
            .await;
    }
    for c in [&mut phone, &mut laptop] {
        loop {
            let f = c.recv_type("room_unread").await;
            if f["data"]["unread"] == 3 {
                break;
            }
        }
    }
    phone
        .ok("receipt", json!({"room": room, "seq": 3, "status": "read"}))
        .await;
    loop {
        let f = laptop.recv_type("room_unread").await;
        if f["data"]["unread"] == 0 {
            assert_eq!(f["data"]["unread_total"], 0);
            break;
        }
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_nodes_with_reuse_port_share_one_port() {
    // Two nodes bind the same address with SO_REUSEPORT; both serve.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let cluster = spawn_cluster(2, |s| {
        s.bind = format!("127.0.0.1:{port}");
        s.reuse_port = true;
    })
    .await;
    assert!(cluster.nodes.iter().all(|n| n.port == port));
    // Connections to the shared port land on either node, and they chat as one.
    let mut clients = Vec::new();
    for i in 0..24 {
        let mut c = cluster.nodes[0].ws(&format!("u{i}")).await;
        c.ok("join", json!({"room": "public:shared"})).await;
        clients.push(c);
    }
    // The kernel spread them over both nodes (all 24 on one: odds 2 in 16 million).
    let n = &cluster.nodes[0];
    let admin = n.admin_token("root");
    let mut per_node = Vec::new();
    for _ in 0..50 {
        let (_, stats) = n.get("/v1/admin/stats", Some(&admin)).await;
        per_node = ["n1", "n2"]
            .iter()
            .map(|id| {
                stats["cluster"]["nodes"][id]["sessions"]
                    .as_i64()
                    .unwrap_or(0)
            })
            .collect();
        if per_node.iter().sum::<i64>() == 24 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(per_node.iter().sum::<i64>(), 24, "{per_node:?}");
    assert!(
        per_node.iter().all(|n| *n > 0),
        "one node got everything: {per_node:?}"
    );
    clients[0]
        .ok("send", send("public:shared", "to all", "s0"))
        .await;
    for c in &mut clients[1..] {
        let m = c.recv_type("message").await;
        assert_eq!(m["data"]["body"]["text"], "to all");
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_lost_backplane_messages_are_filled_from_the_database_in_order() {
    // n1 drops every third message event it should publish, its last one included.
    let cluster = spawn_cluster(3, |s| {
        if s.cluster.node_id == "n1" {
            s.cluster.drop_message_events_every = 3;
        }
    })
    .await;
    let room = "public:lossy";
    let mut readers = Vec::new();
    for node in &cluster.nodes[1..] {
        let mut r = node.ws("reader").await;
        r.ok("join", json!({"room": room})).await;
        readers.push(r);
    }
    let mut writer = cluster.nodes[0].ws("writer").await;
    writer.ok("join", json!({"room": room})).await;
    for k in 0..30 {
        writer
            .ok("send", send(room, &format!("m{k}"), &format!("m-{k}")))
            .await;
    }
    // Every reader gets 1..=30 consecutively, the 10 lost ones read from the database,
    // the last (seq 30, lost too) by the tail check after the traffic stops.
    for r in &mut readers {
        let got = read_messages(r, room, 1, 30).await;
        assert_eq!(got[29]["data"]["body"]["text"], "m29");
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_auto_away_needs_every_device_on_every_node_idle() {
    let cluster = spawn_cluster(2, |s| s.auto_away = Some(Duration::from_millis(1500))).await;
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = "public:idle";
    let mut watcher = n1.ws("watcher").await;
    watcher.ok("join", json!({"room": room})).await;
    let mut phone = n1.ws("ivy").await;
    phone.ok("join", json!({"room": room})).await;
    let mut laptop = n2.ws("ivy").await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["joins"][0]["user"], "ivy", "{p}");
    // The laptop (n2) stays active past the auto-away time: ivy is not away, although
    // her phone (n1, the watcher's node) is idle.
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        laptop
            .ok("typing", json!({"room": room, "state": "stop"}))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
    while let Ok(v) = watcher
        .recv_or_other(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if v["type"] == "room_presence" {
            assert_ne!(
                v["data"]["joins"][0]["status"], "away",
                "away too early: {v}"
            );
        }
    }
    // Both idle: away, seen from n1.
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["joins"][0]["status"], "away", "{p}");
    // Activity on n2 brings her back everywhere.
    laptop
        .ok("typing", json!({"room": room, "state": "stop"}))
        .await;
    let p = watcher.recv_type("room_presence").await;
    assert_eq!(p["data"]["joins"][0]["status"], "online", "{p}");
    drop(phone);
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_an_invitation_reaches_the_invitees_devices_on_every_node() {
    let cluster = spawn_cluster(3, |_| {}).await;
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    let (status, created) = n1
        .send_json(
            "POST",
            "/v1/rooms",
            Some(&n1.token("owner")),
            Some(json!({"name": "Across"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let room = created["room"].as_str().unwrap().to_owned();
    let mut owner = n1.ws("owner").await;
    let mut bob2 = n2.ws("bob").await;
    let mut bob3 = n3.ws("bob").await;
    let ack = owner
        .ok("invite", json!({"room": room, "user": "bob"}))
        .await;
    assert_eq!(ack["invited"], true, "{ack}");
    for bob in [&mut bob2, &mut bob3] {
        let f = bob.recv_type("invitation").await;
        assert_eq!(f["data"]["room"], room.as_str());
        assert_eq!(f["data"]["from"], "owner");
    }
    // Accepted on n3: bob's device on n2 is subscribed too and gets the room's messages.
    bob3.ok("accept", json!({"room": room})).await;
    owner.ok("send", send(&room, "welcome", "w1")).await;
    let m = bob2.recv_type("message").await;
    assert_eq!(m["data"]["body"]["text"], "welcome");
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_an_erasure_through_one_node_closes_the_users_sessions_on_every_node() {
    let cluster = spawn_cluster(3, |_| {}).await;
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = "public:erase";
    let mut alice = n2.ws("alice").await;
    let mut bob = n3.ws("bob").await;
    alice.ok("join", json!({"room": room})).await;
    bob.ok("join", json!({"room": room})).await;
    alice.ok("send", send(room, "mine", "e1")).await;
    let admin = n1.admin_token("root");
    let (status, body) = n1
        .send_json("DELETE", "/v1/admin/users/alice", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["erased"]["messages"], 1);
    assert_eq!(alice.expect_close().await, Some(4000));
    let h = bob.ok("history", json!({"room": room})).await;
    assert_eq!(h["messages"][0]["body"], Value::Null, "{h}");
    // n3's room no longer counts her as a member: her presence is gone from it.
    let (_, rp) = n3
        .get(&format!("/v1/admin/rooms/{room}/presence"), Some(&admin))
        .await;
    assert!(!rp.to_string().contains("\"alice\""), "{rp}");
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_message_undelivered_is_only_for_users_with_no_session_on_any_node() {
    use crate::webhooks::{endpoint, fast, Answer, Receiver};
    use herald::webhook::EventType;
    let rx = Receiver::start(std::sync::Arc::new(|_, _, _| Answer::Ok)).await;
    let rx2 = rx.clone();
    let cluster = spawn_cluster(2, move |s| {
        fast(
            s,
            vec![endpoint("push", &rx2, &[EventType::MessageUndelivered])],
        )
    })
    .await;
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let _bob = n2.ws("bob").await;
    let admin = n1.admin_token("root");
    // n1 knows bob is connected to n2 once his entry arrived.
    let mut seen = false;
    for _ in 0..50 {
        let (_, p) = n1.get("/v1/admin/presence/bob", Some(&admin)).await;
        if p["devices"].as_i64().unwrap_or(0) > 0 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "n1 never saw bob");
    for (user, title) in [("bob", "bob is on n2"), ("carol", "carol is offline")] {
        let (s, body) = n1
            .send_json(
                "POST",
                "/v1/admin/notifications",
                Some(&admin),
                Some(json!({"users": [user], "notification_type": "alert", "title": title})),
            )
            .await;
        assert!(s == 200 || s == 201, "{s} {body}");
    }
    rx.wait_for(Duration::from_secs(10), "carol's undelivered event", |r| {
        r.acked_of("push", "message.undelivered")
            .iter()
            .any(|e| e["data"]["user"] == "carol")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let users: Vec<String> = rx
        .acked_of("push", "message.undelivered")
        .iter()
        .map(|e| e["data"]["user"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!users.iter().any(|u| u == "bob"), "{users:?}");
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis (cluster pass of .ci/run)"]
async fn cluster_join_acks_and_member_pages_list_members_connected_on_other_nodes() {
    // Arrange: alice is in the room on node 1 before the room runs on node 2.
    let cluster = spawn_cluster(2, |_| {}).await;
    let [n1, n2] = &cluster.nodes[..] else {
        unreachable!()
    };
    let room = json!({"room": "public:everywhere"});
    let mut a = n1.ws("alice").await;
    a.ok("join", room.clone()).await;

    // Act + Assert: bob's join starts the room on node 2, which asks who is connected.
    let mut b = n2.ws("bob").await;
    let joined = b.ok("join", room.clone()).await;
    assert_eq!(user_names(&joined["members"]), ["alice", "bob"], "{joined}");

    // carol joins on node 1 while the room runs on node 2; then she leaves the cluster.
    let mut c = n1.ws("carol").await;
    c.ok("join", room.clone()).await;
    assert_eq!(
        members_once_settled(&mut b, &room, 3).await,
        ["alice", "bob", "carol"]
    );
    c.close().await;
    assert_eq!(
        members_once_settled(&mut b, &room, 2).await,
        ["alice", "bob"],
        "carol went offline"
    );
}

/// The `members` page `c` gets once it lists `n` users (or after 5 s, whatever it lists).
async fn members_once_settled(c: &mut WsClient, room: &Value, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = user_names(&c.ok("members", room.clone()).await["members"]);
        if seen.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}
