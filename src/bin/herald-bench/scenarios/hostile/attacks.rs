//! The attackers, one per kind, each run in a loop by `run`: token-less handshakes and probes,
//! silent connections, stalled bodies, reconnect storms, zombies, the frame flooder and the
//! feeder.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_http::ws::{OpCode, Parser};
use actix_web::web::BytesMut;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::time::{interval, MissedTickBehavior};

use crate::client::{self, Event, Handler, Reply};
use crate::scenarios::{frame_type, join, pause, Ctx};

use super::raw::{
    drain, exchange, io_kind, open, open_same, sid_in, until_closed, upgrade_request,
};
use super::{Tally, Target, FLOOD_USERS, ZOMBIE_RCVBUF};
/// (a) One token-less Engine.IO polling handshake; every `probe_every`th sid handed out is
/// followed by a WebSocket upgrade probe that never speaks.
pub(super) async fn tokenless(
    t: Rc<Target>,
    from: Ipv4Addr,
    probe_from: Ipv4Addr,
    probe_every: u64,
    eio: Rc<Tally>,
    probe: Rc<Tally>,
) {
    eio.add("attempts");
    let Some(held) = eio.hold() else { return };
    let (mut s, host) = match open(&t, from, None).await {
        Ok(s) => s,
        Err(e) => return eio.add(&e),
    };
    let req = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let sid = match exchange(&mut s, req.as_bytes(), t.timeout, true).await {
        Ok((200, body)) => match sid_in(&body) {
            Some(sid) => {
                eio.add("accepted");
                sid
            }
            None => return eio.add("http_200_without_sid"),
        },
        Ok((status, _)) => return eio.add(&format!("refused_http_{status}")),
        Err(e) => return eio.add(&e),
    };
    drop(s);
    drop(held);
    if probe_every == 0 || eio.get("accepted") % probe_every != 0 {
        return;
    }
    probe.add("attempts");
    let Some(_held) = probe.hold() else { return };
    // The probe must reach the node that handed out the sid.
    let (mut s, _) = match open_same(&t, probe_from, &host).await {
        Ok(s) => s,
        Err(e) => return probe.add(&e),
    };
    let path = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let req = upgrade_request(&path, &host);
    match exchange(&mut s, req.as_bytes(), t.timeout, false).await {
        Ok((101, _)) => {
            probe.add("upgraded");
            probe.closed(until_closed(&mut s).await.0);
        }
        Ok((status, _)) => probe.add(&format!("refused_http_{status}")),
        Err(e) => probe.add(&e),
    }
}

/// (b) A TCP connection that never sends a request head.
pub(super) async fn silent(t: Rc<Target>, from: Ipv4Addr, tally: Rc<Tally>) {
    tally.add("attempts");
    let Some(_held) = tally.hold() else { return };
    match open(&t, from, None).await {
        Ok((mut s, _)) => tally.closed(until_closed(&mut s).await.0),
        Err(e) => tally.add(&e),
    }
}

/// (e) `POST /v1/rooms` with upgrade headers and a `Content-Length` whose body never comes.
pub(super) async fn stall(t: Rc<Target>, from: Ipv4Addr, token: String, tally: Rc<Tally>) {
    tally.add("attempts");
    let Some(_held) = tally.hold() else { return };
    let (mut s, host) = match open(&t, from, None).await {
        Ok(s) => s,
        Err(e) => return tally.add(&e),
    };
    let req = format!(
        "POST /v1/rooms HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"na"
    );
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return tally.add(&io_kind(&e));
    }
    let (closed, first) = until_closed(&mut s).await;
    if let Some(status) = String::from_utf8_lossy(&first)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
    {
        tally.add(&format!("answered_http_{status}"));
    }
    tally.closed(closed);
}

/// (f) One reconnect of the storming user: the upgrade, then the socket dropped.
pub(super) async fn storm(t: Rc<Target>, from: Ipv4Addr, token: String, tally: Rc<Tally>) {
    tally.add("attempts");
    let Some(_held) = tally.hold() else { return };
    let (mut s, host) = match open(&t, from, None).await {
        Ok(s) => s,
        Err(e) => return tally.add(&e),
    };
    let req = upgrade_request(&format!("/v1/ws?token={token}"), &host);
    match exchange(&mut s, req.as_bytes(), t.timeout, false).await {
        Ok((101, _)) => tally.add("upgraded"),
        Ok((status, _)) => tally.add(&format!("refused_http_{status}")),
        Err(e) => tally.add(&e),
    }
}

/// (c) One zombie slot: an authenticated session with a 4 KiB receive buffer joins `room`
/// and never reads; after `hold` (or at `end`) it drains its socket to learn whether the
/// server dropped it, and starts over.
#[allow(clippy::too_many_arguments)]
pub(super) async fn zombie(
    ctx: &Ctx,
    t: &Target,
    from: Ipv4Addr,
    slot: usize,
    room: &str,
    hold: Duration,
    end: Instant,
    tally: Rc<Tally>,
) {
    let user = format!("hz-{}-{slot}", ctx.run_id);
    // Zombies start spread over the first second, not all at once.
    pause(ctx, Duration::from_millis(50 * slot as u64 % 1000)).await;
    while Instant::now() < end && ctx.aborted().is_none() {
        tally.add("attempts");
        let Ok(token) = ctx.token(&user) else {
            tally.add("token_error");
            return;
        };
        let (mut s, host) = match open(t, from, Some(ZOMBIE_RCVBUF)).await {
            Ok(s) => s,
            Err(e) => {
                tally.add(&e);
                pause(ctx, Duration::from_secs(1)).await;
                continue;
            }
        };
        let req = upgrade_request(&format!("/v1/ws?token={token}"), &host);
        // The bytes read after the head (the first frames) are where the stream continues.
        let early = match exchange(&mut s, req.as_bytes(), t.timeout, false).await {
            Ok((101, answer)) => {
                let head = answer
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(answer.len(), |i| i + 4);
                BytesMut::from(&answer[head..])
            }
            Ok((status, _)) => {
                tally.add(&format!("refused_http_{status}"));
                pause(ctx, Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tally.add(&e);
                pause(ctx, Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut frame = BytesMut::new();
        let text = json!({"type": "join", "ref": 1, "data": {"room": room}}).to_string();
        Parser::write_message(&mut frame, text, OpCode::Text, true, true);
        if let Err(e) = s.write_all(&frame).await {
            tally.add(&io_kind(&e));
            continue;
        }
        tally.add("joined_and_silent");
        let Some(_held) = tally.hold() else { return };
        let planned = Instant::now() + hold;
        let until = planned.min(end);
        pause(ctx, until.saturating_duration_since(Instant::now())).await;
        match drain(&mut s, early).await.as_str() {
            // The attack ended before this zombie had been silent for `hold`.
            "not_dropped" if until < planned => tally.add("open_at_end_of_attack"),
            outcome => tally.add(outcome),
        }
    }
}

/// (d) The frame flooder: joins `room`, pipelines `history`, `typing` and `watch` frames at
/// `rate` a second without waiting for replies, and reconnects when the server closes it.
pub(super) async fn flooder(
    ctx: &Ctx,
    from: Ipv4Addr,
    room: &str,
    rate: f64,
    end: Instant,
    t: Rc<Tally>,
) {
    if rate <= 0.0 {
        return;
    }
    let mut n = 0u64;
    while Instant::now() < end && ctx.aborted().is_none() {
        let user = format!("hf-{}-{}", ctx.run_id, n % FLOOD_USERS);
        n += 1;
        t.add("attempts");
        let Ok(token) = ctx.token(&user) else {
            t.add("token_error");
            return;
        };
        let closed: Rc<RefCell<Option<String>>> = Rc::default();
        let handler: Handler = {
            let (t, closed) = (t.clone(), closed.clone());
            Box::new(move |ev| match ev {
                Event::Text(text, _) => match frame_type(text) {
                    "ack" => t.add("reply_ack"),
                    "error" => {
                        let code = text
                            .split_once(r#""code":""#)
                            .and_then(|(_, r)| r.split('"').next())
                            .unwrap_or("?");
                        t.add(&format!("reply_error_{code}"));
                    }
                    _ => {}
                },
                Event::Closed(info) => {
                    *closed.borrow_mut() = Some(match (info.by_us, info.code) {
                        (true, _) => "closed_by_us".into(),
                        (false, Some(code)) => format!("closed_by_server_{code}"),
                        (false, None) => "closed_by_server_without_code".into(),
                    });
                }
            })
        };
        let conn = match client::connect_from(
            &ctx.pool,
            ctx.pool.next_server(),
            Some(IpAddr::V4(from)),
            &user,
            &token,
            ctx.timeout,
            handler,
            client::Dialect::Native,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                t.add(&format!("refused_{}", e.kind()));
                pause(ctx, Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Err((kind, _)) = join(&conn, room, ctx.timeout).await {
            t.add(&kind);
        }
        let started = Instant::now();
        let mut sent = 0u64;
        let mut tick = interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        'flood: while conn.is_open() && Instant::now() < end && ctx.aborted().is_none() {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            while sent < due {
                let r = format!("f{n}-{sent}");
                let frame = match sent % 3 {
                    0 => json!({"type": "history", "ref": r, "data": {"room": room, "limit": 100}}),
                    1 => {
                        json!({"type": "typing", "ref": r, "data": {"room": room, "state": "start"}})
                    }
                    _ => json!({"type": "watch", "ref": r, "data": {"users": [user]}}),
                };
                if !conn.send_raw(frame.to_string()) {
                    break 'flood;
                }
                sent += 1;
                t.add("frames_sent");
            }
        }
        if conn.is_open() {
            conn.close();
            t.add("open_at_end");
        } else {
            // The driver marks the connection closed and calls the handler in one step.
            t.held.borrow_mut().record(started.elapsed());
            let how = closed.borrow_mut().take();
            t.add(&how.unwrap_or_else(|| "closed_unreported".into()));
        }
    }
}

/// The feeder: a well-behaved member sending `rate` messages a second to `room`.
pub(super) async fn feeder(
    ctx: &Ctx,
    from: Ipv4Addr,
    room: &str,
    rate: f64,
    pad: usize,
    end: Instant,
    t: Rc<Tally>,
) {
    if rate <= 0.0 {
        return;
    }
    let user = format!("hfeed-{}", ctx.run_id);
    let text = "f".repeat(pad);
    let mut n = 0u64;
    while Instant::now() < end && ctx.aborted().is_none() {
        t.add("attempts");
        let Ok(token) = ctx.token(&user) else {
            t.add("token_error");
            return;
        };
        let connect = client::connect_from(
            &ctx.pool,
            ctx.pool.next_server(),
            Some(IpAddr::V4(from)),
            &user,
            &token,
            ctx.timeout,
            client::ignore(),
            client::Dialect::Native,
        );
        let conn = match connect.await {
            Ok(c) => c,
            Err(e) => {
                t.add(&format!("refused_{}", e.kind()));
                pause(ctx, Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err((kind, _)) = join(&conn, room, ctx.timeout).await {
            t.add(&kind);
            conn.close();
            pause(ctx, Duration::from_secs(1)).await;
            continue;
        }
        let started = Instant::now();
        let mut sent = 0u64;
        let mut tick = interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        while conn.is_open() && Instant::now() < end && ctx.aborted().is_none() {
            tick.tick().await;
            if sent >= (started.elapsed().as_secs_f64() * rate) as u64 {
                continue;
            }
            sent += 1;
            n += 1;
            let data = json!({"room": room, "kind": "text", "body": {"text": text},
                              "client_msg_id": format!("hfeed-{}-{n}", ctx.run_id)});
            match conn.request("send", data, ctx.timeout).await {
                Ok(Reply::Ack(..)) => t.add("acked"),
                Ok(Reply::Error { code, .. }) => t.add(&format!("error_{code}")),
                Err(e) => t.add(&format!("send_{e}").replace(' ', "_")),
            }
        }
        if conn.is_open() {
            conn.close();
        } else {
            t.add("closed_by_server");
        }
    }
}
