//! Connecting many clients with bounded concurrency, joining rooms and closing them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::client::{self, Conn, Dialect, Handler, Reply};
use crate::stats::Lat;

use super::{Ctx, Progress};
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

/// Connects `users[i]` to server `servers(i)` with `handlers(i)`, joining `rooms(i)` when it
/// names one; at most `ctx.concurrency` attempts in flight.
pub async fn connect_many(
    ctx: &Ctx,
    users: &[String],
    servers: &dyn Fn(usize) -> usize,
    handlers: &dyn Fn(usize) -> Handler,
    rooms: &dyn Fn(usize) -> Option<String>,
) -> Connects {
    let member = |i: usize| Member {
        rooms: rooms(i).into_iter().collect(),
        dialect: Dialect::Native,
    };
    connect_members(ctx, users, servers, handlers, &member).await
}

/// How one connection of [`connect_members`] joins in: the rooms it joins (in order, one
/// request at a time) and the protocol it speaks.
pub struct Member {
    pub rooms: Vec<String>,
    pub dialect: Dialect,
}

/// [`connect_many`] with each connection's rooms and dialect given by `members(i)`.
pub async fn connect_members(
    ctx: &Ctx,
    users: &[String],
    servers: &dyn Fn(usize) -> usize,
    handlers: &dyn Fn(usize) -> Handler,
    members: &dyn Fn(usize) -> Member,
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
            let res = connect_member(ctx, servers(i), &users[i], handlers(i), members(i)).await;
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

/// Connects one user to server `server` and joins a room; errors are (kind, message).
pub async fn connect_one(
    ctx: &Ctx,
    server: usize,
    user: &str,
    handler: Handler,
    room: Option<String>,
) -> Result<Conn, (String, String)> {
    let member = Member {
        rooms: room.into_iter().collect(),
        dialect: Dialect::Native,
    };
    connect_member(ctx, server, user, handler, member).await
}

async fn connect_member(
    ctx: &Ctx,
    server: usize,
    user: &str,
    handler: Handler,
    member: Member,
) -> Result<Conn, (String, String)> {
    let token = ctx.token(user).map_err(|e| ("token".to_owned(), e))?;
    let conn = client::connect_as(
        &ctx.pool,
        server,
        user,
        &token,
        ctx.timeout,
        handler,
        member.dialect,
    )
    .await
    .map_err(|e| (e.kind(), format!("{user}: {e}")))?;
    for room in &member.rooms {
        join(&conn, room, ctx.timeout).await?;
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
