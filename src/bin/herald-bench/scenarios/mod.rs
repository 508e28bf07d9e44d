//! What every scenario shares: the run context ([`Ctx`]), the once-a-second progress line,
//! connecting many clients with bounded concurrency, rate-paced publishing with pipelined
//! acks matched by `ref`, and the book of sent/acked/received messages that loss and
//! latency are computed from.
//!
//! Message bodies carry their send time and id in the text (`hb1 t=<nanos> id=<n> ...`), so
//! a receiver measures publish→receive latency with the same process clock the publisher
//! used, and loss is counted per acked message.

pub mod churn;
pub mod direct;
pub mod fanout;
pub mod hostile;
pub mod idle;
pub mod persist;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::{interval, sleep, MissedTickBehavior};

use crate::client::{self, ClientPool, Conn, Event, Handler, Reply, Stamp, STAMP_DIGITS};
use crate::stats::{self, fmt_int, unix_nanos, Lat, Report};

pub type BenchResult<T> = Result<T, String>;

/// Everything a scenario needs to reach the server and to report.
pub struct Ctx {
    /// `ws://host:port/v1/ws` (for display; sockets use `pool.server`).
    pub ws_url: String,
    /// `http://host:port`.
    pub http_url: String,
    pub keys: herald::auth::JwtKeys,
    pub pool: ClientPool,
    /// Short random id put in user and room names so runs never share state.
    pub run_id: String,
    pub server_pid: Option<u32>,
    /// Per-operation timeout (connect, join, ack).
    pub timeout: Duration,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// Most sockets this process may open (the file-descriptor limit minus a reserve).
    pub max_conns: usize,
    /// The file-descriptor limit that `max_conns` comes from.
    pub fd_limit: u64,
    pub progress: Rc<Progress>,
    /// Machine-wide CPU since the measured phase began (reset with [`Ctx::measure_from_now`]).
    pub machine_cpu: RefCell<stats::MachineCpu>,
    pub cores: f64,
}

impl Ctx {
    /// Starts the machine-wide CPU meter (call where the server and bench meters start).
    pub fn measure_from_now(&self) {
        *self.machine_cpu.borrow_mut() = stats::MachineCpu::start();
    }

    pub fn token(&self, user: &str) -> BenchResult<String> {
        self.keys
            .mint(user, None, &[], Duration::from_secs(3600))
            .map_err(|e| format!("minting a token for {user}: {e}"))
    }

    pub fn admin_token(&self) -> BenchResult<String> {
        self.keys
            .mint(
                &format!("bench-admin-{}", self.run_id),
                None,
                &["admin"],
                Duration::from_secs(3600),
            )
            .map_err(|e| format!("minting the admin token: {e}"))
    }

    /// Why the run must stop early, if it must.
    pub fn aborted(&self) -> Option<String> {
        self.progress.abort.borrow().clone()
    }

    /// Caps a requested socket count to what the file-descriptor limit allows, with a note.
    pub fn cap(&self, requested: usize, what: &str, report: &mut Report) -> usize {
        if requested > self.max_conns {
            report.note(format!(
                "{what}: {requested} requested, capped to {} by the file-descriptor limit \
                 ({} per process; sockets of one client process)",
                self.max_conns, self.fd_limit
            ));
            report.set("capped_from", requested as u64);
            self.max_conns
        } else {
            requested
        }
    }

    pub fn server_rss_kib(&self) -> Option<u64> {
        self.server_pid.and_then(stats::rss_kib)
    }

    /// `GET /v1/admin/stats`, best effort.
    pub async fn server_stats(&self) -> Option<Value> {
        let token = self.admin_token().ok()?;
        let fut = async {
            let mut res = self
                .pool
                .http()
                .get(format!("{}/v1/admin/stats", self.http_url))
                .bearer_auth(token)
                .send()
                .await
                .ok()?;
            let body = res.body().limit(1 << 20).await.ok()?;
            serde_json::from_slice::<Value>(&body).ok()
        };
        tokio::time::timeout(self.timeout, fut).await.ok().flatten()
    }

    /// `POST /v1/rooms/{room}/members/{user}` with an admin token.
    pub async fn add_member(&self, admin: &str, room: &str, user: &str) -> BenchResult<()> {
        let fut = async {
            let mut res = self
                .pool
                .http()
                .post(format!("{}/v1/rooms/{room}/members/{user}", self.http_url))
                .bearer_auth(admin)
                .send()
                .await
                .map_err(|e| format!("add {user} to {room}: {e}"))?;
            if res.status().is_success() {
                Ok(())
            } else {
                let body = res.body().await.unwrap_or_default();
                Err(format!(
                    "add {user} to {room}: HTTP {}: {}",
                    res.status(),
                    String::from_utf8_lossy(&body)
                ))
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("add {user} to {room}: timeout"))?
    }
}

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
    let pid = ctx.server_pid;
    actix_web::rt::spawn(async move {
        let started = Instant::now();
        let mut last = (0u64, 0u64, 0u64);
        let mut server_cpu = stats::cpu_time(pid);
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
            let cpu_pct = |prev: &mut Option<Duration>, p: Option<u32>| {
                let now = stats::cpu_time(p);
                let pct = match (now, *prev) {
                    (Some(n), Some(b)) => n.checked_sub(b).map(|d| d.as_secs_f64() * 100.0),
                    _ => None,
                };
                *prev = now;
                pct
            };
            let mut server = String::new();
            let mut srv_cpu = None;
            if let Some(pid) = pid {
                match stats::rss_kib(pid) {
                    Some(rss) => {
                        srv_cpu = cpu_pct(&mut server_cpu, Some(pid));
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
                    None => progress.stop(format!("server process {pid} is gone")),
                }
            }
            let me = cpu_pct(&mut self_cpu, None);
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

/// The result of connecting a batch of clients.
pub struct Connects {
    /// One slot per requested user, `None` where the connection failed.
    pub conns: Vec<Option<Conn>>,
    /// Connect latency: upgrade through `sync` (and the `join` ack when joining).
    pub lat: Lat,
    pub failures: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Connects {
    pub fn ok(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "none".into();
        }
        let mut s = self
            .failures
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(e) = &self.first_error {
            s.push_str(&format!(" (first: {e})"));
        }
        s
    }
}

/// Connects `users[i]` with `handlers(i)`, joining `rooms(i)` when it returns a room, with at
/// most `ctx.concurrency` attempts in flight.
pub async fn connect_many(
    ctx: &Ctx,
    users: &[String],
    handlers: &dyn Fn(usize) -> Handler,
    rooms: &dyn Fn(usize) -> Option<String>,
) -> Connects {
    let started = Instant::now();
    let mut out = Connects {
        conns: (0..users.len()).map(|_| None).collect(),
        lat: Lat::new(),
        failures: BTreeMap::new(),
        first_error: None,
        elapsed: Duration::ZERO,
    };
    let attempts = futures_util::stream::iter(0..users.len())
        .take_while(|_| std::future::ready(ctx.aborted().is_none()))
        .map(|i| async move {
            let t0 = Instant::now();
            let res = connect_one(ctx, &users[i], handlers(i), rooms(i)).await;
            (i, res, t0.elapsed())
        })
        .buffer_unordered(ctx.concurrency.max(1));
    futures_util::pin_mut!(attempts);
    while let Some((i, res, took)) = attempts.next().await {
        match res {
            Ok(conn) => {
                out.lat.record(took);
                out.conns[i] = Some(conn);
                Progress::add(&ctx.progress.connected, 1);
            }
            Err((kind, e)) => {
                *out.failures.entry(kind).or_default() += 1;
                out.first_error.get_or_insert(e);
                Progress::add(&ctx.progress.connect_failed, 1);
            }
        }
    }
    out.elapsed = started.elapsed();
    out
}

/// Connects one user and joins a room; errors are (kind, message).
pub async fn connect_one(
    ctx: &Ctx,
    user: &str,
    handler: Handler,
    room: Option<String>,
) -> Result<Conn, (String, String)> {
    let token = ctx.token(user).map_err(|e| ("token".to_owned(), e))?;
    let conn = client::connect(&ctx.pool, user, &token, ctx.timeout, handler)
        .await
        .map_err(|e| (e.kind(), format!("{user}: {e}")))?;
    if let Some(room) = room {
        join(&conn, &room, ctx.timeout).await?;
    }
    Ok(conn)
}

/// Joins a room; errors are (kind, message).
pub async fn join(conn: &Conn, room: &str, timeout: Duration) -> Result<(), (String, String)> {
    match conn.request("join", json!({ "room": room }), timeout).await {
        Ok(Reply::Ack(..)) => Ok(()),
        Ok(Reply::Error { code, message }) => Err((
            format!("join_{code}"),
            format!("{}: join {room}: {code}: {message}", conn.user),
        )),
        Err(e) => Err((
            format!("join_{e}").replace(' ', "_"),
            format!("{}: join {room}: {e}", conn.user),
        )),
    }
}

/// Closes every connection and waits (briefly) for the sockets to be gone.
pub async fn close_all<'a>(conns: impl IntoIterator<Item = &'a Conn>) -> usize {
    for c in conns {
        c.close();
    }
    client::wait_all_closed(Duration::from_secs(5)).await
}

/// `{"type":"xyz",...}` → `xyz` (the server always writes `type` first).
pub fn frame_type(text: &str) -> &str {
    text.strip_prefix(r#"{"type":""#)
        .and_then(|r| r.split('"').next())
        .unwrap_or("?")
}

/// The marker every bench message body starts with.
const TAG: &str = "hb1 t=";

/// Reads `(sent_at_nanos, id)` from a `message` frame written by [`Publisher::publish`].
pub fn parse_tag(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.find(TAG)? + TAG.len()..];
    let (t, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("id=")?;
    let id = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((t.parse().ok()?, id.parse().ok()?))
}

/// Everything known about the messages of one run, indexed by message id.
#[derive(Default)]
pub struct Book {
    /// Messages with a lower id were sent before the measurement (warm-up) and are ignored.
    pub base: usize,
    pub acked: Vec<bool>,
    pub received: Vec<u32>,
    pub sent: u64,
    pub acks: u64,
    pub ack_lat: Lat,
    pub ack_errors: BTreeMap<String, u64>,
    pub ack_timeouts: u64,
    pub send_closed: u64,
    /// Acks flagged `duplicate` (should stay 0: every client_msg_id is unique).
    pub duplicate_acks: u64,
    /// Sends skipped because every publisher had `max_inflight` unacked messages.
    pub throttled: u64,
    pub deliveries: u64,
    /// Bench-tagged deliveries whose id was never sent (should stay 0).
    pub unknown: u64,
    /// Send → the message's bytes reached the receiving socket (kernel timestamp).
    pub delivery_lat: Lat,
    /// Send → the bench processed the frame (adds the bench's own scheduling delay).
    pub delivery_app_lat: Lat,
    pub first_send: Option<Instant>,
    pub last_send: Option<Instant>,
    pub last_delivery: Option<Instant>,
    pub last_ack: Option<Instant>,
    /// Acks per second since the first send (index = second).
    pub acks_per_second: Vec<u64>,
    /// Non-message frames seen by receivers, by type.
    pub other_frames: BTreeMap<String, u64>,
    /// Close codes seen by handlers (unsolicited).
    pub closes: BTreeMap<String, u64>,
}

pub type SharedBook = Rc<RefCell<Book>>;

impl Book {
    pub fn new_shared() -> SharedBook {
        Rc::new(RefCell::new(Book::default()))
    }

    /// Forgets everything measured so far (warm-up); ids keep counting up, so ids (and
    /// `client_msg_id`s) stay unique and late warm-up frames are recognised and ignored.
    pub fn begin_measurement(&mut self) {
        let base = self.acked.len();
        *self = Book {
            base,
            acked: std::mem::take(&mut self.acked),
            received: std::mem::take(&mut self.received),
            ..Book::default()
        };
    }

    /// Loss figures over acked messages when each should reach `receivers` sessions:
    /// (expected, received of those, duplicates, loss fraction).
    pub fn loss(&self, receivers: u64) -> (u64, u64, u64, Option<f64>) {
        let mut expected = 0u64;
        let mut got = 0u64;
        let mut dup = 0u64;
        for (id, &acked) in self.acked.iter().enumerate().skip(self.base) {
            let r = u64::from(self.received.get(id).copied().unwrap_or(0));
            dup += r.saturating_sub(receivers);
            if acked {
                expected += receivers;
                got += r.min(receivers);
            }
        }
        let loss = (expected > 0).then(|| 1.0 - got as f64 / expected as f64);
        (expected, got, dup, loss)
    }

    pub fn ack_errors_text(&self) -> String {
        let mut parts: Vec<String> = self
            .ack_errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.ack_timeouts > 0 {
            parts.push(format!("timeout={}", self.ack_timeouts));
        }
        if self.duplicate_acks > 0 {
            parts.push(format!("duplicate_acks={}", self.duplicate_acks));
        }
        if self.send_closed > 0 {
            parts.push(format!("conn_closed={}", self.send_closed));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A handler that records bench messages into `book` and counts everything else.
pub fn receiver(book: SharedBook, progress: Rc<Progress>) -> Handler {
    Box::new(move |ev| match ev {
        Event::Text(text, rx_ns) => {
            let kind = frame_type(text);
            if kind == "message" {
                if let Some((t, id)) = parse_tag(text) {
                    let now = unix_nanos();
                    let mut b = book.borrow_mut();
                    if (id as usize) < b.base {
                        return;
                    }
                    match b.received.get_mut(id as usize) {
                        Some(r) => {
                            *r += 1;
                            b.deliveries += 1;
                            b.delivery_app_lat.record_nanos(now.saturating_sub(t));
                            if let Some(rx) = rx_ns {
                                b.delivery_lat.record_nanos(rx.saturating_sub(t));
                            }
                            b.last_delivery = Some(Instant::now());
                            Progress::add(&progress.received, 1);
                        }
                        None => b.unknown += 1,
                    }
                    return;
                }
            }
            *book
                .borrow_mut()
                .other_frames
                .entry(kind.to_owned())
                .or_default() += 1;
        }
        Event::Closed(info) => {
            if !info.by_us {
                let key = match (info.code, &info.error) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(_)) => "error".to_owned(),
                    (None, None) => "unknown".to_owned(),
                };
                *book.borrow_mut().closes.entry(key).or_default() += 1;
            }
        }
    })
}

/// Where a publisher sends.
#[derive(Clone)]
pub enum Target {
    Room(String),
    To(String),
}

/// One publishing connection.
pub struct Publisher {
    pub conn: Conn,
    pub target: Target,
}

/// How publishers behave.
#[derive(Clone, Copy)]
pub struct PubOptions {
    /// Unacked sends allowed per connection; beyond it a send is skipped (`throttled`).
    pub max_inflight: usize,
    /// Extra bytes of body text.
    pub pad: usize,
    pub ack_timeout: Duration,
}

impl Publisher {
    /// Sends one tagged text message without waiting; its ack is awaited in a spawned task.
    /// Returns false when the connection is closed.
    pub fn publish(
        &self,
        book: &SharedBook,
        progress: &Rc<Progress>,
        run: &str,
        opts: PubOptions,
    ) -> bool {
        let id = {
            let mut b = book.borrow_mut();
            let id = b.acked.len();
            b.acked.push(false);
            b.received.push(0);
            id
        };
        let target = match &self.target {
            Target::Room(r) => format!(r#""room":"{r}""#),
            Target::To(u) => format!(r#""to":"{u}""#),
        };
        let r = self.conn.next_ref();
        let pad = pad(opts.pad);
        let sent_at = Instant::now();
        // The driver writes the send time over the zeros as the frame goes to the socket.
        let zeros = "0".repeat(STAMP_DIGITS);
        let frame = format!(
            r#"{{"type":"send","ref":{r},"data":{{{target},"kind":"text","body":{{"text":"{TAG}{zeros} id={id} {pad}"}},"client_msg_id":"{run}-{id}"}}}}"#
        );
        let stamp = Stamp {
            offset: frame.find(TAG).map_or(0, |i| i + TAG.len()),
            at: Rc::new(Cell::new(0)),
        };
        let written_at = stamp.at.clone();
        let rx = match self.conn.request_raw(r, frame, Some(stamp)) {
            Ok(rx) => rx,
            Err(_) => {
                book.borrow_mut().send_closed += 1;
                return false;
            }
        };
        {
            let mut b = book.borrow_mut();
            b.sent += 1;
            b.first_send.get_or_insert(sent_at);
            b.last_send = Some(sent_at);
        }
        Progress::add(&progress.sent, 1);
        let book = book.clone();
        let progress = progress.clone();
        let conn = self.conn.clone();
        actix_web::rt::spawn(async move {
            let res = tokio::time::timeout(opts.ack_timeout, rx).await;
            let mut b = book.borrow_mut();
            if id < b.base {
                return; // a warm-up message answered after the measurement began
            }
            match res {
                Ok(Ok(Reply::Ack(data, at))) => {
                    if data.get("duplicate") == Some(&Value::Bool(true)) {
                        // A client_msg_id was reused: nothing new was stored.
                        b.duplicate_acks += 1;
                    }
                    b.acks += 1;
                    if let Some(first) = b.first_send {
                        let sec = first.elapsed().as_secs() as usize;
                        if b.acks_per_second.len() <= sec {
                            b.acks_per_second.resize(sec + 1, 0);
                        }
                        b.acks_per_second[sec] += 1;
                    }
                    match written_at.get() {
                        0 => b.ack_lat.record(sent_at.elapsed()),
                        w => b.ack_lat.record_nanos(at.saturating_sub(w)),
                    }
                    b.last_ack = Some(Instant::now());
                    if let Some(a) = b.acked.get_mut(id) {
                        *a = true;
                    }
                    Progress::add(&progress.acked, 1);
                }
                Ok(Ok(Reply::Error { code, .. })) => {
                    *b.ack_errors.entry(code).or_default() += 1;
                    Progress::add(&progress.errors, 1);
                }
                Ok(Err(_)) => {
                    b.send_closed += 1;
                    Progress::add(&progress.errors, 1);
                }
                Err(_) => {
                    conn.forget(r);
                    b.ack_timeouts += 1;
                    Progress::add(&progress.errors, 1);
                }
            }
        });
        true
    }
}

/// Most padding bytes a body gets (Herald's default text limit is 64 KiB).
pub const MAX_PAD: usize = 60_000;

/// `n` bytes of body padding (plain ASCII: no JSON escaping needed).
fn pad(n: usize) -> &'static str {
    static PAD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let p = PAD.get_or_init(|| "x".repeat(MAX_PAD));
    &p[..n.min(MAX_PAD)]
}

/// Sends `rate` messages per second in total for `secs`, round-robin over `pubs`, skipping a
/// publisher whose in-flight count is at `max_inflight`. Returns the publishing time.
pub async fn publish_for(
    ctx: &Ctx,
    pubs: &[Publisher],
    rate: f64,
    secs: Duration,
    opts: PubOptions,
    book: &SharedBook,
) -> Duration {
    let started = Instant::now();
    if pubs.is_empty() || rate <= 0.0 {
        return Duration::ZERO;
    }
    let mut tick = interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut issued: u64 = 0;
    let mut next = 0usize;
    let total = (rate * secs.as_secs_f64()).round() as u64;
    while issued < total && started.elapsed() < secs && ctx.aborted().is_none() {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64)
            .min(total)
            .saturating_sub(issued);
        for _ in 0..due {
            issued += 1;
            // Find a publisher with room in its window.
            let mut sent = false;
            for _ in 0..pubs.len() {
                let p = &pubs[next];
                next = (next + 1) % pubs.len();
                if p.conn.is_open() && p.conn.in_flight() < opts.max_inflight {
                    sent = p.publish(book, &ctx.progress, &ctx.run_id, opts);
                    if sent {
                        break;
                    }
                }
            }
            if !sent {
                book.borrow_mut().throttled += 1;
            }
        }
    }
    started.elapsed()
}

/// After publishing: waits until every ack is in and every acked message reached
/// `receivers` sessions, or `limit` passes.
pub async fn drain(ctx: &Ctx, book: &SharedBook, receivers: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit && ctx.aborted().is_none() {
        let done = {
            let b = book.borrow();
            let settled =
                b.acks + b.ack_errors.values().sum::<u64>() + b.ack_timeouts + b.send_closed
                    >= b.sent;
            settled && b.loss(receivers).1 >= b.loss(receivers).0
        };
        if done {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Acked messages per second from the first send to the last ack (acks that arrive after
/// publishing stopped count, and so does the time they took).
pub fn acked_per_s(b: &Book) -> Option<f64> {
    match (b.first_send, b.last_ack) {
        (Some(a), Some(z)) if z > a => Some(b.acks as f64 / (z - a).as_secs_f64()),
        _ => None,
    }
}

/// Adds the publishing figures shared by fanout, direct and persist to a report.
pub fn report_publishing(r: &mut Report, b: &Book, rate: f64, pub_time: Duration) {
    let secs = pub_time.as_secs_f64().max(1e-9);
    let acked_rate = acked_per_s(b);
    r.row(
        "offered / sent",
        format!(
            "{} msg/s target, {} sent in {:.1} s ({} msg/s)",
            fmt_int(rate),
            fmt_int(b.sent as f64),
            secs,
            fmt_int(b.sent as f64 / secs)
        ),
    );
    r.row(
        "acked (durable)",
        format!(
            "{} ({} msg/s from the first send to the last ack)",
            fmt_int(b.acks as f64),
            acked_rate.map_or("n/a".into(), fmt_int)
        ),
    );
    if b.acks_per_second.len() > 1 {
        r.row(
            "acks per 1-s window",
            b.acks_per_second
                .iter()
                .map(|n| fmt_int(*n as f64))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    r.row("ack errors", b.ack_errors_text());
    if b.throttled > 0 {
        r.row(
            "throttled sends",
            format!(
                "{} (every publisher had max-inflight unacked messages)",
                fmt_int(b.throttled as f64)
            ),
        );
    }
    r.row("ack latency", b.ack_lat.summary());
    r.set("target_rate", rate);
    r.set("sent", b.sent);
    r.set("acked", b.acks);
    r.set_f("sent_per_s", Some(b.sent as f64 / secs));
    r.set_f("acked_per_s", acked_rate);
    r.set("acks_per_second", json!(b.acks_per_second));
    r.set("throttled", b.throttled);
    r.set("ack_timeouts", b.ack_timeouts);
    r.set("ack_errors", json!(b.ack_errors));
    b.ack_lat.to_json("ack_", r.json_mut());
}

/// Adds delivery figures (rate, loss, latency) to a report.
pub fn report_deliveries(r: &mut Report, b: &Book, receivers: u64) {
    let (expected, got, dup, loss) = b.loss(receivers);
    let span = match (b.first_send, b.last_delivery) {
        (Some(a), Some(z)) if z > a => (z - a).as_secs_f64(),
        _ => 0.0,
    };
    let per_s = (span > 0.0).then(|| b.deliveries as f64 / span);
    r.row(
        "deliveries",
        format!(
            "{} received of {} expected ({} per acked message)",
            fmt_int(got as f64),
            fmt_int(expected as f64),
            receivers
        ),
    );
    r.row(
        "deliveries/s",
        per_s.map_or("n/a".into(), |v| {
            format!("{} (first send to last delivery)", fmt_int(v))
        }),
    );
    r.row("loss", stats::fmt_loss(loss));
    if dup > 0 || b.unknown > 0 {
        r.row("duplicates / unknown", format!("{dup} / {}", b.unknown));
    }
    r.row("delivery latency (socket)", b.delivery_lat.summary());
    r.row("delivery latency (bench app)", b.delivery_app_lat.summary());
    if !b.closes.is_empty() {
        r.row("server closes", format!("{:?}", b.closes));
        r.note(format!(
            "the server closed connections during the run: {:?} (4008 = slow consumer)",
            b.closes
        ));
    }
    r.set_f("deliveries_per_s", per_s);
    r.set_f("loss", loss);
    r.set("expected_deliveries", expected);
    r.set("received_deliveries", got);
    r.set("duplicates", dup);
    r.set("receivers_per_message", receivers);
    r.set("server_closes", json!(b.closes));
    r.set("other_frames", json!(b.other_frames));
    // Headline: send → bytes at the receiving socket (kernel receive timestamp); the `app_`
    // figures add the time the single-threaded bench took to get to the frame.
    if b.delivery_lat.count() > 0 {
        b.delivery_lat.to_json("", r.json_mut());
    } else {
        b.delivery_app_lat.to_json("", r.json_mut());
    }
    b.delivery_app_lat.to_json("app_", r.json_mut());
}

/// Shared tail of every report: resources of the server and of the bench process.
pub async fn report_resources(
    ctx: &Ctx,
    r: &mut Report,
    server_cpu: &stats::CpuMeter,
    self_cpu: &stats::CpuMeter,
) {
    let machine = ctx.machine_cpu.borrow().percent();
    if let Some(p) = server_cpu.percent() {
        r.row("server CPU (run)", format!("{p:.0}% of one core"));
        r.set_f("server_cpu_pct", Some(p));
    }
    if let Some(rss) = ctx.server_rss_kib() {
        r.row("server RSS (end)", format!("{} MiB", rss / 1024));
        r.set("server_rss_kib", rss);
    }
    if let Some(p) = self_cpu.percent() {
        r.row(
            "bench CPU (run)",
            format!("{p:.0}% of one core (single-threaded client)"),
        );
        r.set_f("bench_cpu_pct", Some(p));
        if p > 85.0 {
            r.note(format!(
                "the bench process used {p:.0}% of its one core: the client may limit these figures"
            ));
        }
    }
    if let Some(m) = machine {
        let own = server_cpu.percent().unwrap_or(0.0) + self_cpu.percent().unwrap_or(0.0);
        let other = (m - own).max(0.0);
        r.row(
            "machine CPU (run)",
            format!(
                "{m:.0}% of {:.0}% ({other:.0}% used by other processes)",
                ctx.cores * 100.0
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
    let (frames, bytes, closes, errors) = client::net(|n| {
        (
            n.frames_in.get(),
            n.bytes_in.get(),
            n.server_closes.borrow().clone(),
            n.errors.borrow().clone(),
        )
    });
    r.row(
        "frames received",
        format!("{} ({} MiB)", fmt_int(frames as f64), bytes >> 20),
    );
    if !closes.is_empty() {
        r.row("unsolicited server closes", format!("{closes:?}"));
    }
    if !errors.is_empty() {
        r.row("connection errors", format!("{errors:?}"));
    }
    r.set("frames_in", frames);
    r.set("bytes_in", bytes);
    r.set("unsolicited_closes", json!(closes));
    r.set("connection_errors", json!(errors));
    if let Some(s) = ctx.server_stats().await {
        let pick = |k: &str| s.get(k).cloned().unwrap_or(Value::Null);
        r.row(
            "server /v1/admin/stats",
            format!(
                "slow_consumers_total {}, messages_in_total {}, frames_out_total {}, max_batch_groups {}",
                pick("slow_consumers_total"),
                pick("messages_in_total"),
                pick("frames_out_total"),
                s.get("persistence")
                    .and_then(|p| p.get("max_batch_groups"))
                    .cloned()
                    .unwrap_or(Value::Null)
            ),
        );
        r.set("server_stats", s);
    }
    if let Some(why) = ctx.aborted() {
        r.note(format!("the run stopped early: {why}"));
        r.set("aborted", why);
    }
}

/// Sleeps for `d`, returning early when the run is stopped.
pub async fn pause(ctx: &Ctx, d: Duration) {
    let until = Instant::now() + d;
    while ctx.aborted().is_none() {
        let now = Instant::now();
        if now >= until {
            break;
        }
        sleep((until - now).min(Duration::from_millis(100))).await;
    }
}
